//! Which artifacts can open sockets, and so need the pod's network namespace:
//! [`NetworkImports`] reads a component's top-level import names once per digest. Only a
//! preview 2 component importing `wasi:sockets/*` (or `wasi:http/outgoing-handler`) can reach the
//! network; a preview 1 module has no sockets API at all, so its 8-byte header is all that is
//! read. Pods of programs that cannot open a socket get no namespace, which is what lets a
//! node run thousands of them.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use skiff_sandbox::{ArtifactKind, ImageArtifact};
use wasmparser::{Chunk, Parser, Payload};

use crate::cache::{BinaryKind, binary_kind};

/// Interfaces that open sockets, by their name without the `@version`.
const SOCKETS_PACKAGE: &str = "wasi:sockets/";
const HTTP_OUTGOING: &str = "wasi:http/outgoing-handler";

/// Whether each artifact imports the network, by digest.
#[derive(Default)]
pub(crate) struct NetworkImports {
    known: Mutex<HashMap<String, bool>>,
}

impl NetworkImports {
    /// Whether `image` is a component that imports a socket interface. An artifact that cannot
    /// be read answers `false` and is asked again next time: its start fails and says why. One
    /// that is not a valid component answers `false` for good: it will not compile either.
    pub(crate) fn needs_network(&self, image: &ImageArtifact) -> bool {
        let ArtifactKind::Wasm { module } = &image.kind else {
            return false;
        };
        if let Some(&known) = self.lock().get(&image.digest) {
            return known;
        }
        let needs = match read_imports(module) {
            Ok(imports) => imports.iter().any(|name| opens_sockets(name)),
            Err(ReadImportsError::Io { path, source }) => {
                tracing::debug!(path = %path.display(), error = %source, "cannot read a Wasm artifact's imports");
                return false;
            }
            Err(e) => {
                tracing::debug!(image = %image.reference, error = %e, "cannot parse a Wasm artifact's imports");
                false
            }
        };
        self.lock().insert(image.digest.clone(), needs);
        needs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadImportsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid component: {0}")]
    Parse(#[from] wasmparser::BinaryReaderError),
    #[error("not a valid component: a nested module or component runs past the end at {offset}")]
    Truncated { offset: usize },
}

/// `wasi:sockets/tcp@0.2.0`, `wasi:http/outgoing-handler@0.2.6`, …
fn opens_sockets(import: &str) -> bool {
    let unversioned = import.split_once('@').map_or(import, |(name, _)| name);
    unversioned.starts_with(SOCKETS_PACKAGE) || unversioned == HTTP_OUTGOING
}

/// The top-level import names of the component at `path`; none for a core module.
fn read_imports(path: &Path) -> Result<Vec<String>, ReadImportsError> {
    let io = |source| ReadImportsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = vec![0; 8];
    file.read_exact(&mut bytes).map_err(io)?;
    if binary_kind(&bytes) != Some(BinaryKind::Component) {
        return Ok(Vec::new());
    }
    file.read_to_end(&mut bytes).map_err(io)?;
    component_imports(&bytes)
}

/// The import names of the outermost component in `bytes`. Nested modules and components are
/// skipped unparsed: their imports are satisfied inside the component, not by the host.
fn component_imports(bytes: &[u8]) -> Result<Vec<String>, ReadImportsError> {
    let mut parser = Parser::new(0);
    let mut offset = 0;
    let mut names = Vec::new();
    loop {
        let rest = bytes
            .get(offset..)
            .ok_or(ReadImportsError::Truncated { offset })?;
        let (payload, consumed) = match parser.parse(rest, true)? {
            Chunk::Parsed { payload, consumed } => (payload, consumed),
            // With `eof` set the parser never asks for more: it fails instead.
            Chunk::NeedMoreData(_) => return Err(ReadImportsError::Truncated { offset }),
        };
        offset += consumed;
        match payload {
            Payload::ComponentImportSection(section) => {
                for import in section {
                    names.push(import?.name.name.to_string());
                }
            }
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => offset = unchecked_range.end,
            Payload::End(_) => return Ok(names),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_and_outgoing_http_interfaces_open_sockets() {
        assert!(opens_sockets("wasi:sockets/tcp@0.2.0"));
        assert!(opens_sockets("wasi:sockets/instance-network@0.2.6"));
        assert!(opens_sockets("wasi:sockets/ip-name-lookup"));
        assert!(opens_sockets("wasi:http/outgoing-handler@0.2.0"));
        assert!(!opens_sockets("wasi:http/types@0.2.0"));
        assert!(!opens_sockets("wasi:cli/stdout@0.2.0"));
        assert!(!opens_sockets("wasi:socketsx/tcp@0.2.0"));
    }

    #[test]
    fn only_top_level_imports_count() {
        let component = wat::parse_str(
            r#"(component
                (import "wasi:cli/stdout@0.2.0" (instance))
                (component
                    (import "wasi:sockets/tcp@0.2.0" (instance)))
                (core module
                    (import "wasi:sockets/tcp@0.2.0" "f" (func))))"#,
        )
        .unwrap();
        assert_eq!(
            component_imports(&component).unwrap(),
            ["wasi:cli/stdout@0.2.0"]
        );
    }

    #[test]
    fn a_component_importing_sockets_needs_the_network_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.wasm");
        let component = r#"(component (import "wasi:sockets/udp@0.2.0" (instance)))"#;
        std::fs::write(&path, wat::parse_str(component).unwrap()).unwrap();
        let image = ImageArtifact {
            reference: "c".into(),
            digest: "sha256:c".into(),
            kind: ArtifactKind::Wasm {
                module: path.clone(),
            },
            config: Default::default(),
        };
        let imports = NetworkImports::default();
        assert!(imports.needs_network(&image));
        // Answered from memory: the file is no longer read.
        std::fs::remove_file(&path).unwrap();
        assert!(imports.needs_network(&image));
    }

    #[test]
    fn core_modules_and_unreadable_or_broken_artifacts_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let image = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            ImageArtifact {
                reference: name.into(),
                digest: format!("sha256:{name}"),
                kind: ArtifactKind::Wasm { module: path },
                config: Default::default(),
            }
        };
        let module = wat::parse_str(r#"(module (import "wasi:sockets/tcp" "f" (func)))"#).unwrap();
        let imports = NetworkImports::default();
        assert!(!imports.needs_network(&image("module.wasm", &module)));
        assert!(!imports.needs_network(&image("short.wasm", b"\0asm")));
        assert!(!imports.needs_network(&image("broken.wasm", b"\0asm\x0d\0\x01\0\x0b\xff")));
        let missing = ImageArtifact {
            kind: ArtifactKind::Wasm {
                module: dir.path().join("missing.wasm"),
            },
            ..image("placeholder", b"")
        };
        assert!(!imports.needs_network(&missing));
    }
}

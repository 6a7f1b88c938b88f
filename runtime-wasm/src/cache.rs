//! Compiled code, so a start is an instantiation and not a compile: [`ArtifactCache`] keeps
//! each artifact's compiled form on disk under `<cache_dir>/<engine hash>/<digest>.cwasm` (the
//! engine's compatibility hash in the path makes a wasmtime upgrade or config change compile
//! afresh) and its pre-instance ([`Prepared`]) in memory, keyed by the artifact's digest.
//! Preview 1 modules and preview 2 components are told apart by the binary's header.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use skiff_sandbox::{ArtifactKind, ImageArtifact};
use tokio::sync::OnceCell;
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Module, Precompiled};
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::engine::NodeEngine;
use crate::error::WasmError;
use crate::run::{ComponentState, ModuleState};

/// What a start instantiates from.
#[derive(Clone)]
pub(crate) enum Prepared {
    Module(InstancePre<ModuleState>),
    Component(CommandPre<ComponentState>),
}

enum Compiled {
    Module(Module),
    Component(Component),
}

/// The two WebAssembly binary formats, by their 8-byte preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryKind {
    /// A core module: `\0asm`, version 1.
    Module,
    /// A component: `\0asm`, version 0x0d, layer 1.
    Component,
}

pub(crate) fn binary_kind(bytes: &[u8]) -> Option<BinaryKind> {
    match bytes.get(..8)? {
        [0, b'a', b's', b'm', 1, 0, 0, 0] => Some(BinaryKind::Module),
        [0, b'a', b's', b'm', _, _, 1, 0] => Some(BinaryKind::Component),
        _ => None,
    }
}

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    prepared: Mutex<HashMap<String, Arc<OnceCell<Prepared>>>>,
    compiles: Arc<AtomicU64>,
}

impl ArtifactCache {
    /// Opens (creating) the directory for `engine`'s compiled code under `cache_dir`.
    pub(crate) fn open(cache_dir: &Path, engine: &Engine) -> Result<ArtifactCache, WasmError> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = cache_dir.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir).map_err(WasmError::io(&dir))?;
        Ok(ArtifactCache {
            dir,
            prepared: Mutex::default(),
            compiles: Arc::default(),
        })
    }

    /// How many binaries this cache has compiled (rather than found compiled).
    pub(crate) fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// The pre-instance of `image`: from memory, else from the disk cache, else compiled.
    /// Concurrent starts of one digest share a single load.
    pub(crate) async fn prepare(
        &self,
        node: &NodeEngine,
        image: &ImageArtifact,
    ) -> Result<Prepared, WasmError> {
        let cell = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(image.digest.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.load(node, image))
            .await
            .cloned()
    }

    async fn load(&self, node: &NodeEngine, image: &ImageArtifact) -> Result<Prepared, WasmError> {
        let ArtifactKind::Wasm { module } = &image.kind else {
            return Err(WasmError::Unsupported {
                image: image.reference.clone(),
                reason: "it is a container image, not a WebAssembly module".to_string(),
            });
        };
        let engine = node.engine.clone();
        let source = module.clone();
        let cached = self.dir.join(format!("{}.cwasm", file_stem(&image.digest)));
        let reference = image.reference.clone();
        let compiles = self.compiles.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            load_or_compile(&engine, &source, &cached, &reference, &compiles)
        })
        .await
        .map_err(|e| WasmError::Compile {
            image: image.reference.clone(),
            source: wasmtime::Error::msg(e.to_string()),
        })??;
        let unsupported = |reason: String| WasmError::Unsupported {
            image: image.reference.clone(),
            reason,
        };
        match compiled {
            Compiled::Module(module) => {
                if !matches!(
                    module.get_export("_start"),
                    Some(wasmtime::ExternType::Func(_))
                ) {
                    return Err(unsupported(
                        "a core module without a `_start` export is not a WASI command".into(),
                    ));
                }
                let pre = node
                    .modules
                    .instantiate_pre(&module)
                    .map_err(|e| unsupported(format!("{e:#}")))?;
                Ok(Prepared::Module(pre))
            }
            Compiled::Component(component) => {
                let pre = node
                    .components
                    .instantiate_pre(&component)
                    .map_err(|e| unsupported(format!("{e:#}")))?;
                let pre = CommandPre::new(pre)
                    .map_err(|e| unsupported(format!("not a wasi:cli/command component: {e:#}")))?;
                Ok(Prepared::Component(pre))
            }
        }
    }
}

/// A digest as a file name: `sha256:ab…` becomes `sha256-ab…`; anything but ASCII
/// alphanumerics becomes `_`, so no digest can name a path outside the cache.
fn file_stem(digest: &str) -> String {
    digest
        .chars()
        .map(|c| match c {
            ':' => '-',
            c if c.is_ascii_alphanumeric() => c,
            _ => '_',
        })
        .collect()
}

fn load_or_compile(
    engine: &Engine,
    source: &Path,
    cached: &Path,
    reference: &str,
    compiles: &AtomicU64,
) -> Result<Compiled, WasmError> {
    if cached.exists() {
        match deserialize(engine, cached) {
            Ok(compiled) => return Ok(compiled),
            // A cache file from a crash mid-write or another build: compile it again.
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "discarding unusable compiled module")
            }
        }
    }
    let bytes = std::fs::read(source).map_err(WasmError::io(source))?;
    let compile_error = |source| WasmError::Compile {
        image: reference.to_string(),
        source,
    };
    compiles.fetch_add(1, Ordering::Relaxed);
    let (compiled, serialized) = match binary_kind(&bytes) {
        Some(BinaryKind::Module) => {
            let module = Module::new(engine, &bytes).map_err(compile_error)?;
            let serialized = module.serialize();
            (Compiled::Module(module), serialized)
        }
        Some(BinaryKind::Component) => {
            let component = Component::new(engine, &bytes).map_err(compile_error)?;
            let serialized = component.serialize();
            (Compiled::Component(component), serialized)
        }
        None => {
            return Err(WasmError::Unsupported {
                image: reference.to_string(),
                reason: "not a WebAssembly module or component".into(),
            });
        }
    };
    match serialized {
        Ok(serialized) => {
            if let Err(e) = write_atomically(cached, &serialized) {
                tracing::warn!(path = %cached.display(), error = %e, "cannot cache compiled module");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot serialize compiled module"),
    }
    Ok(compiled)
}

fn deserialize(engine: &Engine, cached: &Path) -> wasmtime::Result<Compiled> {
    // SAFETY: files in this directory are written only by `load_or_compile`, from wasmtime's own
    // `serialize` with an engine of the same compatibility hash; wasmtime also checks the
    // header's version and configuration before using the code.
    match Engine::detect_precompiled_file(cached)? {
        Some(Precompiled::Module) => Ok(Compiled::Module(unsafe {
            Module::deserialize_file(engine, cached)
        }?)),
        Some(Precompiled::Component) => Ok(Compiled::Component(unsafe {
            Component::deserialize_file(engine, cached)
        }?)),
        None => Err(wasmtime::Error::msg("not a precompiled wasmtime artifact")),
    }
}

/// Written beside and renamed into place, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_modules_from_components() {
        assert_eq!(
            binary_kind(b"\0asm\x01\0\0\0rest"),
            Some(BinaryKind::Module)
        );
        assert_eq!(
            binary_kind(b"\0asm\x0d\0\x01\0rest"),
            Some(BinaryKind::Component)
        );
        assert_eq!(binary_kind(b"\x7fELF\x02\x01\x01\0"), None);
        assert_eq!(binary_kind(b"\0asm"), None);
    }

    #[test]
    fn digests_cannot_escape_the_cache_dir() {
        assert_eq!(file_stem("sha256:ab12"), "sha256-ab12");
        assert_eq!(file_stem("../../etc/passwd"), "______etc_passwd");
    }
}

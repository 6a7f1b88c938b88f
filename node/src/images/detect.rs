//! What a stored image is: a Wasm OCI artifact (its module layer is the module), an ordinary
//! image whose Entrypoint (or Cmd) names a `.wasm` file in its layers (that file, extracted once
//! into the store), or anything else (its layers, kept packed for the OCI runtime to unpack).
//! Works from stored blobs only, so a restarted agent rebuilds the same artifact offline.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use oci_client::manifest::OciImageManifest;
use serde::Deserialize;
use skiff_sandbox::{ArtifactKind, ImageConfig};

use super::error::PullError;
use super::store::ContentStore;

/// Config media types of the Wasm OCI artifact layout (CNCF TAG Runtime) and of wasm-pkg-tools.
const WASM_CONFIG_TYPES: &[&str] = &[
    "application/vnd.wasm.config.v0+json",
    "application/vnd.bytecodealliance.wasm.component.config.v0+json",
];
/// Layer media types that hold a module or component.
const WASM_LAYER_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];

/// The image config file: only the part that shapes how containers run.
#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// Builds the artifact of the stored image with manifest `digest`, extracting its module if
/// it is an ordinary image with a `.wasm` entrypoint. Blocking: run it off the async threads.
pub(super) fn resolve(
    store: &ContentStore,
    digest: &str,
) -> Result<(ArtifactKind, ImageConfig), PullError> {
    let manifest: OciImageManifest =
        serde_json::from_slice(&store.read(digest)?).map_err(|source| PullError::Manifest {
            digest: digest.to_string(),
            source,
        })?;
    let wasm_layer = manifest
        .layers
        .iter()
        .find(|l| WASM_LAYER_TYPES.contains(&l.media_type.as_str()));
    if let Some(layer) = wasm_layer {
        let module = store.blob_path(&layer.digest)?;
        return Ok((ArtifactKind::Wasm { module }, ImageConfig::default()));
    }
    if WASM_CONFIG_TYPES.contains(&manifest.config.media_type.as_str()) {
        return Err(PullError::NoWasmLayer {
            digest: digest.to_string(),
        });
    }
    let config_digest = &manifest.config.digest;
    let file: ConfigFile =
        serde_json::from_slice(&store.read(config_digest)?).map_err(|source| {
            PullError::Config {
                digest: config_digest.clone(),
                source,
            }
        })?;
    let run = file.config.unwrap_or_default();
    let config = ImageConfig {
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.filter(|d| !d.is_empty()),
        user: run.user.filter(|u| !u.is_empty()),
    };
    if let Some(program) = wasm_program(&config) {
        let target = store.extracted_path(digest)?;
        if target.is_file() {
            return Ok((ArtifactKind::Wasm { module: target }, config));
        }
        let layers: Vec<(String, PathBuf)> = manifest
            .layers
            .iter()
            .map(|l| Ok((l.digest.clone(), store.blob_path(&l.digest)?)))
            .collect::<Result<_, PullError>>()?;
        if let Some(bytes) = find_in_layers(&layers, &program)? {
            store.write_atomic(&target, &bytes)?;
            return Ok((ArtifactKind::Wasm { module: target }, config));
        }
    }
    let layers = manifest
        .layers
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect::<Result<_, _>>()?;
    Ok((ArtifactKind::Oci { layers }, config))
}

/// The path (relative to the root filesystem) of the `.wasm` file the image runs, if it runs one.
fn wasm_program(config: &ImageConfig) -> Option<PathBuf> {
    let argv0 = config.entrypoint.first().or(config.cmd.first())?;
    if !argv0.ends_with(".wasm") {
        return None;
    }
    let dir = config.working_dir.as_deref().unwrap_or("/");
    normalize(&Path::new(dir).join(argv0))
}

/// `/a/./b/../c` → `a/c`; `None` for a path that climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// The content of `target` as the image's merged filesystem has it: the topmost layer that
/// holds it wins, unless a whiteout in a layer above deletes it (OCI image spec, layer.md).
fn find_in_layers(
    layers: &[(String, PathBuf)],
    target: &Path,
) -> Result<Option<Vec<u8>>, PullError> {
    for (digest, path) in layers.iter().rev() {
        match scan_layer(digest, path, target)? {
            Scan::Found(bytes) => return Ok(Some(bytes)),
            Scan::Deleted => return Ok(None),
            Scan::Absent => {}
        }
    }
    Ok(None)
}

enum Scan {
    Found(Vec<u8>),
    /// Not a regular file here, or whited out for the layers below.
    Deleted,
    Absent,
}

fn scan_layer(digest: &str, path: &Path, target: &Path) -> Result<Scan, PullError> {
    let io = |source| PullError::Layer {
        digest: digest.to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io)?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let stream = head.chain(file);
    let reader: Box<dyn Read> = match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(stream)),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            return Err(PullError::LayerCompression {
                digest: digest.to_string(),
                compression: "zstd",
            });
        }
        _ => Box::new(stream),
    };
    let mut archive = tar::Archive::new(reader);
    let mut hidden = false;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let Some(name) = normalize(&entry.path().map_err(io)?) else {
            continue;
        };
        if name == target {
            if !entry.header().entry_type().is_file() {
                return Ok(Scan::Deleted);
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(io)?;
            return Ok(Scan::Found(bytes));
        }
        hidden |= whites_out(&name, target);
    }
    Ok(if hidden { Scan::Deleted } else { Scan::Absent })
}

/// Whether the entry `name` is a whiteout that hides `target` in the layers below: `.wh.X`
/// beside `target` or one of its ancestors, or an opaque marker in one of its ancestors.
fn whites_out(name: &Path, target: &Path) -> bool {
    let (Some(dir), Some(file)) = (name.parent(), name.file_name().and_then(|f| f.to_str())) else {
        return false;
    };
    if file == ".wh..wh..opq" {
        return target.starts_with(dir) && target != dir;
    }
    file.strip_prefix(".wh.")
        .is_some_and(|hidden| target.starts_with(dir.join(hidden)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, name: &str, files: &[(&str, &[u8])], gzip: bool) -> (String, PathBuf) {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, *data)
                .expect("append");
        }
        let tar = builder.into_inner().expect("tar");
        let bytes = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &tar).expect("gzip");
            gz.finish().expect("gzip")
        } else {
            tar
        };
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write layer");
        (name.to_string(), path)
    }

    #[test]
    fn entrypoint_or_cmd_names_the_program() {
        let config = |entrypoint: &[&str], cmd: &[&str], wd: Option<&str>| ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            working_dir: wd.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(
            wasm_program(&config(&["/app/hello.wasm"], &[], None)),
            Some("app/hello.wasm".into())
        );
        assert_eq!(
            wasm_program(&config(&[], &["./hello.wasm", "x"], Some("/srv"))),
            Some("srv/hello.wasm".into())
        );
        assert_eq!(
            wasm_program(&config(&["/bin/sh"], &["hello.wasm"], None)),
            None
        );
        assert_eq!(wasm_program(&config(&[], &[], None)), None);
    }

    #[test]
    fn the_topmost_layer_wins_and_whiteouts_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = layer(
            dir.path(),
            "base",
            &[("app/hello.wasm", b"old"), ("etc/x", b"x")],
            true,
        );
        let top = layer(dir.path(), "top", &[("./app/hello.wasm", b"new")], false);
        let target = Path::new("app/hello.wasm");
        let found = find_in_layers(&[base.clone(), top], target).expect("scan");
        assert_eq!(found.as_deref(), Some(&b"new"[..]));

        let whiteout = layer(dir.path(), "wh", &[("app/.wh.hello.wasm", b"")], false);
        assert_eq!(
            find_in_layers(&[base.clone(), whiteout], target).expect("scan"),
            None
        );
        let opaque = layer(dir.path(), "opq", &[("app/.wh..wh..opq", b"")], false);
        assert_eq!(
            find_in_layers(&[base.clone(), opaque], target).expect("scan"),
            None
        );
        let unrelated = layer(dir.path(), "other", &[("app/.wh.other.wasm", b"")], true);
        let found = find_in_layers(&[base, unrelated], target).expect("scan");
        assert_eq!(found.as_deref(), Some(&b"old"[..]));
    }

    #[test]
    fn zstd_layers_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("z");
        std::fs::write(&path, [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).expect("write");
        let err =
            find_in_layers(&[("sha256:z".into(), path)], Path::new("a.wasm")).expect_err("zstd");
        assert_eq!(
            err.to_string(),
            "layer sha256:z is compressed with zstd, which is not supported"
        );
    }
}

//! `hostPath` volumes: a path on the node, checked against its `type` with the kubelet's
//! rules and messages (`pkg/volume/hostpath/host_path.go`), creating it for
//! `DirectoryOrCreate` and `FileOrCreate`. Nothing is ever removed from it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::HostPathVolumeSource;

use super::SetUpError;

pub(super) fn set_up(source: &HostPathVolumeSource) -> Result<PathBuf, SetUpError> {
    let path = PathBuf::from(&source.path);
    let kind = source.type_.as_deref().unwrap_or("");
    let fail = |problem| SetUpError::HostPathType {
        path: source.path.clone(),
        problem,
    };
    let io = |source| SetUpError::Io {
        path: path.clone(),
        source,
    };
    let meta = match fs::metadata(&path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let file_type = meta.as_ref().map(fs::Metadata::file_type);
    match (kind, file_type) {
        ("", _) => {}
        ("DirectoryOrCreate", None) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&path)
                .map_err(io)?;
        }
        ("FileOrCreate", None) => {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(&path)
                .map_err(io)?;
        }
        ("Directory" | "File", None) => {
            return Err(fail("does not exist"));
        }
        ("DirectoryOrCreate" | "Directory", Some(t)) if !t.is_dir() => {
            return Err(fail("is not a directory"));
        }
        ("FileOrCreate" | "File", Some(t)) if !t.is_file() => return Err(fail("is not a file")),
        ("Socket", t) if !t.is_some_and(|t| t.is_socket()) => {
            return Err(fail("is not a socket file"));
        }
        ("CharDevice", t) if !t.is_some_and(|t| t.is_char_device()) => {
            return Err(fail("is not a character device"));
        }
        ("BlockDevice", t) if !t.is_some_and(|t| t.is_block_device()) => {
            return Err(fail("is not a block device"));
        }
        ("DirectoryOrCreate" | "Directory" | "FileOrCreate" | "File", Some(_))
        | ("Socket" | "CharDevice" | "BlockDevice", _) => {}
        (other, _) => return Err(SetUpError::InvalidHostPathType(other.to_owned())),
    }
    Ok(path)
}

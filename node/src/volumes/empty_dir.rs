//! `emptyDir`: a directory that lives as long as the pod. `medium: Memory` and `sizeLimit`
//! are recorded for the OCI runtime (tmpfs, eviction); on disk it is a plain directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
use skiff_api::quantity::Quantity;

use super::SetUpError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyDirMedium {
    /// The node's disk (`medium: ""`).
    Default,
    /// `medium: Memory`: tmpfs, counted against the pod's memory.
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyDirSpec {
    pub medium: EmptyDirMedium,
    pub size_limit_bytes: Option<u64>,
}

/// Creates the directory (kept, with its contents, if it exists), world-writable as the
/// kubelet makes it so any user in the container can write.
pub(super) fn set_up(
    dir: &Path,
    source: &EmptyDirVolumeSource,
) -> Result<EmptyDirSpec, SetUpError> {
    let medium = match source.medium.as_deref().unwrap_or("") {
        "" => EmptyDirMedium::Default,
        "Memory" => EmptyDirMedium::Memory,
        other => return Err(SetUpError::UnsupportedMedium(other.to_owned())),
    };
    let size_limit_bytes = match &source.size_limit {
        Some(q) => {
            let parsed: Quantity = q.0.parse().map_err(|source| SetUpError::SizeLimit {
                value: q.0.clone(),
                source,
            })?;
            Some(u64::try_from(parsed.as_bytes()).unwrap_or(0))
        }
        None => None,
    };
    let io = |source| SetUpError::Io {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(io)?;
    Ok(EmptyDirSpec {
        medium,
        size_limit_bytes,
    })
}

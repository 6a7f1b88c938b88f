//! `emptyDir`: a directory that lives as long as the pod, on the node's disk, or with
//! `medium: Memory` a tmpfs mounted there (limited to `sizeLimit`), whose pages count
//! against the memory of the containers that write them.

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

/// Whether something is mounted on `dir` (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Some(Ok(parent))) = (fs::metadata(dir), dir.parent().map(fs::metadata)) else {
        return false;
    };
    own.dev() != parent.dev()
}

fn mount_tmpfs(dir: &Path, size_limit_bytes: Option<u64>) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let target = CString::new(dir.as_os_str().as_bytes())?;
    let mut options = String::from("mode=0777");
    if let Some(size) = size_limit_bytes {
        options.push_str(&format!(",size={size}"));
    }
    let options = CString::new(options)?;
    // SAFETY: every pointer is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
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
    if medium == EmptyDirMedium::Memory && !is_mount_point(dir) {
        mount_tmpfs(dir, size_limit_bytes).map_err(io)?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(io)?;
    Ok(EmptyDirSpec {
        medium,
        size_limit_bytes,
    })
}

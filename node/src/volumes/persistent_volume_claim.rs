//! `persistentVolumeClaim` volumes: the claim, in the pod's namespace, must be bound; its
//! PersistentVolume's `hostPath` (what the local-path provisioner makes) or `local` path is then
//! mounted as a hostPath is. Until the claim is bound the set-up fails and the pod worker
//! retries, as the kubelet's volume manager waits. A local-path volume's missing directory is
//! made world-writable, as K3s's provisioner makes it (`mkdir -m 0777`), so that containers
//! running as any user can write their data.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource;
use skiff_api::storage::{LOCAL_PATH_PROVISIONER, PROVISIONED_BY_ANNOTATION};

use super::{SetUpError, host_path};
use crate::objects::ObjectSource;

/// The path to mount for `source`; the caller honours `source.readOnly`.
pub(super) async fn set_up(
    source: &PersistentVolumeClaimVolumeSource,
    namespace: &str,
    objects: &dyn ObjectSource,
) -> Result<PathBuf, SetUpError> {
    let name = &source.claim_name;
    let claim = objects
        .persistent_volume_claim(namespace, name)
        .await?
        .ok_or_else(|| SetUpError::ClaimNotFound(name.clone()))?;
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(SetUpError::ClaimDeleting {
            claim: format!("{namespace}/{name}"),
        });
    }
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume.is_empty() {
        return Err(SetUpError::ClaimNotBound {
            claim: format!("{namespace}/{name}"),
            phase,
            volume,
        });
    }
    let pv = objects
        .persistent_volume(&volume)
        .await?
        .ok_or_else(|| SetUpError::VolumeNotFound(volume.clone()))?;
    let spec = pv.spec.unwrap_or_default();
    let local_path = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY_ANNOTATION))
        .is_some_and(|p| p == LOCAL_PATH_PROVISIONER);
    match (spec.host_path, spec.local) {
        (Some(host), _) => {
            if local_path {
                create_shared_dir(Path::new(&host.path))?;
            }
            host_path::set_up(&host)
        }
        // A local volume's path is the administrator's: it must exist already.
        (None, Some(local)) => {
            let path = PathBuf::from(&local.path);
            if path.exists() {
                Ok(path)
            } else {
                Err(SetUpError::HostPathType {
                    path: local.path,
                    problem: "does not exist",
                })
            }
        }
        (None, None) => Err(SetUpError::UnsupportedVolume(volume)),
    }
}

/// Creates `dir` (and its parents) if missing, the last component with mode 0777.
fn create_shared_dir(dir: &Path) -> Result<(), SetUpError> {
    let io = |source| SetUpError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(dir) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io(e)),
        Err(_) => {}
    }
    fs::create_dir_all(dir).map_err(io)?;
    // Set explicitly: the process umask would take the group and other bits away.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(io)
}

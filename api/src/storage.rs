//! The names persistent storage is coordinated by, shared by the API server (admission), the
//! control plane's scheduler and persistent volume controller, and the node agent: Kubernetes'
//! own annotations and finalizer, and those of Skiff's built-in local-path provisioner.
//!
//! The local-path provisioner is K3s's `rancher.io/local-path` with its helper pods replaced by
//! the node agent: the control plane creates a PersistentVolume whose `hostPath` is
//! [`volume_dir`] under the storage directory the node publishes in
//! [`STORAGE_DIR_ANNOTATION`]; the node creates the directory when a pod mounts the volume
//! (`DirectoryOrCreate`) and removes it, then the volume, once it is released with reclaim
//! policy `Delete`. [`owned_volume_dir`] is what keeps that removal inside the storage directory.

use std::path::{Component, Path, PathBuf};

/// Set on a claim by the scheduler: the node a `WaitForFirstConsumer` claim is provisioned on.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim by the persistent volume controller once it is bound.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Set on a volume or claim whose binding the controller (not the user) made.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// Set on a volume by the provisioner that created it.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// Set on a claim by the controller: the provisioner expected to create its volume.
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
/// What makes a StorageClass the one claims without a class get.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The StorageObjectInUseProtection finalizer: a claim outlives the pods that use it.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// The default StorageClass Skiff creates, as K3s does.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The provisioner of [`LOCAL_PATH_CLASS`].
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
/// On a Node: the absolute directory its local-path volumes are made in (`<data-dir>/storage`).
pub const STORAGE_DIR_ANNOTATION: &str = "skiff.dev/local-path-storage";

/// `<root>/<volume>_<namespace>_<claim>`: the provisioner's directory for a claim's volume.
pub fn volume_dir(root: &Path, volume: &str, namespace: &str, claim: &str) -> PathBuf {
    root.join(format!("{volume}_{namespace}_{claim}"))
}

/// Whether `path` is a directory the provisioner would have made for `volume` directly under
/// `root`: the only kind of path the node ever removes for a released volume, whatever else a
/// volume's `hostPath` says.
pub fn owned_volume_dir(root: &Path, path: &Path, volume: &str) -> bool {
    let plain = |p: &Path| {
        p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    };
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(&format!("{volume}_")));
    !volume.is_empty()
        && !volume.contains('/')
        && plain(root)
        && plain(path)
        && path.parent() == Some(root)
        && named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_dirs_are_named_like_the_provisioners() {
        let dir = volume_dir(
            Path::new("/var/lib/skiff/storage"),
            "pvc-1",
            "default",
            "data",
        );
        assert_eq!(dir, Path::new("/var/lib/skiff/storage/pvc-1_default_data"));
        assert!(owned_volume_dir(
            Path::new("/var/lib/skiff/storage"),
            &dir,
            "pvc-1"
        ));
    }

    #[test]
    fn only_a_volumes_own_directory_under_the_root_is_owned() {
        let root = Path::new("/srv/storage");
        let owned = |path: &str, volume: &str| owned_volume_dir(root, Path::new(path), volume);
        assert!(!owned("/srv/storage/pvc-2_default_data", "pvc-1"));
        assert!(!owned("/srv/storage", "pvc-1"));
        assert!(!owned("/srv/pvc-1_default_data", "pvc-1"));
        assert!(!owned("/srv/storage/x/pvc-1_default_data", "pvc-1"));
        assert!(!owned("/srv/storage/../pvc-1_default_data", "pvc-1"));
        assert!(!owned("/srv/storage/pvc-1_default_data", ""));
        assert!(!owned("relative/pvc-1_a_b", "pvc-1"));
        assert!(!owned_volume_dir(
            Path::new("/srv/../storage"),
            Path::new("/srv/../storage/pvc-1_a_b"),
            "pvc-1"
        ));
    }
}

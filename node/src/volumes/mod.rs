//! A pod's volumes on the node, resolved once for every runtime: [`prepare_volumes`] sets up
//! each of `spec.volumes` under `<pod_dir>/volumes/<plugin>/<name>` with the kubelet's plugin
//! names, [`container_mounts`] turns a container's `volumeMounts` into
//! [`skiff_sandbox::Mount`]s, and [`remove_volumes`] deletes what the pod owned.
//!
//! Sources: `emptyDir` ([`empty_dir`], a tmpfs for `medium: Memory`), `configMap`
//! ([`config_map`]), `secret` ([`secret`]), `downwardAPI` ([`downward_api`]) and `projected`
//! ([`projected`]), the last four written through the kubelet's [`atomic_writer`],
//! `hostPath` ([`host_path`]) and `persistentVolumeClaim` ([`persistent_volume_claim`], the
//! bound volume's path), with [`local_path`] removing released local-path volumes' data. Any
//! other source is refused by name.
//! Set-up failures read as the kubelet's FailedMount events:
//! `MountVolume.SetUp failed for volume "cfg" : configmap "x" not found`.

pub mod atomic_writer;
mod config_map;
mod downward_api;
mod empty_dir;
mod host_path;
pub mod local_path;
mod mounts;
mod persistent_volume_claim;
mod projected;
mod secret;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, DownwardAPIVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
    KeyToPath, PersistentVolumeClaimVolumeSource, Pod, ProjectedVolumeSource, SecretVolumeSource,
    Volume,
};

use crate::env::downward::DownwardError;
use crate::objects::{ObjectError, ObjectSource, PodFacts};
use atomic_writer::{FileProjection, Payload, WriteError};

pub use empty_dir::{EmptyDirMedium, EmptyDirSpec};
pub use mounts::container_mounts;

/// The mode of projected files when the volume names none (Kubernetes' `0644`).
const DEFAULT_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {source}")]
    SetUp {
        volume: String,
        #[source]
        source: SetUpError,
    },
    #[error("volume \"{volume}\": {kind} volumes are not supported by this node")]
    Unsupported { volume: String, kind: &'static str },
    #[error("cannot find volume \"{volume}\" to mount into container \"{container}\"")]
    UnknownVolume { volume: String, container: String },
    #[error("error SubPath `{sub_path}` must not be an absolute path")]
    AbsoluteSubPath { sub_path: String },
    #[error("unable to provision SubPath `{sub_path}`: must not contain '..'")]
    SubPathBackstep { sub_path: String },
    #[error("subpath \"{path}\" not within volume path \"{volume_path}\"")]
    SubPathEscape { path: PathBuf, volume_path: PathBuf },
    #[error("failed to expand subPathExpr of volumeMount \"{volume}\": missing value for {}", missing.join(", "))]
    SubPathExpr {
        volume: String,
        missing: Vec<String>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why one volume could not be set up; [`VolumeError::SetUp`] names the volume.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKeyNotFound(String),
    #[error("references non-existent secret key: {0}")]
    SecretKeyNotFound(String),
    #[error("hostPath type check failed: {path} {problem}")]
    HostPathType { path: String, problem: &'static str },
    #[error("{0} is an invalid volume type")]
    InvalidHostPathType(String),
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    #[error("error processing PVC {claim}: PVC is being deleted")]
    ClaimDeleting { claim: String },
    /// The kubelet's words for a claim the controller has not bound yet.
    #[error(
        "PVC {claim} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume:?})"
    )]
    ClaimNotBound {
        claim: String,
        phase: String,
        volume: String,
    },
    #[error("persistentvolume \"{0}\" not found")]
    VolumeNotFound(String),
    #[error("persistentvolume \"{0}\" has no hostPath or local source this node can mount")]
    UnsupportedVolume(String),
    #[error("emptyDir medium {0:?} is not supported by this node")]
    UnsupportedMedium(String),
    #[error("projected {0} sources are not supported by this node")]
    UnsupportedProjection(&'static str),
    #[error("projected sources conflict: more than one writes {0:?}")]
    ProjectionConflict(String),
    #[error("invalid sizeLimit {value:?}: {source}")]
    SizeLimit {
        value: String,
        #[source]
        source: skiff_api::quantity::QuantityError,
    },
    #[error(transparent)]
    Fetch(#[from] ObjectError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Downward(#[from] DownwardError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a volume is, as far as mounting it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    EmptyDir(EmptyDirSpec),
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    HostPath,
    /// `read_only`: the pod's `persistentVolumeClaim.readOnly`.
    PersistentVolumeClaim {
        read_only: bool,
    },
}

impl VolumeKind {
    /// ConfigMap, Secret and downwardAPI volumes are mounted read-only whatever the
    /// volumeMount says, as the kubelet does, and so is a claim the pod asks to read only.
    pub fn always_read_only(&self) -> bool {
        matches!(
            self,
            Self::ConfigMap
                | Self::Secret
                | Self::DownwardApi
                | Self::Projected
                | Self::PersistentVolumeClaim { read_only: true }
        )
    }
}

/// One set-up volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVolume {
    pub name: String,
    /// The directory (or, for a hostPath, the file) that gets mounted.
    pub path: PathBuf,
    pub kind: VolumeKind,
}

/// A pod's set-up volumes, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    volumes: BTreeMap<String, PodVolume>,
}

impl PodVolumes {
    pub fn get(&self, name: &str) -> Option<&PodVolume> {
        self.volumes.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PodVolume> {
        self.volumes.values()
    }
}

/// The sources this node knows, each with the kubelet's plugin directory.
enum Source<'a> {
    EmptyDir(&'a EmptyDirVolumeSource),
    ConfigMap(&'a ConfigMapVolumeSource),
    Secret(&'a SecretVolumeSource),
    DownwardApi(&'a DownwardAPIVolumeSource),
    Projected(&'a ProjectedVolumeSource),
    HostPath(&'a HostPathVolumeSource),
    PersistentVolumeClaim(&'a PersistentVolumeClaimVolumeSource),
}

impl Source<'_> {
    fn plugin(&self) -> &'static str {
        match self {
            Self::EmptyDir(_) => "kubernetes.io~empty-dir",
            Self::ConfigMap(_) => "kubernetes.io~configmap",
            Self::Secret(_) => "kubernetes.io~secret",
            Self::DownwardApi(_) => "kubernetes.io~downward-api",
            Self::Projected(_) => "kubernetes.io~projected",
            Self::HostPath(_) => "kubernetes.io~host-path",
            // Not a directory of the pod's: the volume's path is mounted where it is.
            Self::PersistentVolumeClaim(_) => "kubernetes.io~host-path",
        }
    }
}

fn classify(volume: &Volume) -> Result<Source<'_>, VolumeError> {
    let v = volume;
    let unsupported = |kind| {
        Err(VolumeError::Unsupported {
            volume: v.name.clone(),
            kind,
        })
    };
    if let Some(s) = &v.empty_dir {
        return Ok(Source::EmptyDir(s));
    }
    if let Some(s) = &v.config_map {
        return Ok(Source::ConfigMap(s));
    }
    if let Some(s) = &v.secret {
        return Ok(Source::Secret(s));
    }
    if let Some(s) = &v.downward_api {
        return Ok(Source::DownwardApi(s));
    }
    if let Some(s) = &v.host_path {
        return Ok(Source::HostPath(s));
    }
    if let Some(s) = &v.projected {
        return Ok(Source::Projected(s));
    }
    if let Some(s) = &v.persistent_volume_claim {
        return Ok(Source::PersistentVolumeClaim(s));
    }
    let others: [(bool, &'static str); 23] = [
        (v.ephemeral.is_some(), "ephemeral"),
        (v.image.is_some(), "image"),
        (v.csi.is_some(), "csi"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.azure_file.is_some(), "azureFile"),
        (v.cephfs.is_some(), "cephfs"),
        (v.cinder.is_some(), "cinder"),
        (v.fc.is_some(), "fc"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.flocker.is_some(), "flocker"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.rbd.is_some(), "rbd"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    match others.iter().find(|(set, _)| *set) {
        Some((_, kind)) => unsupported(kind),
        // No source at all: API defaulting makes that an emptyDir.
        None => Ok(Source::EmptyDir(&EMPTY_DIR)),
    }
}

static EMPTY_DIR: EmptyDirVolumeSource = EmptyDirVolumeSource {
    medium: None,
    size_limit: None,
};

/// Sets up every volume of `pod` under `pod_dir/volumes`. Idempotent: a second call keeps
/// emptyDir contents and republishes ConfigMap, Secret and downwardAPI content that changed
/// (atomically, through `..data`). A source this node does not support fails the whole call
/// before anything is written.
pub async fn prepare_volumes(
    pod: &Pod,
    pod_dir: &Path,
    objects: &dyn ObjectSource,
    facts: &PodFacts,
) -> Result<PodVolumes, VolumeError> {
    let namespace = crate::env::pod_namespace(pod);
    let specs = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let sources = specs
        .iter()
        .map(|v| Ok((v, classify(v)?)))
        .collect::<Result<Vec<_>, VolumeError>>()?;

    let mut volumes = BTreeMap::new();
    for (volume, source) in sources {
        let dir = volumes_dir(pod_dir)
            .join(source.plugin())
            .join(&volume.name);
        let set_up = async {
            Ok::<_, SetUpError>(match source {
                Source::EmptyDir(s) => (
                    dir.clone(),
                    VolumeKind::EmptyDir(empty_dir::set_up(&dir, s)?),
                ),
                Source::ConfigMap(s) => {
                    config_map::set_up(&dir, s, namespace, objects).await?;
                    (dir.clone(), VolumeKind::ConfigMap)
                }
                Source::Secret(s) => {
                    secret::set_up(&dir, s, namespace, objects).await?;
                    (dir.clone(), VolumeKind::Secret)
                }
                Source::DownwardApi(s) => {
                    downward_api::set_up(&dir, s, pod, facts)?;
                    (dir.clone(), VolumeKind::DownwardApi)
                }
                Source::Projected(s) => {
                    projected::set_up(&dir, s, pod, namespace, objects, facts).await?;
                    (dir.clone(), VolumeKind::Projected)
                }
                Source::HostPath(s) => (host_path::set_up(s)?, VolumeKind::HostPath),
                Source::PersistentVolumeClaim(s) => (
                    persistent_volume_claim::set_up(s, namespace, objects).await?,
                    VolumeKind::PersistentVolumeClaim {
                        read_only: s.read_only == Some(true),
                    },
                ),
            })
        };
        let (path, kind) = set_up.await.map_err(|source| VolumeError::SetUp {
            volume: volume.name.clone(),
            source,
        })?;
        volumes.insert(
            volume.name.clone(),
            PodVolume {
                name: volume.name.clone(),
                path,
                kind,
            },
        );
    }
    Ok(PodVolumes { volumes })
}

/// Deletes everything the pod's volumes hold on the node (emptyDir contents, projected
/// files). hostPath volumes live outside the pod directory and are left alone; symlinks are
/// removed, never followed.
pub fn remove_volumes(pod_dir: &Path) -> Result<(), VolumeError> {
    let dir = volumes_dir(pod_dir);
    unmount_below(&dir).map_err(|source| VolumeError::Io {
        path: dir.clone(),
        source,
    })?;
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(VolumeError::Io {
            path: dir,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Unmounts whatever is mounted at or below `dir` (Memory emptyDirs), last mounted first, so
/// that removing the directory never reaches into a mount.
fn unmount_below(dir: &Path) -> io::Result<()> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(());
    };
    for target in skiff_sandbox::mounts::mount_points_below(&dir)?
        .iter()
        .rev()
    {
        skiff_sandbox::mounts::detach(target)?;
    }
    Ok(())
}

fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// The payload of a ConfigMap or Secret volume (the kubelet's `MakePayload`): every key, or
/// only `items` mapped to their paths; a missing item key fails unless `optional`.
fn key_payload(
    entries: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    missing: impl Fn(&str) -> SetUpError,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let Some(data) = entries.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(&item.key));
                };
                let file = FileProjection {
                    data: data.clone(),
                    mode: mode(item.mode, default_mode),
                };
                payload.insert(item.path.clone(), file);
            }
        }
        _ => {
            for (key, data) in entries {
                let file = FileProjection {
                    data: data.clone(),
                    mode: default_mode,
                };
                payload.insert(key.clone(), file);
            }
        }
    }
    Ok(payload)
}

/// A `mode`/`defaultMode` field as permission bits.
fn mode(field: Option<i32>, default: u32) -> u32 {
    field
        .and_then(|m| u32::try_from(m).ok())
        .map_or(default, |m| m & 0o7777)
}

fn bytes(
    map: Option<&BTreeMap<String, ByteString>>,
) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    map.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
}

#[cfg(test)]
mod tests;

//! A container's `volumeMounts` as runtime [`Mount`]s (the kubelet's `makeMounts`): the
//! volume's directory, or a `subPath`/`subPathExpr` inside it that must stay inside it even
//! through symlinks, at `mountPath`, read-only when asked or when the volume is one the
//! kubelet always mounts read-only.

use std::fs;
use std::io;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::Container;
use skiff_sandbox::Mount;

use super::{PodVolume, PodVolumes, VolumeError};
use crate::env::expansion::{expand, lookup};

/// Resolves every mount of `container`. `env` is the container's resolved environment, which
/// `subPathExpr` expands from. A missing `subPath` directory is created inside the volume.
pub fn container_mounts(
    container: &Container,
    volumes: &PodVolumes,
    env: &[(String, String)],
) -> Result<Vec<Mount>, VolumeError> {
    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .get(&vm.name)
            .ok_or_else(|| VolumeError::UnknownVolume {
                volume: vm.name.clone(),
                container: container.name.clone(),
            })?;
        let sub_path = match (vm.sub_path.as_deref(), vm.sub_path_expr.as_deref()) {
            (Some(p), _) if !p.is_empty() => p.to_owned(),
            (_, Some(expr)) if !expr.is_empty() => expand_sub_path(&vm.name, expr, env)?,
            _ => String::new(),
        };
        let host_path = if sub_path.is_empty() {
            volume.path.clone()
        } else {
            sub_path_in(volume, &sub_path)?
        };
        mounts.push(Mount {
            host_path,
            container_path: vm.mount_path.clone(),
            read_only: vm.read_only == Some(true) || volume.kind.always_read_only(),
        });
    }
    Ok(mounts)
}

/// The kubelet's `ExpandContainerVolumeMounts`: every reference must name a non-empty
/// variable.
fn expand_sub_path(
    volume: &str,
    expr: &str,
    env: &[(String, String)],
) -> Result<String, VolumeError> {
    let mut missing = Vec::new();
    let get = lookup(env);
    let expanded = expand(expr, |name| {
        let value = get(name).unwrap_or_default();
        if value.is_empty() && !missing.iter().any(|m| m == name) {
            missing.push(name.to_owned());
        }
        Some(value)
    });
    if missing.is_empty() {
        Ok(expanded)
    } else {
        missing.sort();
        Err(VolumeError::SubPathExpr {
            volume: volume.to_owned(),
            missing,
        })
    }
}

fn sub_path_in(volume: &PodVolume, sub_path: &str) -> Result<std::path::PathBuf, VolumeError> {
    let rel = Path::new(sub_path);
    if rel.is_absolute() {
        return Err(VolumeError::AbsoluteSubPath {
            sub_path: sub_path.to_owned(),
        });
    }
    if rel.components().any(|c| c == Component::ParentDir) {
        return Err(VolumeError::SubPathBackstep {
            sub_path: sub_path.to_owned(),
        });
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source: io::Error| VolumeError::Io { path, source }
    };
    let base = fs::canonicalize(&volume.path).map_err(io(&volume.path))?;
    let joined = volume.path.join(rel);
    // `symlink_metadata` so a dangling symlink counts as present and is caught below rather
    // than created through.
    if let Err(e) = fs::symlink_metadata(&joined) {
        if e.kind() != io::ErrorKind::NotFound {
            return Err(io(&joined)(e));
        }
        create_inside(&base, rel)?;
    }
    let resolved = fs::canonicalize(&joined).map_err(|_| VolumeError::SubPathEscape {
        path: joined.clone(),
        volume_path: volume.path.clone(),
    })?;
    if !resolved.starts_with(&base) {
        return Err(VolumeError::SubPathEscape {
            path: joined,
            volume_path: volume.path.clone(),
        });
    }
    Ok(resolved)
}

/// Creates `rel` under `base` one component at a time, refusing to step through a symlink
/// that leads outside (the kubelet's `SafeMakeDir`).
fn create_inside(base: &Path, rel: &Path) -> Result<(), VolumeError> {
    let mut current = base.to_path_buf();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        current.push(name);
        match fs::create_dir(&current) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(VolumeError::Io {
                    path: current,
                    source: e,
                });
            }
            _ => {}
        }
        let resolved = fs::canonicalize(&current).map_err(|source| VolumeError::Io {
            path: current.clone(),
            source,
        })?;
        if !resolved.starts_with(base) {
            return Err(VolumeError::SubPathEscape {
                path: current,
                volume_path: base.to_owned(),
            });
        }
        current = resolved;
    }
    Ok(())
}

//! [`Rootfs`]: a container's root filesystem, made in the container's own directory from its
//! image's unpacked layers ([`crate::layers`]) plus a writable layer of its own, and
//! [`remove_rootfs`], which takes it apart again from the directory alone (after an agent restart
//! there is no in-memory state).
//!
//! In [`RootfsMode::Overlay`] `dir/rootfs` is an overlayfs mount with the layers as lowerdirs and
//! `dir/upper`, `dir/work` as upper and work dir (`dir/lower` holds short symlinks to the layers,
//! see `mount_overlay`). In [`RootfsMode::Copy`], for hosts without a usable overlayfs,
//! `dir/rootfs` is a plain copy of the layers with their whiteouts applied, the same view overlayfs
//! would give (<https://docs.kernel.org/filesystems/overlayfs.html>).

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, Metadata, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Once;

use skiff_sandbox::mounts::{detach, mount_points_below};
use tracing::{debug, info, info_span, warn};

use crate::layers::{
    OPAQUE_XATTR, Timespec, c_path, is_whiteout, mknod, remove_any, set_image_xattr, set_times,
};

const ROOTFS: &str = "rootfs";
const UPPER: &str = "upper";
const WORK: &str = "work";
const LOWER: &str = "lower";

/// Warns about the copy fallback once per process; it costs disk and start time on every
/// container, but saying so per container would drown the log.
static FALLBACK_WARNING: Once = Once::new();

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs: {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rootfs: {} already exists; remove_rootfs discards it", .path.display())]
    Exists { path: PathBuf },
    #[error("rootfs: copying {} to {}: {source}", .from.display(), .to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rootfs: overlay mount options for {} are {len} bytes, over the kernel's limit", .path.display())]
    OptionsTooLong { path: PathBuf, len: usize },
    #[error("rootfs: mounting overlay on {}: {source}", .path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rootfs: unmounting {}: {source}", .path.display())]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rootfs: {} is still mounted after unmounting it; not deleting through it", .path.display())]
    StillMounted { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsMode {
    Overlay,
    Copy,
}

impl RootfsMode {
    /// `Overlay` when this kernel lists overlayfs in /proc/filesystems, else `Copy`. A modular
    /// overlayfs that is not loaded yet reads as `Copy`; pass `Overlay` to let mount(2) load it.
    pub fn detect() -> RootfsMode {
        let listed = fs::read_to_string("/proc/filesystems").is_ok_and(|list| {
            list.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        });
        if listed {
            RootfsMode::Overlay
        } else {
            RootfsMode::Copy
        }
    }
}

/// A container's root filesystem at `dir/rootfs`. Holds no resources: dropping it leaves the
/// mount in place, and [`remove_rootfs`] works from the directory alone.
#[derive(Debug)]
pub struct Rootfs {
    dir: PathBuf,
    path: PathBuf,
    mode: RootfsMode,
}

impl Rootfs {
    /// Makes the root filesystem of the container whose directory (existing) is `dir`, from
    /// `layers` (unpacked layer directories, base first). In `Overlay` mode a mount failing with
    /// EINVAL, ENODEV or EPERM (no usable overlayfs here) falls back to `Copy`.
    ///
    /// Fails with [`RootfsError::Exists`] if `dir` already has a rootfs, e.g. from a create that
    /// a crash interrupted: [`remove_rootfs`] first. On any other error nothing is left behind.
    pub fn create(layers: &[PathBuf], dir: &Path, mode: RootfsMode) -> Result<Rootfs, RootfsError> {
        // Absolute, since the mount runs with another working directory and the layer
        // symlinks resolve relative to their own directory.
        let dir = std::path::absolute(dir).map_err(io_err(dir))?;
        let mut layers = (layers.iter())
            .map(|l| std::path::absolute(l).map_err(io_err(l)))
            .collect::<Result<Vec<_>, _>>()?;
        // overlayfs refuses a lowerdir listed twice (ELOOP), yet a layer can repeat in an image
        // (the empty layer often does). Keeping only its topmost occurrence gives the same view:
        // every path that layer has an entry for is decided again by that topmost copy, and the
        // paths it has none for never depended on its lower copies.
        let mut seen = HashSet::new();
        layers.reverse();
        layers.retain(|l| seen.insert(l.clone()));
        layers.reverse();
        let _span = info_span!("rootfs", dir = %dir.display()).entered();
        let path = dir.join(ROOTFS);
        match fs::create_dir(&path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RootfsError::Exists { path });
            }
            other => other.map_err(io_err(&path))?,
        }
        let made = fs::set_permissions(&path, Permissions::from_mode(0o755))
            .map_err(io_err(&path))
            .and_then(|()| match mode {
                RootfsMode::Overlay => overlay_or_copy(&layers, &dir),
                RootfsMode::Copy => copy_layers(&layers, &path).map(|()| RootfsMode::Copy),
            });
        match made {
            Ok(mode) => {
                info!(?mode, layers = layers.len(), "created rootfs");
                Ok(Rootfs { dir, path, mode })
            }
            Err(e) => {
                if let Err(cleanup) = remove_rootfs(&dir) {
                    warn!(error = %cleanup, "could not clean up after a failed rootfs create");
                }
                Err(e)
            }
        }
    }

    /// The root filesystem's path, `dir/rootfs`: the bundle's `root.path`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mode in use, which is `Copy` after a fallback.
    pub fn mode(&self) -> RootfsMode {
        self.mode
    }

    /// [`remove_rootfs`] on this rootfs's directory.
    pub fn remove(self) -> Result<(), RootfsError> {
        remove_rootfs(&self.dir)
    }
}

fn overlay_or_copy(layers: &[PathBuf], dir: &Path) -> Result<RootfsMode, RootfsError> {
    match mount_overlay(layers, dir) {
        Ok(()) => Ok(RootfsMode::Overlay),
        Err(RootfsError::Mount { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::EINVAL | libc::ENODEV | libc::EPERM)
            ) =>
        {
            FALLBACK_WARNING.call_once(|| {
                warn!(error = %source, "overlay mount failed; copying image layers into each rootfs instead");
            });
            debug!(error = %source, "overlay mount failed; copying");
            for name in [UPPER, WORK, LOWER] {
                let path = dir.join(name);
                remove_any(&path).map_err(io_err(&path))?;
            }
            copy_layers(layers, &dir.join(ROOTFS))?;
            Ok(RootfsMode::Copy)
        }
        Err(e) => Err(e),
    }
}

/// Mounts the overlay on `dir/rootfs`.
///
/// mount(2) takes at most one page of options, which 60 absolute layer paths overflow. So, as
/// Docker's overlay2 does, the lowerdirs are short symlinks `dir/lower/0`, `1`, ... to the layers
/// (overlayfs follows them when it resolves lowerdir at mount time), named relative to `dir/lower`
/// by a mount run with that as working directory: `lowerdir=2:1:0,upperdir=../upper,...`, a few
/// bytes a layer, well below a page even at overlayfs's 500-layer limit.
fn mount_overlay(layers: &[PathBuf], dir: &Path) -> Result<(), RootfsError> {
    let lower = dir.join(LOWER);
    fs::create_dir(&lower).map_err(io_err(&lower))?;
    let names: Vec<String> = if layers.is_empty() {
        // overlayfs needs at least one lowerdir.
        let empty = lower.join("empty");
        fs::create_dir(&empty).map_err(io_err(&empty))?;
        vec!["empty".to_owned()]
    } else {
        for (i, layer) in layers.iter().enumerate() {
            let link = lower.join(i.to_string());
            std::os::unix::fs::symlink(layer, &link).map_err(io_err(&link))?;
        }
        (0..layers.len()).rev().map(|i| i.to_string()).collect()
    };
    for name in [UPPER, WORK] {
        let path = dir.join(name);
        fs::create_dir(&path)
            .and_then(|()| fs::set_permissions(&path, Permissions::from_mode(0o755)))
            .map_err(io_err(&path))?;
    }
    // index=off, as Docker's overlay2 sets it (moby#37993): where the kernel defaults to
    // index=on, the upper dir becomes exclusive, and a copy of this mount leaked into another
    // mount namespace fails later mounts with EBUSY. Nothing here needs what the index gives.
    let options = format!(
        "lowerdir={},upperdir=../{UPPER},workdir=../{WORK},index=off",
        names.join(":")
    );
    let target = dir.join(ROOTFS);
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    if options.len() >= page {
        return Err(RootfsError::OptionsTooLong {
            path: target,
            len: options.len(),
        });
    }
    mount_from(&lower, &target, &options).map_err(|source| RootfsError::Mount {
        path: target,
        source,
    })
}

/// mount(2)s an overlay with `options` while the working directory is `cwd`.
///
/// The working directory belongs to the fs_struct that all threads of a process share, so a
/// plain chdir would move it under every other thread's relative paths. A short-lived thread
/// first unshare(CLONE_FS)s, which gives it a private copy, then chdirs and mounts; the process's
/// own working directory never changes, and unlike a forked helper nothing runs between fork and
/// exec in a multi-threaded process.
fn mount_from(cwd: &Path, target: &Path, options: &str) -> io::Result<()> {
    let target = c_path(target)?;
    let options = CString::new(options)?;
    std::thread::scope(|scope| {
        let mounter = scope.spawn(|| {
            // SAFETY: unshare takes no pointers; CLONE_FS affects only this thread.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(io::Error::last_os_error());
            }
            std::env::set_current_dir(cwd)?;
            // SAFETY: all pointers are NUL-terminated strings that outlive the call.
            let rc = unsafe {
                libc::mount(
                    c"overlay".as_ptr(),
                    target.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    options.as_ptr().cast(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
        mounter
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Copies `layers`, base first, into `rootfs` with overlayfs's rules: an entry replaces what the
/// layers below have at its path, except that directories merge unless the upper one is opaque;
/// a whiteout deletes the path. Every destination directory is checked with lstat to be a real
/// directory before anything is written in it, so a symlink from an image is never followed.
fn copy_layers(layers: &[PathBuf], rootfs: &Path) -> Result<(), RootfsError> {
    for layer in layers {
        // Hard links are kept within a layer; overlayfs does not link across layers either.
        let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        let mut dirs: Vec<(PathBuf, PathBuf, Metadata)> = Vec::new();
        // A stack, not recursion: an image's directory depth is not bounded by anything we set.
        let mut pending = vec![(layer.clone(), rootfs.to_path_buf())];
        while let Some((src_dir, dst_dir)) = pending.pop() {
            let fail = |source| RootfsError::Copy {
                from: src_dir.clone(),
                to: dst_dir.clone(),
                source,
            };
            if xattr::get(&src_dir, OPAQUE_XATTR).map_err(fail)?.as_deref() == Some(b"y") {
                for entry in fs::read_dir(&dst_dir).map_err(fail)? {
                    remove_any(&entry.map_err(fail)?.path()).map_err(fail)?;
                }
            }
            for entry in fs::read_dir(&src_dir).map_err(fail)? {
                let entry = entry.map_err(fail)?;
                let (src, dst) = (entry.path(), dst_dir.join(entry.file_name()));
                let fail = |source| RootfsError::Copy {
                    from: src.clone(),
                    to: dst.clone(),
                    source,
                };
                let meta = fs::symlink_metadata(&src).map_err(fail)?;
                if is_whiteout(&meta) {
                    remove_any(&dst).map_err(fail)?;
                } else if meta.is_dir() {
                    if !fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
                        remove_any(&dst)
                            .and_then(|()| fs::create_dir(&dst))
                            .map_err(fail)?;
                    }
                    pending.push((src.clone(), dst.clone()));
                    dirs.push((src, dst, meta));
                } else {
                    remove_any(&dst).map_err(fail)?;
                    copy_entry(&src, &dst, &meta, &mut links).map_err(fail)?;
                }
            }
        }
        // Metadata last: adding entries to a directory bumps its mtime.
        for (src, dst, meta) in dirs.iter().rev() {
            copy_metadata(src, dst, meta).map_err(|source| RootfsError::Copy {
                from: src.clone(),
                to: dst.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    meta: &Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let key = (meta.dev(), meta.ino());
    if meta.nlink() > 1
        && let Some(first) = links.get(&key)
    {
        return fs::hard_link(first, dst);
    }
    let file_type = meta.file_type();
    if file_type.is_file() {
        fs::copy(src, dst)?;
    } else if file_type.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else {
        // Devices, fifos and sockets.
        mknod(dst, meta.mode(), meta.rdev())?;
    }
    copy_metadata(src, dst, meta)?;
    if meta.nlink() > 1 {
        links.insert(key, dst.to_path_buf());
    }
    Ok(())
}

fn copy_metadata(src: &Path, dst: &Path, meta: &Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    // After the chown, which clears setuid/setgid bits and file capabilities.
    if !meta.file_type().is_symlink() {
        fs::set_permissions(dst, Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let names: Vec<_> = match xattr::list(src) {
        Ok(names) => names.collect(),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Vec::new(),
        Err(e) => return Err(e),
    };
    for name in names {
        if let Some(value) = xattr::get(src, &name)? {
            set_image_xattr(dst, &name, &value)?;
        }
    }
    set_times(dst, Timespec::mtime_of(meta))
}

/// Unmounts and deletes the root filesystem in `dir` (`rootfs`, `upper`, `work`, `lower`),
/// whether or not it is mounted, whichever mode made it, and with nothing to do if it is gone:
/// safe to repeat, and to call from a process that did not create it.
///
/// Never deletes through a mount: if a mount at or below `dir/rootfs` survives unmounting, this
/// fails with [`RootfsError::StillMounted`] and deletes nothing.
pub fn remove_rootfs(dir: &Path) -> Result<(), RootfsError> {
    // mountinfo shows canonical paths.
    let dir = match fs::canonicalize(dir) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let rootfs = dir.join(ROOTFS);
    let mounts = mounts_below(&rootfs)?;
    // Last mounted first: mountinfo lists a mount after the one it sits on.
    for mount in mounts.iter().rev() {
        detach(mount).map_err(|source| RootfsError::Unmount {
            path: mount.clone(),
            source,
        })?;
    }
    if let Some(mount) = mounts_below(&rootfs)?.into_iter().next() {
        return Err(RootfsError::StillMounted { path: mount });
    }
    for name in [ROOTFS, UPPER, WORK, LOWER] {
        let path = dir.join(name);
        // remove_dir_all does not follow symlinks, so `lower`'s links to the layers are safe.
        remove_any(&path).map_err(io_err(&path))?;
    }
    if !mounts.is_empty() {
        info!(dir = %dir.display(), "unmounted and removed rootfs");
    }
    Ok(())
}

/// Mount points at or below `path`, in mountinfo order.
fn mounts_below(path: &Path) -> Result<Vec<PathBuf>, RootfsError> {
    let mountinfo = Path::new("/proc/self/mountinfo");
    mount_points_below(path).map_err(io_err(mountinfo))
}

#[cfg(test)]
mod tests;

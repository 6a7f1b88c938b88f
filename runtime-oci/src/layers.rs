//! [`LayerStore`]: the image layers unpacked on this node, one directory per layer under one root
//! (`DATA/oci/layers/<sha256 hex>`), each unpacked once and shared by every image that lists it.
//!
//! A layer directory is laid out the way overlayfs reads a lowerdir, so [`crate::rootfs`] can stack
//! them as they are. The changeset rules follow the OCI image spec
//! (<https://github.com/opencontainers/image-spec/blob/main/layer.md>) and containerd's overlay
//! apply: `.wh.NAME` becomes a 0:0 character device `NAME`, `.wh..wh..opq` in a directory becomes
//! `trusted.overlay.opaque=y` on it, and other `.wh..wh.*` (AUFS bookkeeping) are dropped.
//!
//! This file owns the store (naming, unpack-once locking, crash safety); `extract` turns one
//! archive into a layer directory. The small metadata helpers at the bottom (`mknod`,
//! `set_times`, `set_image_xattr`, ...) are shared with the copy mode of [`crate::rootfs`].

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, Metadata, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tracing::{debug, info, info_span};

mod extract;
#[cfg(test)]
pub(crate) mod tests;

/// The xattr overlayfs reads to hide a directory's content in the layers below.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Names of the half-unpacked layers; [`LayerStore::open`] removes them.
const TMP_PREFIX: &str = ".tmp-";

/// Distinguishes the temp dirs of concurrent unpacks of different layers within one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer store: {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer blob {}: file name is not a sha256 digest (64 lowercase hex)", .path.display())]
    Digest { path: PathBuf },
    #[error("layer {layer}: reading the archive: {source}")]
    Archive {
        layer: String,
        #[source]
        source: io::Error,
    },
    /// The archive asks for something a layer must not do (escape the layer, link a directory...).
    #[error("layer {layer}: entry {}: {reason}", .entry.display())]
    Entry {
        layer: String,
        entry: PathBuf,
        reason: &'static str,
    },
    #[error("layer {layer}: unpacking entry {}: {source}", .entry.display())]
    Unpack {
        layer: String,
        entry: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The unpacked layers under one root. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct LayerStore {
    root: PathBuf,
    /// One lock per layer being unpacked, so concurrent callers for the same layer wait for the
    /// first instead of unpacking it again. Entries go away when their last user leaves.
    unpacking: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    #[cfg(test)]
    unpacks: std::sync::atomic::AtomicUsize,
}

impl LayerStore {
    /// Opens (creating) the store at `root` and removes the half-unpacked layers an earlier run
    /// left when it crashed. Assumes one store per root: a second live process would lose its
    /// in-progress unpacks.
    pub fn open(root: &Path) -> Result<LayerStore, LayerError> {
        let io = |source| LayerError::Io {
            path: root.to_path_buf(),
            source,
        };
        fs::create_dir_all(root).map_err(io)?;
        for entry in fs::read_dir(root).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry
                .file_name()
                .as_bytes()
                .starts_with(TMP_PREFIX.as_bytes())
            {
                let path = entry.path();
                info!(path = %path.display(), "removing a half-unpacked layer left by an earlier run");
                remove_any(&path).map_err(|source| LayerError::Io { path, source })?;
            }
        }
        Ok(LayerStore {
            root: root.to_path_buf(),
            unpacking: Mutex::default(),
            #[cfg(test)]
            unpacks: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding the content of the layer blob at `blob` (a file named by its sha256
    /// hex, content already verified), unpacking it first if no earlier call did. Blocking.
    ///
    /// Guarantees: the returned directory is complete (a crash mid-unpack leaves only a temp dir
    /// that [`LayerStore::open`] removes); concurrent calls for one layer unpack it once.
    pub fn unpacked(&self, blob: &Path) -> Result<PathBuf, LayerError> {
        let hex = digest_hex(blob)?;
        let dest = self.root.join(hex);
        if is_dir(&dest) {
            return Ok(dest);
        }
        let lock = self
            .unpacking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(hex.to_owned())
            .or_default()
            .clone();
        let result = {
            let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
            if is_dir(&dest) {
                Ok(())
            } else {
                self.unpack(blob, hex, &dest)
            }
        };
        let mut unpacking = self
            .unpacking
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Clones are only taken under this lock, so a count of 2 (the map's and ours) means no
        // caller is waiting on this layer any more.
        if Arc::strong_count(&lock) == 2 {
            unpacking.remove(hex);
        }
        result.map(|()| dest)
    }

    fn unpack(&self, blob: &Path, hex: &str, dest: &Path) -> Result<(), LayerError> {
        let _span = info_span!("unpack_layer", layer = hex).entered();
        let started = Instant::now();
        #[cfg(test)]
        self.unpacks.fetch_add(1, Ordering::SeqCst);
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = (self.root).join(format!("{TMP_PREFIX}{hex}-{}-{seq}", std::process::id()));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: io::Error| LayerError::Io { path, source }
        };
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        let result = fs::set_permissions(&tmp, Permissions::from_mode(0o755))
            .map_err(io(&tmp))
            .and_then(|()| extract::extract(blob, hex, &tmp))
            // Without this a power loss after the rename could leave a complete-looking layer
            // with empty files; a layer is unpacked once per node, so the flush is affordable.
            .and_then(|()| syncfs(&tmp).map_err(io(&tmp)))
            .and_then(|()| match fs::rename(&tmp, dest) {
                Ok(()) => File::open(&self.root)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&self.root)),
                // Another process sharing the root won the race; its copy is as good as ours.
                Err(_) if is_dir(dest) => remove_any(&tmp).map_err(io(&tmp)),
                Err(source) => Err(io(dest)(source)),
            });
        match &result {
            Ok(()) => info!(elapsed_ms = started.elapsed().as_millis(), "unpacked layer"),
            Err(_) => {
                if let Err(error) = remove_any(&tmp) {
                    debug!(%error, path = %tmp.display(), "could not remove a failed unpack");
                }
            }
        }
        result
    }
}

fn digest_hex(blob: &Path) -> Result<&str, LayerError> {
    blob.file_name()
        .and_then(OsStr::to_str)
        .filter(|n| n.len() == 64 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| LayerError::Digest {
            path: blob.to_path_buf(),
        })
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timespec {
    pub(crate) secs: i64,
    pub(crate) nanos: i64,
}

impl Timespec {
    pub(crate) fn mtime_of(meta: &Metadata) -> Timespec {
        Timespec {
            secs: meta.mtime(),
            nanos: meta.mtime_nsec(),
        }
    }
}

fn is_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// An overlayfs whiteout: a character device 0:0.
pub(crate) fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Removes whatever is at `path` without following a symlink there; nothing there is fine.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// mknod(2); the umask may strip permission bits, so callers chmod afterwards.
pub(crate) fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::mknod(path.as_ptr(), mode, dev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets atime and mtime to `mtime` on `path` itself, not on a symlink's target.
pub(crate) fn set_times(path: &Path, mtime: Timespec) -> io::Result<()> {
    let path = c_path(path)?;
    let time = libc::timespec {
        tv_sec: mtime.secs as libc::time_t,
        tv_nsec: mtime.nanos as _,
    };
    let times = [time, time];
    // SAFETY: `path` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets an xattr carried by an image on `path` (not following a symlink there).
///
/// `trusted.overlay.*` from an image is dropped: those attributes steer overlayfs (opaque dirs,
/// redirects, metacopy), and only this module's whiteout conversion may set them. Like
/// containerd, xattrs the filesystem refuses (EOPNOTSUPP, or EPERM for `user.*` on a symlink)
/// are skipped.
pub(crate) fn set_image_xattr(path: &Path, name: &OsStr, value: &[u8]) -> io::Result<()> {
    if name.as_bytes().starts_with(b"trusted.overlay.") {
        return Ok(());
    }
    match xattr::set(path, name, value) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EPERM)) => {
            debug!(path = %path.display(), name = ?name, error = %e, "xattr not supported here; skipped");
            Ok(())
        }
        other => other,
    }
}

fn syncfs(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    // SAFETY: `dir` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! Turning one layer archive into a directory in the overlayfs lowerdir format: decompression,
//! the tar walk, whiteout conversion and the checks that keep every entry inside the layer.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use tar::EntryType;
use tracing::debug;

use super::{LayerError, OPAQUE_XATTR, Timespec, mknod, remove_any, set_image_xattr, set_times};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const WHITEOUT_PREFIX: &[u8] = b".wh.";

pub(super) fn extract(blob: &Path, layer: &str, root: &Path) -> Result<(), LayerError> {
    let io = |source| LayerError::Io {
        path: blob.to_path_buf(),
        source,
    };
    let mut reader = BufReader::with_capacity(128 * 1024, File::open(blob).map_err(io)?);
    let head = reader.fill_buf().map_err(io)?;
    let (gzip, zstd) = (head.starts_with(&GZIP_MAGIC), head.starts_with(&ZSTD_MAGIC));
    let stream: Box<dyn Read> = if gzip {
        // Multi-member, as Go's gzip reader (and so every image builder) accepts them.
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if zstd {
        Box::new(ZstdFrames {
            source: reader,
            frame: FrameDecoder::new(),
            in_frame: false,
        })
    } else {
        Box::new(reader)
    };
    let archive_err = |source| LayerError::Archive {
        layer: layer.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(stream);
    let mut extractor = Extractor {
        root,
        layer,
        dirs: Vec::new(),
    };
    for entry in archive.entries().map_err(archive_err)? {
        extractor.entry(entry.map_err(archive_err)?)?;
    }
    extractor.finish()
}

/// Writes one layer's entries below `root`, never outside it.
///
/// Every path is checked component by component with `lstat` before use, and a symlink found on
/// the way is an error rather than followed: `a -> /etc` then `a/passwd` must not reach the host.
/// The check-then-use is sound because `root` is a fresh temp dir only this extractor writes.
struct Extractor<'a> {
    root: &'a Path,
    layer: &'a str,
    /// Directories and their mtimes, set last: adding entries to a directory bumps its mtime.
    dirs: Vec<(PathBuf, Timespec)>,
}

struct EntryMeta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timespec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path().map_err(|e| self.archive(e))?.into_owned();
        let rel = clean(&raw).ok_or_else(|| self.bad(&raw, "path has a `..` component"))?;
        let meta = self.meta(&mut entry, &raw)?;
        let name = rel.file_name().map(OsStr::as_bytes);
        if let Some(hidden) = name.and_then(|n| n.strip_prefix(WHITEOUT_PREFIX)) {
            return self.whiteout(&raw, &rel, hidden, &meta);
        }
        let abs = self.root.join(&rel);
        if kind == EntryType::Directory {
            // The layer root (`./`) has no parent and always exists.
            if let Some(parent) = rel.parent() {
                self.dir_chain(&raw, parent, true)?;
                match fs::symlink_metadata(&abs) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_any(&abs).map_err(|e| self.unpack_err(&raw, e))?;
                        self.make_dir(&raw, &abs)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => self.make_dir(&raw, &abs)?,
                    Err(e) => return Err(self.unpack_err(&raw, e)),
                }
            }
            self.apply(&raw, &abs, &meta, false)?;
            self.dirs.push((rel, meta.mtime));
            return Ok(());
        }
        if name.is_none() {
            return Err(self.bad(&raw, "a non-directory entry names the layer root"));
        }
        self.dir_chain(&raw, rel.parent().unwrap_or(Path::new("")), true)?;
        let fail = |source| self.unpack_err(&raw, source);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_any(&abs).map_err(fail)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&abs)
                    .map_err(fail)?;
                io::copy(&mut entry, &mut file).map_err(fail)?;
            }
            EntryType::Symlink => {
                let target = entry.link_name().map_err(fail)?;
                let target = target.ok_or_else(|| self.bad(&raw, "symlink without a target"))?;
                remove_any(&abs).map_err(fail)?;
                std::os::unix::fs::symlink(target, &abs).map_err(fail)?;
            }
            EntryType::Link => {
                let target = entry.link_name().map_err(fail)?;
                let target = target.ok_or_else(|| self.bad(&raw, "hard link without a target"))?;
                return self.hard_link(&raw, &rel, &target);
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let major = header.device_major().map_err(fail)?;
                let minor = header.device_minor().map_err(fail)?;
                let (file_type, dev) = match (kind, major, minor) {
                    (EntryType::Fifo, ..) => (libc::S_IFIFO, 0),
                    (_, Some(major), Some(minor)) => {
                        let file_type = match kind {
                            EntryType::Char => libc::S_IFCHR,
                            _ => libc::S_IFBLK,
                        };
                        (file_type, libc::makedev(major, minor))
                    }
                    _ => return Err(self.bad(&raw, "device without device numbers")),
                };
                remove_any(&abs).map_err(fail)?;
                mknod(&abs, file_type | (meta.mode & 0o7777), dev).map_err(fail)?;
            }
            _ => return Err(self.bad(&raw, "unsupported entry type")),
        }
        let symlink = kind == EntryType::Symlink;
        self.apply(&raw, &abs, &meta, symlink)?;
        set_times(&abs, meta.mtime).map_err(|e| self.unpack_err(&raw, e))
    }

    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        raw: &Path,
    ) -> Result<EntryMeta, LayerError> {
        let header = entry.header();
        // The tar crate already applies PAX `uid`/`gid` overrides to the header.
        let id = |id: io::Result<u64>| match id.map(u32::try_from) {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(_)) => Err(self.bad(raw, "uid or gid out of range")),
            Err(e) => Err(self.archive(e)),
        };
        let (uid, gid) = (id(header.uid())?, id(header.gid())?);
        let mode = header.mode().map_err(|e| self.archive(e))?;
        let secs = header.mtime().map_err(|e| self.archive(e))?;
        let mut mtime = Timespec {
            secs: i64::try_from(secs).unwrap_or(i64::MAX),
            nanos: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| self.archive(e))? {
            for ext in pax {
                let ext = ext.map_err(|e| self.archive(e))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((
                        OsStr::from_bytes(name).to_owned(),
                        ext.value_bytes().to_vec(),
                    ));
                } else if key == b"mtime" {
                    mtime = ext.value().ok().and_then(parse_pax_time).unwrap_or(mtime);
                }
            }
        }
        Ok(EntryMeta {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }

    /// `hidden` is the entry's file name without its `.wh.` prefix.
    fn whiteout(
        &self,
        raw: &Path,
        rel: &Path,
        hidden: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), LayerError> {
        let dir = rel.parent().unwrap_or(Path::new(""));
        let fail = |source| self.unpack_err(raw, source);
        if hidden == b".wh..opq" {
            self.dir_chain(raw, dir, true)?;
            return xattr::set(self.root.join(dir), OPAQUE_XATTR, b"y").map_err(fail);
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            debug!(entry = %raw.display(), "ignoring AUFS metadata entry");
            return Ok(());
        }
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(self.bad(raw, "whiteout names no file"));
        }
        self.dir_chain(raw, dir, true)?;
        let path = self.root.join(dir).join(OsStr::from_bytes(hidden));
        remove_any(&path).map_err(fail)?;
        mknod(&path, libc::S_IFCHR, 0).map_err(fail)?;
        std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid)).map_err(fail)
    }

    fn hard_link(&self, raw: &Path, rel: &Path, target: &Path) -> Result<(), LayerError> {
        let target =
            clean(target).ok_or_else(|| self.bad(raw, "hard link target has a `..` component"))?;
        if target == rel {
            return Ok(());
        }
        let target_dir = target
            .parent()
            .ok_or_else(|| self.bad(raw, "hard link to the layer root"))?;
        self.dir_chain(raw, target_dir, false)?;
        let target = self.root.join(target);
        let fail = |source| self.unpack_err(raw, source);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => return Err(self.bad(raw, "hard link to a directory")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.bad(raw, "hard link target is not an earlier entry"));
            }
            Err(e) => return Err(fail(e)),
        }
        let path = self.root.join(rel);
        remove_any(&path).map_err(fail)?;
        // linkat(2) without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        fs::hard_link(&target, &path).map_err(fail)
    }

    /// Makes sure every component of `dir` (relative to the root) is a real directory, creating
    /// missing ones (mode 0755, root-owned, as containerd does) when `create` is set.
    fn dir_chain(&self, raw: &Path, dir: &Path, create: bool) -> Result<(), LayerError> {
        let mut path = self.root.to_path_buf();
        for component in dir.components() {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.bad(raw, "a parent directory is a symlink"));
                }
                Ok(_) => return Err(self.bad(raw, "a parent path is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    self.make_dir(raw, &path)?
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(self.bad(raw, "a parent directory does not exist"));
                }
                Err(e) => return Err(self.unpack_err(raw, e)),
            }
        }
        Ok(())
    }

    fn make_dir(&self, raw: &Path, path: &Path) -> Result<(), LayerError> {
        fs::create_dir(path)
            .and_then(|()| fs::set_permissions(path, Permissions::from_mode(0o755)))
            .map_err(|e| self.unpack_err(raw, e))
    }

    fn apply(
        &self,
        raw: &Path,
        path: &Path,
        meta: &EntryMeta,
        symlink: bool,
    ) -> Result<(), LayerError> {
        let fail = |source| self.unpack_err(raw, source);
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)).map_err(fail)?;
        // After the chown, which clears setuid/setgid bits and file capabilities.
        if !symlink {
            fs::set_permissions(path, Permissions::from_mode(meta.mode & 0o7777)).map_err(fail)?;
        }
        for (name, value) in &meta.xattrs {
            set_image_xattr(path, name, value).map_err(fail)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), LayerError> {
        for (rel, mtime) in self.dirs.iter().rev() {
            // A later entry may have replaced this directory or a parent (even by a symlink):
            // only a still-real directory chain gets its time.
            if self.dir_chain(rel, rel, false).is_ok() {
                set_times(&self.root.join(rel), *mtime).map_err(|e| self.unpack_err(rel, e))?;
            }
        }
        Ok(())
    }

    fn bad(&self, entry: &Path, reason: &'static str) -> LayerError {
        LayerError::Entry {
            layer: self.layer.to_owned(),
            entry: entry.to_path_buf(),
            reason,
        }
    }

    fn unpack_err(&self, entry: &Path, source: io::Error) -> LayerError {
        LayerError::Unpack {
            layer: self.layer.to_owned(),
            entry: entry.to_path_buf(),
            source,
        }
    }

    fn archive(&self, source: io::Error) -> LayerError {
        LayerError::Archive {
            layer: self.layer.to_owned(),
            source,
        }
    }
}

/// The entry path relative to the layer root: a leading `/` and `.` components are dropped
/// (GNU tar strips them too); `None` for a `..` component, which no well-formed layer has.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => return None,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(clean)
}

/// PAX times are decimal seconds with an optional fraction, e.g. `1700000000.5`.
fn parse_pax_time(value: &str) -> Option<Timespec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let mut secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let mut nanos: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    if value.starts_with('-') && nanos > 0 {
        secs -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some(Timespec { secs, nanos })
}

/// Decodes every frame of a zstd stream. RFC 8878 lets a stream hold several frames (parallel
/// compressors write one per chunk) and skippable frames, while ruzstd's `StreamingDecoder`
/// stops after the first.
struct ZstdFrames<R> {
    source: R,
    frame: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let invalid = |e: FrameDecoderError| io::Error::new(io::ErrorKind::InvalidData, e);
        loop {
            if !self.in_frame {
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.frame.reset(&mut self.source) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let mut skipped = (&mut self.source).take(u64::from(length));
                        if io::copy(&mut skipped, &mut io::sink())? < u64::from(length) {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    Err(e) => return Err(invalid(e)),
                }
                continue;
            }
            while self.frame.can_collect() == 0 && !self.frame.is_finished() {
                (self.frame)
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(invalid)?;
            }
            match self.frame.read(buf)? {
                0 => self.in_frame = false,
                n => return Ok(n),
            }
        }
    }
}

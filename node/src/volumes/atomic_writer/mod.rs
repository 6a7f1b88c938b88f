//! Publishes a set of files into a volume directory so a reader never sees a half-updated
//! mix: the kubelet's `AtomicWriter` (`pkg/volume/util/atomic_writer.go`), which ConfigMap,
//! Secret, downwardAPI (and later projected) volumes share.
//!
//! Layout of the target directory:
//! ```text
//! ..2025_01_02_15_04_05.123456789   the current payload, written whole before it is published
//! ..data -> ..2025_01_02_15_04_05.123456789
//! key -> ..data/key                  one symlink per top-level name of the payload
//! ```
//! An update writes a new timestamped directory, points `..data_tmp` at it and renames that
//! over `..data` (one atomic `rename(2)`), adds and removes the user-visible symlinks, then
//! deletes the old directory. A payload equal to what is published changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (`defaultMode`/`mode`, e.g. `0o644`).
    pub mode: u32,
}

/// Relative path (`a/b.txt`) → file.
pub type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid path: must not be empty: {0:?}")]
    EmptyPath(String),
    #[error("invalid path: must be relative path: {0}")]
    AbsolutePath(String),
    #[error("invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")]
    PathTooLong(String),
    #[error(
        "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
    )]
    NameTooLong(String),
    #[error("invalid path: must not contain '..': {0}")]
    Backstep(String),
    #[error("invalid path: must not start with '..': {0}")]
    DotDotPrefix(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes payloads into one volume directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target_dir: PathBuf,
}

impl AtomicWriter {
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        Self {
            target_dir: target_dir.into(),
        }
    }

    /// Publishes `payload`, replacing whatever was published before. Returns whether anything
    /// changed on disk.
    pub fn write(&self, payload: &Payload) -> Result<bool, WriteError> {
        let payload = clean_payload(payload)?;
        let target = &self.target_dir;
        fs::create_dir_all(target).map_err(io_err(target))?;

        let data_link = target.join(DATA_DIR);
        let old_ts = match fs::read_link(&data_link) {
            Ok(dir) => Some(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&data_link)(e)),
        };
        let old_ts_path = old_ts.as_ref().map(|d| target.join(d));
        let old_files = match &old_ts_path {
            Some(dir) => read_tree(dir)?,
            None => Payload::new(),
        };

        let changed = old_ts_path.is_none() || old_files != payload;
        if changed {
            let ts_dir = self.new_timestamp_dir()?;
            write_payload(&ts_dir, &payload)?;
            let ts_name = ts_dir
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| ts_dir.clone());
            let tmp_link = target.join(DATA_DIR_TMP);
            match fs::remove_file(&tmp_link) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err(&tmp_link)(e));
                }
                _ => {}
            }
            symlink(&ts_name, &tmp_link).map_err(io_err(&tmp_link))?;
            fs::rename(&tmp_link, &data_link).map_err(io_err(&data_link))?;
        }

        let visible = top_level_names(payload.keys());
        for name in &visible {
            let link = target.join(name);
            match fs::read_link(&link) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    symlink(Path::new(DATA_DIR).join(name), &link).map_err(io_err(&link))?;
                }
                Err(e) => return Err(io_err(&link)(e)),
            }
        }
        for stale in top_level_names(old_files.keys()).difference(&visible) {
            let link = target.join(stale);
            fs::remove_file(&link).map_err(io_err(&link))?;
        }
        if changed && let Some(old) = old_ts_path {
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        Ok(changed)
    }

    /// `..YYYY_MM_DD_HH_MM_SS.N`, unique in the target directory, mode 0755 whatever the
    /// umask so every user of the container can traverse it.
    fn new_timestamp_dir(&self) -> Result<PathBuf, WriteError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let now = chrono::Utc::now();
        loop {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "..{}.{}{seq}",
                now.format("%Y_%m_%d_%H_%M_%S"),
                now.timestamp_subsec_nanos()
            );
            let dir = self.target_dir.join(name);
            match fs::create_dir(&dir) {
                Ok(()) => {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                        .map_err(io_err(&dir))?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
    }
}

/// Validates every path as the kubelet does and normalises it (`./a//b` → `a/b`).
fn clean_payload(payload: &Payload) -> Result<Payload, WriteError> {
    let mut clean = Payload::new();
    for (path, file) in payload {
        validate_path(path)?;
        let normal: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if normal.is_empty() {
            return Err(WriteError::EmptyPath(path.clone()));
        }
        clean.insert(normal.join("/"), file.clone());
    }
    Ok(clean)
}

fn validate_path(path: &str) -> Result<(), WriteError> {
    if path.is_empty() {
        return Err(WriteError::EmptyPath(path.to_owned()));
    }
    if path.starts_with('/') {
        return Err(WriteError::AbsolutePath(path.to_owned()));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(WriteError::PathTooLong(path.to_owned()));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(WriteError::Backstep(path.to_owned()));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(WriteError::NameTooLong(path.to_owned()));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(WriteError::DotDotPrefix(path.to_owned()));
    }
    Ok(())
}

fn write_payload(dir: &Path, payload: &Payload) -> Result<(), WriteError> {
    for (rel, file) in payload {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(&file.data).map_err(io_err(&path))?;
        // The mode given at creation is masked by the umask; the volume's mode is not.
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode)).map_err(io_err(&path))?;
    }
    Ok(())
}

/// Every regular file under `dir`, as a payload, to compare with a new one.
fn read_tree(dir: &Path) -> Result<Payload, WriteError> {
    let mut out = Payload::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let abs = dir.join(&rel);
        for entry in fs::read_dir(&abs).map_err(io_err(&abs))? {
            let entry = entry.map_err(io_err(&abs))?;
            let rel = rel.join(entry.file_name());
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            if meta.is_dir() {
                pending.push(rel);
            } else if meta.is_file() {
                let data = fs::read(&path).map_err(io_err(&path))?;
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    FileProjection {
                        data,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Ok(out)
}

fn top_level_names<'a>(paths: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    paths
        .filter_map(|p| p.split('/').next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests;

//! The content store under the image root: blobs by digest (`blobs/sha256/<hex>`), each verified
//! against its digest before it is kept and written atomically (temporary file, then rename);
//! modules extracted from ordinary images (`extracted/<manifest hex>.wasm`); and the index
//! (`index.json`, reference → manifest digest) that lets `IfNotPresent` and `Never` see what an
//! earlier run pulled.
//!
//! Assumes one node agent owns the root: concurrent writers of one blob are harmless (both
//! write identical content, the last rename wins), but the index is rewritten whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::StoreError;

const SHA256: &str = "sha256:";

pub(super) struct ContentStore {
    root: PathBuf,
    index: Mutex<BTreeMap<String, String>>,
}

/// A unique suffix for temporary files, so concurrent writers never share one.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens (creating) the store at `root`, dropping temporary files an earlier run left.
    pub(super) fn open(root: &Path) -> Result<ContentStore, StoreError> {
        for dir in ["blobs/sha256", "extracted", "tmp"] {
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        }
        let tmp = root.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(StoreError::io(&tmp))? {
            let path = entry.map_err(StoreError::io(&tmp))?.path();
            std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
        }
        let index_path = root.join("index.json");
        let index = match std::fs::read(&index_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Index {
                path: index_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(StoreError::io(&index_path)(e)),
        };
        Ok(ContentStore {
            root: root.to_path_buf(),
            index: Mutex::new(index),
        })
    }

    /// Where the blob `digest` is (or would be) kept.
    pub(super) fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    pub(super) fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    pub(super) fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest)?;
        std::fs::read(&path).map_err(StoreError::io(path))
    }

    /// Keeps `bytes` as blob `digest` if they hash to it.
    pub(super) fn put(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.blob_path(digest)?;
        verify(digest, &sha256_digest(bytes))?;
        self.write_atomic(&path, bytes)?;
        Ok(path)
    }

    /// A writer for blob `digest` whose content arrives in pieces.
    pub(super) async fn writer(&self, digest: &str) -> Result<BlobWriter, StoreError> {
        let path = self.blob_path(digest)?;
        let tmp = self.tmp_path();
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(StoreError::io(&tmp))?;
        Ok(BlobWriter {
            digest: digest.to_string(),
            path,
            tmp,
            file,
            hasher: Sha256::new(),
            size: 0,
            committed: false,
        })
    }

    /// Where the module extracted from the image with manifest `digest` is kept.
    pub(super) fn extracted_path(&self, manifest_digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .root
            .join("extracted")
            .join(format!("{}.wasm", hex_of(manifest_digest)?)))
    }

    /// Writes `bytes` at `path` so a reader sees all of them or none.
    pub(super) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp_path();
        std::fs::write(&tmp, bytes).map_err(StoreError::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StoreError::io(path)(e)
        })
    }

    /// The manifest digest `reference` was last pulled as.
    pub(super) fn lookup(&self, reference: &str) -> Option<String> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(reference)
            .cloned()
    }

    /// Records that `reference` now names manifest `digest`, durably.
    pub(super) fn record(&self, reference: &str, digest: &str) -> Result<(), StoreError> {
        let mut index = self
            .index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if index.get(reference).map(String::as_str) == Some(digest) {
            return Ok(());
        }
        index.insert(reference.to_string(), digest.to_string());
        let path = self.root.join("index.json");
        let bytes = serde_json::to_vec_pretty(&*index).map_err(|source| StoreError::Index {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &bytes)
    }

    fn tmp_path(&self) -> PathBuf {
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{}-{seq}", std::process::id()))
    }
}

/// A blob being written: kept only by [`BlobWriter::commit`] once its content hashes to its
/// digest; dropped uncommitted, it leaves nothing behind.
pub(super) struct BlobWriter {
    digest: String,
    path: PathBuf,
    tmp: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
    committed: bool,
}

impl BlobWriter {
    pub(super) async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file
            .write_all(chunk)
            .await
            .map_err(StoreError::io(&self.tmp))
    }

    /// Verifies the content and keeps it; returns its path and size.
    pub(super) async fn commit(mut self) -> Result<(PathBuf, u64), StoreError> {
        let actual = format!("{SHA256}{}", hex::encode(self.hasher.clone().finalize()));
        verify(&self.digest, &actual)?;
        self.file.flush().await.map_err(StoreError::io(&self.tmp))?;
        self.file
            .sync_all()
            .await
            .map_err(StoreError::io(&self.tmp))?;
        tokio::fs::rename(&self.tmp, &self.path)
            .await
            .map_err(StoreError::io(&self.path))?;
        self.committed = true;
        Ok((self.path.clone(), self.size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

pub(super) fn sha256_digest(bytes: &[u8]) -> String {
    format!("{SHA256}{}", hex::encode(Sha256::digest(bytes)))
}

fn verify(expected: &str, actual: &str) -> Result<(), StoreError> {
    if expected == actual {
        Ok(())
    } else {
        Err(StoreError::DigestMismatch {
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

/// The hex part of a `sha256:` digest, checked so it can name a file safely.
fn hex_of(digest: &str) -> Result<&str, StoreError> {
    digest
        .strip_prefix(SHA256)
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| StoreError::BadDigest {
            digest: digest.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path()).expect("opening the store");
        (dir, store)
    }

    #[test]
    fn keeps_blobs_by_digest_and_refuses_wrong_content() {
        let (dir, store) = store();
        let digest = sha256_digest(b"hello");
        let path = store.put(&digest, b"hello").expect("put");
        assert_eq!(
            path,
            dir.path()
                .join("blobs/sha256")
                .join(digest.trim_start_matches(SHA256))
        );
        assert_eq!(store.read(&digest).expect("read"), b"hello");

        let other = sha256_digest(b"other");
        let err = store.put(&other, b"tampered").expect_err("wrong content");
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!store.has(&other));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn digests_that_are_not_sha256_hex_never_name_a_file() {
        let (_dir, store) = store();
        for bad in ["sha256:../../etc/passwd", "sha512:00", "sha256:abc", ""] {
            assert!(
                matches!(store.blob_path(bad), Err(StoreError::BadDigest { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn streamed_blobs_are_kept_only_when_they_match() {
        let (dir, store) = store();
        let digest = sha256_digest(b"abcdef");
        let mut w = store.writer(&digest).await.expect("writer");
        w.write(b"abc").await.expect("write");
        w.write(b"def").await.expect("write");
        let (path, size) = w.commit().await.expect("commit");
        assert_eq!(
            (std::fs::read(path).unwrap(), size),
            (b"abcdef".to_vec(), 6)
        );

        let wrong = sha256_digest(b"xyz");
        let mut w = store.writer(&wrong).await.expect("writer");
        w.write(b"xyw").await.expect("write");
        assert!(matches!(
            w.commit().await,
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!store.has(&wrong));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn the_index_survives_a_reopen() {
        let (dir, store) = store();
        let digest = sha256_digest(b"manifest");
        store
            .record("127.0.0.1:5000/x:v1", &digest)
            .expect("record");
        drop(store);
        let reopened = ContentStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.lookup("127.0.0.1:5000/x:v1"), Some(digest));
        assert_eq!(reopened.lookup("127.0.0.1:5000/x:v2"), None);
    }
}

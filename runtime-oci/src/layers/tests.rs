//! Unit tests of [`LayerStore`] against layers built in memory; also the tar builder that
//! `rootfs`'s tests use.

use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::sync::atomic::Ordering;

use tar::{Builder, EntryType, Header};
use tempfile::TempDir;

pub(crate) const MTIME: u64 = 1_600_000_000;

/// A layer tar built in memory. Paths go through the tar crate's checks except in [`Self::raw`].
pub(crate) struct TarLayer(Builder<Vec<u8>>);

impl TarLayer {
    pub(crate) fn new() -> TarLayer {
        TarLayer(Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, mode: u32, uid: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(uid);
        header.set_mtime(MTIME);
        header.set_size(0);
        header
    }

    pub(crate) fn dir(mut self, path: &str, mode: u32) -> TarLayer {
        let mut header = Self::header(EntryType::Directory, mode, 0);
        self.0.append_data(&mut header, path, io::empty()).unwrap();
        self
    }

    pub(crate) fn file(self, path: &str, body: &str) -> TarLayer {
        self.file_owned(path, body, 0o644, 0)
    }

    pub(crate) fn file_owned(mut self, path: &str, body: &str, mode: u32, uid: u64) -> TarLayer {
        let mut header = Self::header(EntryType::Regular, mode, uid);
        header.set_size(body.len() as u64);
        self.0
            .append_data(&mut header, path, body.as_bytes())
            .unwrap();
        self
    }

    /// The next entry carries `SCHILY.xattr.<name>` in a PAX header.
    pub(crate) fn xattr(mut self, name: &str, value: &[u8]) -> TarLayer {
        let key = format!("SCHILY.xattr.{name}");
        self.0
            .append_pax_extensions([(key.as_str(), value)])
            .unwrap();
        self
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> TarLayer {
        let mut header = Self::header(EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut header, path, target).unwrap();
        self
    }

    pub(crate) fn hardlink(mut self, path: &str, target: &str) -> TarLayer {
        let mut header = Self::header(EntryType::Link, 0o644, 0);
        self.0.append_link(&mut header, path, target).unwrap();
        self
    }

    pub(crate) fn node(mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> TarLayer {
        let mut header = Self::header(kind, 0o620, 0);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.0.append_data(&mut header, path, io::empty()).unwrap();
        self
    }

    /// An entry whose name bytes are written as they are, as a hostile archive would.
    pub(crate) fn raw(mut self, name: &str, kind: EntryType, link: Option<&str>) -> TarLayer {
        let mut header = Self::header(kind, 0o644, 0);
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        self.0.append(&header, io::empty()).unwrap();
        self
    }

    pub(crate) fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// Writes `bytes` as a content-store blob; any 64-hex name will do as the store does not hash.
pub(crate) fn write_blob(dir: &Path, n: u64, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("{n:064x}"));
    fs::write(&path, bytes).unwrap();
    path
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

fn store() -> (TempDir, LayerStore) {
    let tmp = TempDir::new().unwrap();
    let store = LayerStore::open(&tmp.path().join("layers")).unwrap();
    (tmp, store)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn lstat(path: &Path) -> Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn unpacks_every_entry_kind_with_owner_mode_times_and_xattrs() {
    let (tmp, store) = store();
    let tar = TarLayer::new()
        .dir("./", 0o755)
        .dir("etc", 0o750)
        .file_owned("etc/conf", "secret", 0o640, 1234)
        .file_owned("bin/su", "su", 0o4755, 0)
        .dir("tmp", 0o1777)
        .symlink("etc/link", "conf")
        .symlink("abs", "/etc/passwd")
        .hardlink("etc/hard", "etc/conf")
        .node("dev/null", EntryType::Char, 1, 3)
        .node("dev/loop0", EntryType::Block, 7, 0)
        .node("run/fifo", EntryType::Fifo, 0, 0)
        .xattr("user.skiff", b"yes")
        .file("xattr-file", "x")
        .xattr("trusted.overlay.redirect", b"/elsewhere")
        .dir("sneaky", 0o755)
        .build();
    let blob = write_blob(tmp.path(), 1, &tar);
    let layer = store.unpacked(&blob).unwrap();
    assert_eq!(layer, store.root().join(format!("{:064x}", 1)));

    let conf = lstat(&layer.join("etc/conf"));
    assert!(conf.is_file());
    assert_eq!(
        (conf.uid(), conf.gid(), conf.mode() & 0o7777),
        (1234, 1234, 0o640)
    );
    assert_eq!(
        fs::read_to_string(layer.join("etc/conf")).unwrap(),
        "secret"
    );
    assert_eq!(conf.mtime(), MTIME as i64);
    assert_eq!(lstat(&layer.join("bin/su")).mode() & 0o7777, 0o4755);
    let etc = lstat(&layer.join("etc"));
    assert_eq!((etc.mode() & 0o7777, etc.mtime()), (0o750, MTIME as i64));
    assert_eq!(lstat(&layer.join("tmp")).mode() & 0o7777, 0o1777);
    assert_eq!(lstat(&layer).mode() & 0o7777, 0o755);
    // Implicit parents are created 0755.
    assert_eq!(lstat(&layer.join("bin")).mode() & 0o7777, 0o755);

    assert_eq!(
        fs::read_link(layer.join("etc/link")).unwrap(),
        Path::new("conf")
    );
    assert_eq!(
        fs::read_link(layer.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(lstat(&layer.join("etc/link")).mtime(), MTIME as i64);
    assert_eq!(lstat(&layer.join("etc/hard")).ino(), conf.ino());

    let null = lstat(&layer.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (null.rdev(), null.mode() & 0o7777),
        (libc::makedev(1, 3), 0o620)
    );
    let loop0 = lstat(&layer.join("dev/loop0"));
    assert!(loop0.file_type().is_block_device());
    assert_eq!(loop0.rdev(), libc::makedev(7, 0));
    assert!(lstat(&layer.join("run/fifo")).file_type().is_fifo());

    let value = xattr::get(layer.join("xattr-file"), "user.skiff").unwrap();
    assert_eq!(value.as_deref(), Some(&b"yes"[..]));
    let redirect = xattr::get(layer.join("sneaky"), "trusted.overlay.redirect").unwrap();
    assert_eq!(redirect, None, "overlay xattrs from an archive are dropped");
    assert_eq!(entries(store.root()), [format!("{:064x}", 1)]);
}

#[test]
fn converts_whiteouts_to_the_overlay_format() {
    let (tmp, store) = store();
    let tar = TarLayer::new()
        .file("etc/.wh.hosts", "")
        .file(".wh.gone", "")
        .file("a/b/.wh..wh..opq", "")
        .file("a/b/kept", "k")
        .file(".wh..wh.plnk", "")
        .build();
    let layer = store.unpacked(&write_blob(tmp.path(), 2, &tar)).unwrap();

    for hidden in ["etc/hosts", "gone"] {
        let meta = lstat(&layer.join(hidden));
        assert!(
            meta.file_type().is_char_device() && meta.rdev() == 0,
            "{hidden}"
        );
        assert!(is_whiteout(&meta));
    }
    let opaque = xattr::get(layer.join("a/b"), OPAQUE_XATTR).unwrap();
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    assert_eq!(entries(&layer.join("a/b")), ["kept"]);
    assert_eq!(entries(&layer), ["a", "etc", "gone"]);
    assert_eq!(entries(&layer.join("etc")), ["hosts"]);
}

#[test]
fn later_entries_replace_earlier_ones() {
    let (tmp, store) = store();
    let tar = TarLayer::new()
        .file("x", "file")
        .symlink("x", "elsewhere")
        .file("d/inner", "i")
        .file("d", "now a file")
        .symlink("s", "/etc")
        .dir("s", 0o700)
        .file("s/in", "inside")
        .build();
    let layer = store.unpacked(&write_blob(tmp.path(), 3, &tar)).unwrap();
    assert_eq!(
        fs::read_link(layer.join("x")).unwrap(),
        Path::new("elsewhere")
    );
    assert_eq!(fs::read_to_string(layer.join("d")).unwrap(), "now a file");
    assert!(lstat(&layer.join("s")).is_dir());
    assert_eq!(fs::read_to_string(layer.join("s/in")).unwrap(), "inside");
}

/// Unpacks `tar` expecting a malformed-entry error naming `entry`, and no trace in the store.
fn assert_rejected(tar: Vec<u8>, n: u64, entry: &str) {
    let (tmp, store) = store();
    let blob = write_blob(tmp.path(), n, &tar);
    match store.unpacked(&blob) {
        Err(LayerError::Entry {
            layer,
            entry: got,
            reason,
        }) => {
            assert_eq!(layer, format!("{n:064x}"));
            assert_eq!(got, Path::new(entry), "{reason}");
        }
        other => panic!("{entry}: expected a rejected entry, got {other:?}"),
    }
    assert!(
        entries(store.root()).is_empty(),
        "no layer and no temp dir is left"
    );
}

#[test]
fn rejects_entries_that_escape_the_layer() {
    let outside = TempDir::new().unwrap();
    let out = outside.path().to_str().unwrap();
    fs::write(outside.path().join("secret"), "s").unwrap();

    assert_rejected(
        TarLayer::new()
            .raw("../x", EntryType::Regular, None)
            .build(),
        10,
        "../x",
    );
    assert_rejected(
        TarLayer::new()
            .raw("a/../../x", EntryType::Regular, None)
            .build(),
        11,
        "a/../../x",
    );
    let escape = TarLayer::new()
        .symlink("a", out)
        .file("a/passwd", "pwned")
        .build();
    assert_rejected(escape, 12, "a/passwd");
    let nested = TarLayer::new()
        .symlink("a", out)
        .file("a/b/c", "pwned")
        .build();
    assert_rejected(nested, 13, "a/b/c");
    let link = TarLayer::new()
        .raw("h", EntryType::Link, Some("../../etc/passwd"))
        .build();
    assert_rejected(link, 14, "h");
    let via_symlink = TarLayer::new()
        .symlink("l", out)
        .hardlink("h", "l/secret")
        .build();
    assert_rejected(via_symlink, 15, "h");
    let opaque = TarLayer::new()
        .symlink("d", out)
        .file("d/.wh..wh..opq", "")
        .build();
    assert_rejected(opaque, 16, "d/.wh..wh..opq");
    assert_rejected(
        TarLayer::new()
            .raw(".wh...", EntryType::Regular, None)
            .build(),
        17,
        ".wh...",
    );
    assert_rejected(TarLayer::new().hardlink("h", "missing").build(), 18, "h");
    assert_rejected(
        TarLayer::new().dir("d", 0o755).hardlink("h", "d").build(),
        19,
        "h",
    );
    assert_eq!(
        entries(outside.path()),
        ["secret"],
        "nothing was written outside"
    );
    assert_eq!(
        fs::read_to_string(outside.path().join("secret")).unwrap(),
        "s"
    );
}

#[test]
fn absolute_paths_stay_inside_the_layer() {
    let (tmp, store) = store();
    let name = format!("skiff-layer-test-{}", std::process::id());
    let tar = TarLayer::new()
        .raw(&format!("/{name}"), EntryType::Regular, None)
        .raw("/abs-link", EntryType::Link, Some(&format!("/{name}")))
        .build();
    let layer = store.unpacked(&write_blob(tmp.path(), 20, &tar)).unwrap();
    assert!(lstat(&layer.join(&name)).is_file());
    assert_eq!(
        lstat(&layer.join("abs-link")).ino(),
        lstat(&layer.join(&name)).ino()
    );
    assert!(!Path::new("/").join(&name).exists());
}

#[test]
fn a_layer_is_unpacked_once_under_concurrent_callers() {
    let (tmp, store) = store();
    let mut layer = TarLayer::new();
    for i in 0..300 {
        layer = layer.file(&format!("d{}/f{i}", i % 7), &format!("content {i}"));
    }
    let blob = write_blob(tmp.path(), 30, &layer.build());
    let store = Arc::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (store, blob) = (store.clone(), blob.clone());
            runtime.spawn_blocking(move || store.unpacked(&blob))
        })
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, blob) = (store.clone(), blob.clone());
            std::thread::spawn(move || store.unpacked(&blob))
        })
        .collect();
    let mut paths: Vec<PathBuf> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    for task in tasks {
        paths.push(runtime.block_on(task).unwrap().unwrap());
    }
    assert!(paths.iter().all(|p| *p == paths[0]));
    assert_eq!(store.unpacks.load(Ordering::SeqCst), 1);
    assert_eq!(entries(store.root()), [format!("{:064x}", 30)]);
    assert_eq!(
        fs::read_to_string(paths[0].join("d3/f122")).unwrap(),
        "content 122"
    );
    assert!(
        store.unpacking.lock().unwrap().is_empty(),
        "per-layer locks are released"
    );
}

#[test]
fn open_removes_half_unpacked_leftovers() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("layers");
    let leftover = root.join(format!(".tmp-{:064x}-1-0", 40));
    fs::create_dir_all(leftover.join("locked/deeper")).unwrap();
    fs::write(leftover.join("locked/deeper/file"), "half").unwrap();
    fs::set_permissions(leftover.join("locked"), Permissions::from_mode(0o000)).unwrap();
    let done = root.join(format!("{:064x}", 41));
    fs::create_dir_all(&done).unwrap();

    let store = LayerStore::open(&root).unwrap();
    assert_eq!(entries(&root), [format!("{:064x}", 41)]);
    // A complete layer is used as it is.
    let blob = write_blob(tmp.path(), 41, b"not even read");
    assert_eq!(store.unpacked(&blob).unwrap(), done);
    assert_eq!(store.unpacks.load(Ordering::SeqCst), 0);
}

#[test]
fn reads_gzip_zstd_and_plain_layers() {
    let (tmp, store) = store();
    let tar = TarLayer::new()
        .file("hello", "world")
        .dir("d", 0o711)
        .build();
    // Two zstd frames with a skippable frame between them, as parallel compressors write.
    let (head, tail) = tar.split_at(700);
    let mut frames = zstd(head);
    frames.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    frames.extend_from_slice(&3u32.to_le_bytes());
    frames.extend_from_slice(b"abc");
    frames.extend(zstd(tail));
    let blobs = [tar.clone(), gzip(&tar), zstd(&tar), frames];
    for (n, bytes) in blobs.iter().enumerate() {
        let layer = store
            .unpacked(&write_blob(tmp.path(), 50 + n as u64, bytes))
            .unwrap();
        assert_eq!(
            fs::read_to_string(layer.join("hello")).unwrap(),
            "world",
            "blob {n}"
        );
        assert_eq!(lstat(&layer.join("d")).mode() & 0o7777, 0o711, "blob {n}");
    }
}

#[test]
fn reports_bad_names_and_corrupt_archives() {
    let (tmp, store) = store();
    for name in ["abc", &"A".repeat(64), &"g".repeat(64)] {
        let blob = tmp.path().join(name);
        fs::write(&blob, b"").unwrap();
        assert!(
            matches!(store.unpacked(&blob), Err(LayerError::Digest { .. })),
            "{name}"
        );
    }
    let tar = TarLayer::new().file("f", &"x".repeat(100_000)).build();
    let gz = gzip(&tar);
    let truncated = write_blob(tmp.path(), 60, &gz[..gz.len() / 2]);
    let err = store.unpacked(&truncated).unwrap_err();
    assert!(
        matches!(err, LayerError::Unpack { .. } | LayerError::Archive { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("{:064x}", 60)), "{err}");
    assert!(entries(store.root()).is_empty());
}

#[test]
fn pax_records_override_the_header() {
    let (tmp, store) = store();
    let mut builder = TarLayer::new().0;
    builder
        .append_pax_extensions([("mtime", &b"1600000000.25"[..]), ("uid", b"3000000")])
        .unwrap();
    let tar = TarLayer(builder).file("precise", "p").build();
    let layer = store.unpacked(&write_blob(tmp.path(), 70, &tar)).unwrap();
    let meta = lstat(&layer.join("precise"));
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_600_000_000, 250_000_000)
    );
    assert_eq!((meta.uid(), meta.gid()), (3_000_000, 0));
}

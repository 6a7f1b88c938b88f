//! Unit tests of [`Rootfs`] with real overlay mounts (the tests run as root) and the copy mode,
//! on layers unpacked by a real [`LayerStore`].

use super::*;
use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;

use tar::EntryType;
use tempfile::TempDir;

use crate::layers::LayerStore;
use crate::layers::tests::{MTIME, TarLayer, gzip, write_blob};

/// Removes the rootfs in a container dir on drop, so a failing assertion leaves no mount behind.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = remove_rootfs(&self.0) {
            eprintln!("cleanup of {}: {e}", self.0.display());
        }
    }
}

/// Unpacks `tars` (base first) into a store under `root`.
fn unpack(root: &Path, tars: Vec<Vec<u8>>) -> Vec<PathBuf> {
    let store = LayerStore::open(&root.join("layers")).unwrap();
    let blobs = root.join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    (tars.into_iter().enumerate())
        .map(|(i, tar)| {
            store
                .unpacked(&write_blob(&blobs, 100 + i as u64, &gzip(&tar)))
                .unwrap()
        })
        .collect()
}

/// Layer 2 deletes a file of layer 1 by whiteout; layer 3 makes a directory opaque.
fn three_layer_image(root: &Path) -> Vec<PathBuf> {
    let base = TarLayer::new()
        .dir("etc", 0o755)
        .file("etc/passwd", "root:x:0:0")
        .file("etc/hosts", "127.0.0.1")
        .dir("opt/keep", 0o755)
        .file("opt/keep/a", "a")
        .file("opt/keep/b", "b")
        .file_owned("data/file1", "one", 0o640, 1234)
        .file("bin/busybox", "bb")
        .hardlink("bin/ls", "bin/busybox")
        .symlink("bin/sh", "busybox")
        .node("dev/null", EntryType::Char, 1, 3)
        .node("run/fifo", EntryType::Fifo, 0, 0)
        .build();
    let second = TarLayer::new()
        .file("etc/.wh.hosts", "")
        .file_owned("bin/tool", "t", 0o755, 0)
        .file("opt/keep/c", "c")
        .build();
    let third = TarLayer::new()
        .file("opt/keep/.wh..wh..opq", "")
        .file("opt/keep/new", "n")
        .file("etc/passwd", "root:x:0:0:new")
        .build();
    unpack(root, vec![base, second, third])
}

fn expected_view() -> BTreeMap<String, String> {
    let file = |mode: &str, owner: &str, body: &str| format!("file {mode} {owner} {MTIME} {body}");
    [
        ("bin", "dir 755 0:0".to_owned()),
        ("bin/busybox", file("644", "0:0", "bb")),
        ("bin/ls", file("644", "0:0", "bb")),
        ("bin/sh", format!("symlink {MTIME} -> busybox")),
        ("bin/tool", file("755", "0:0", "t")),
        ("data", "dir 755 0:0".to_owned()),
        ("data/file1", file("640", "1234:1234", "one")),
        ("dev", "dir 755 0:0".to_owned()),
        ("dev/null", format!("char 620 0:0 {}", libc::makedev(1, 3))),
        ("etc", "dir 755 0:0".to_owned()),
        ("etc/passwd", file("644", "0:0", "root:x:0:0:new")),
        ("opt", "dir 755 0:0".to_owned()),
        ("opt/keep", "dir 755 0:0".to_owned()),
        ("opt/keep/new", file("644", "0:0", "n")),
        ("run", "dir 755 0:0".to_owned()),
        ("run/fifo", "fifo 620 0:0".to_owned()),
    ]
    .into_iter()
    .map(|(path, what)| (path.to_owned(), what))
    .collect()
}

/// Everything below `root` as path → kind, mode, owner and (for files and links) mtime and
/// content; directory mtimes differ between the modes by design and are left out.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut view = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(root.join(&dir)).unwrap() {
            let rel = dir.join(entry.unwrap().file_name());
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let owner = format!("{:o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid());
            let what = if kind.is_dir() {
                pending.push(rel.clone());
                format!("dir {owner}")
            } else if kind.is_file() {
                format!(
                    "file {owner} {} {}",
                    meta.mtime(),
                    fs::read_to_string(&path).unwrap()
                )
            } else if kind.is_symlink() {
                format!(
                    "symlink {} -> {}",
                    meta.mtime(),
                    fs::read_link(&path).unwrap().display()
                )
            } else if kind.is_char_device() {
                format!("char {owner} {}", meta.rdev())
            } else if kind.is_fifo() {
                format!("fifo {owner}")
            } else {
                format!("other {owner}")
            };
            view.insert(rel.to_str().unwrap().to_owned(), what);
        }
    }
    view
}

fn is_mounted(path: &Path) -> bool {
    !mounts_below(&fs::canonicalize(path).unwrap())
        .unwrap()
        .is_empty()
}

fn container_dir(root: &Path, name: &str) -> (PathBuf, Cleanup) {
    let dir = root.join(name);
    fs::create_dir(&dir).unwrap();
    (dir.clone(), Cleanup(dir))
}

fn assert_removed(dir: &Path) {
    assert!(dir.is_dir(), "the container dir itself stays");
    for name in [ROOTFS, UPPER, WORK, LOWER] {
        assert!(!dir.join(name).exists(), "{name} is left");
    }
    let canonical = fs::canonicalize(dir).unwrap();
    assert!(
        mounts_below(&canonical).unwrap().is_empty(),
        "a mount is left"
    );
}

#[test]
fn overlay_shows_the_merged_view_and_writes_go_to_the_upper_dir() {
    assert_eq!(
        RootfsMode::detect(),
        RootfsMode::Overlay,
        "these tests need overlayfs"
    );
    let tmp = TempDir::new().unwrap();
    let layers = three_layer_image(tmp.path());
    let (dir, _cleanup) = container_dir(tmp.path(), "c1");
    let rootfs = Rootfs::create(&layers, &dir, RootfsMode::Overlay).unwrap();
    assert_eq!(rootfs.mode(), RootfsMode::Overlay);
    assert_eq!(rootfs.path(), dir.join("rootfs"));
    assert!(is_mounted(rootfs.path()));
    assert_eq!(snapshot(rootfs.path()), expected_view());

    fs::write(rootfs.path().join("etc/passwd"), "changed").unwrap();
    fs::write(rootfs.path().join("new-file"), "mine").unwrap();
    fs::remove_file(rootfs.path().join("bin/tool")).unwrap();
    assert_eq!(
        fs::read_to_string(layers[2].join("etc/passwd")).unwrap(),
        "root:x:0:0:new"
    );
    assert_eq!(
        fs::read_to_string(layers[0].join("etc/passwd")).unwrap(),
        "root:x:0:0"
    );
    assert!(layers[1].join("bin/tool").is_file());
    assert!(!layers.iter().any(|l| l.join("new-file").exists()));
    assert_eq!(
        fs::read_to_string(dir.join("upper/etc/passwd")).unwrap(),
        "changed"
    );
    assert_eq!(
        fs::read_to_string(dir.join("upper/new-file")).unwrap(),
        "mine"
    );
    assert!(is_whiteout(
        &fs::symlink_metadata(dir.join("upper/bin/tool")).unwrap()
    ));

    rootfs.remove().unwrap();
    assert_removed(&dir);
    remove_rootfs(&dir).unwrap();
    assert_eq!(snapshot(&layers[2]).len(), 5, "the layers are untouched");
}

#[test]
fn copy_mode_gives_the_same_view() {
    let tmp = TempDir::new().unwrap();
    let layers = three_layer_image(tmp.path());
    let (dir, _cleanup) = container_dir(tmp.path(), "c1");
    let rootfs = Rootfs::create(&layers, &dir, RootfsMode::Copy).unwrap();
    assert_eq!(rootfs.mode(), RootfsMode::Copy);
    assert!(!is_mounted(rootfs.path()));
    assert_eq!(snapshot(rootfs.path()), expected_view());
    let ino = |p: &str| fs::symlink_metadata(rootfs.path().join(p)).unwrap().ino();
    assert_eq!(ino("bin/ls"), ino("bin/busybox"), "hard links stay linked");
    assert!(!dir.join(UPPER).exists() && !dir.join(LOWER).exists());
    fs::write(rootfs.path().join("etc/passwd"), "changed").unwrap();
    assert_eq!(
        fs::read_to_string(layers[2].join("etc/passwd")).unwrap(),
        "root:x:0:0:new"
    );

    rootfs.remove().unwrap();
    assert_removed(&dir);
}

#[test]
fn sixty_layers_under_a_long_root_mount() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("r".repeat(120)).join("s".repeat(120));
    let tars = (0..60)
        .map(|i| {
            TarLayer::new()
                .file(&format!("f{i}"), "x")
                .file("common", &i.to_string())
                .build()
        })
        .collect();
    let layers = unpack(&root, tars);
    let absolute: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(
        absolute > 4096,
        "absolute lowerdirs would not fit a page ({absolute} bytes)"
    );
    let (dir, _cleanup) = container_dir(&root, &"c".repeat(64));
    let rootfs = Rootfs::create(&layers, &dir, RootfsMode::Overlay).unwrap();
    assert_eq!(rootfs.mode(), RootfsMode::Overlay);
    assert!(is_mounted(rootfs.path()));
    for i in 0..60 {
        assert!(rootfs.path().join(format!("f{i}")).is_file(), "f{i}");
    }
    assert_eq!(
        fs::read_to_string(rootfs.path().join("common")).unwrap(),
        "59"
    );
    rootfs.remove().unwrap();
    assert_removed(&dir);
}

#[test]
fn zero_and_one_layer_images_mount() {
    let tmp = TempDir::new().unwrap();
    let (empty, _cleanup_empty) = container_dir(tmp.path(), "empty");
    let rootfs = Rootfs::create(&[], &empty, RootfsMode::Overlay).unwrap();
    assert!(snapshot(rootfs.path()).is_empty());
    fs::write(rootfs.path().join("scratch"), "w").unwrap();
    rootfs.remove().unwrap();
    assert_removed(&empty);

    let layers = unpack(tmp.path(), vec![TarLayer::new().file("only", "1").build()]);
    let (single, _cleanup_single) = container_dir(tmp.path(), "single");
    let rootfs = Rootfs::create(&layers, &single, RootfsMode::Overlay).unwrap();
    assert_eq!(fs::read_to_string(rootfs.path().join("only")).unwrap(), "1");
    rootfs.remove().unwrap();
    assert_removed(&single);
}

#[test]
fn remove_works_after_a_restart_and_through_a_symlinked_path() {
    let tmp = TempDir::new().unwrap();
    let layers = three_layer_image(tmp.path());
    let (dir, _cleanup) = container_dir(tmp.path(), "c1");
    let alias = tmp.path().join("alias");
    std::os::unix::fs::symlink(&dir, &alias).unwrap();
    // The agent "restarts": the Rootfs value is gone, only the directory is known.
    drop(Rootfs::create(&layers, &alias.join("."), RootfsMode::Overlay).unwrap());
    assert!(is_mounted(&dir.join(ROOTFS)));
    fs::write(dir.join("rootfs/etc/passwd"), "changed").unwrap();

    remove_rootfs(&alias).unwrap();
    assert_removed(&dir);
    remove_rootfs(&alias).unwrap();
    remove_rootfs(&tmp.path().join("never-existed")).unwrap();
    assert!(
        layers[0].join("etc/passwd").is_file(),
        "removal did not reach the layers"
    );
}

#[test]
fn create_refuses_an_existing_rootfs_and_leaves_it_alone() {
    let tmp = TempDir::new().unwrap();
    let layers = three_layer_image(tmp.path());
    let (dir, _cleanup) = container_dir(tmp.path(), "c1");
    let first = Rootfs::create(&layers, &dir, RootfsMode::Overlay).unwrap();
    let again = Rootfs::create(&layers, &dir, RootfsMode::Overlay).unwrap_err();
    assert!(matches!(again, RootfsError::Exists { .. }), "{again}");
    assert!(is_mounted(first.path()));
    assert_eq!(snapshot(first.path()), expected_view());
}

#[test]
fn a_repeated_layer_mounts_and_gives_the_full_stacks_view() {
    let tmp = TempDir::new().unwrap();
    let a = TarLayer::new().file("x", "a").file("d/1", "1").build();
    let b = TarLayer::new()
        .file(".wh.x", "")
        .file("d/2", "2")
        .file("y", "y")
        .build();
    let empty = TarLayer::new().build();
    let unpacked = unpack(tmp.path(), vec![a, b, empty]);
    let (a, b, empty) = (&unpacked[0], &unpacked[1], &unpacked[2]);
    let layers = [empty, a, empty, b, a].map(|l| l.to_path_buf());
    let (dir, _cleanup) = container_dir(tmp.path(), "c1");
    let rootfs = Rootfs::create(&layers, &dir, RootfsMode::Overlay).unwrap();
    assert_eq!(rootfs.mode(), RootfsMode::Overlay);
    // The reference: every layer copied in order, repeats included.
    let full = tmp.path().join("full");
    fs::create_dir(&full).unwrap();
    copy_layers(&layers, &full).unwrap();
    assert_eq!(snapshot(rootfs.path()), snapshot(&full));
    assert_eq!(fs::read_to_string(rootfs.path().join("x")).unwrap(), "a");
    assert!(rootfs.path().join("d/2").is_file() && rootfs.path().join("y").is_file());
}

use super::*;

fn file(data: &str, mode: u32) -> FileProjection {
    FileProjection {
        data: data.as_bytes().to_vec(),
        mode,
    }
}

fn payload(files: &[(&str, &str)]) -> Payload {
    files
        .iter()
        .map(|(p, d)| (p.to_string(), file(d, 0o644)))
        .collect()
}

/// Names in the target directory, sorted, with the timestamped directory shown as `..TS`.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read target")
        .map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            if name.starts_with("..20") {
                "..TS".to_owned()
            } else {
                name
            }
        })
        .collect();
    names.sort();
    names
}

#[test]
fn first_write_lays_out_data_link_and_visible_symlinks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = tmp.path().join("vol");
    let writer = AtomicWriter::new(&target);
    let wrote = writer
        .write(&payload(&[("app.conf", "a=1"), ("nested/deep/x", "x")]))
        .expect("write");
    assert!(wrote);
    assert_eq!(listing(&target), ["..TS", "..data", "app.conf", "nested"]);
    let data = fs::read_link(target.join("..data")).expect("..data link");
    assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
    assert_eq!(
        fs::read_link(target.join("app.conf")).expect("link"),
        Path::new("..data/app.conf")
    );
    assert_eq!(
        fs::read_link(target.join("nested")).expect("link"),
        Path::new("..data/nested")
    );
    assert_eq!(
        fs::read_to_string(target.join("app.conf")).expect("read"),
        "a=1"
    );
    assert_eq!(
        fs::read_to_string(target.join("nested/deep/x")).expect("read"),
        "x"
    );
    let ts_mode = fs::metadata(target.join(&data))
        .expect("ts")
        .permissions()
        .mode();
    assert_eq!(ts_mode & 0o777, 0o755);
}

#[test]
fn modes_are_exact_whatever_the_umask() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let writer = AtomicWriter::new(tmp.path());
    let mut p = Payload::new();
    p.insert("open".into(), file("o", 0o777));
    p.insert("private".into(), file("p", 0o400));
    writer.write(&p).expect("write");
    let mode = |n: &str| {
        fs::metadata(tmp.path().join(n))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("open"), 0o777);
    assert_eq!(mode("private"), 0o400);
}

#[test]
fn update_swaps_data_and_removes_old_dir_and_stale_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let writer = AtomicWriter::new(tmp.path());
    writer
        .write(&payload(&[("a", "1"), ("b", "2")]))
        .expect("first");
    let first = fs::read_link(tmp.path().join("..data")).expect("link");

    assert!(
        !writer
            .write(&payload(&[("a", "1"), ("b", "2")]))
            .expect("same"),
        "no change"
    );
    assert_eq!(
        fs::read_link(tmp.path().join("..data")).expect("link"),
        first
    );

    assert!(
        writer
            .write(&payload(&[("a", "one"), ("c", "3")]))
            .expect("update")
    );
    let second = fs::read_link(tmp.path().join("..data")).expect("link");
    assert_ne!(first, second);
    assert!(
        !tmp.path().join(&first).exists(),
        "old timestamped dir removed"
    );
    assert_eq!(listing(tmp.path()), ["..TS", "..data", "a", "c"]);
    assert_eq!(fs::read_to_string(tmp.path().join("a")).expect("a"), "one");
}

#[test]
fn empty_payload_publishes_an_empty_volume() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let writer = AtomicWriter::new(tmp.path());
    writer.write(&payload(&[("a", "1")])).expect("first");
    writer.write(&Payload::new()).expect("empty");
    assert_eq!(listing(tmp.path()), ["..TS", "..data"]);
}

#[test]
fn rejects_escaping_and_reserved_paths() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let writer = AtomicWriter::new(tmp.path());
    let cases = [
        (
            "../etc/passwd",
            "invalid path: must not contain '..': ../etc/passwd",
        ),
        (
            "a/../../b",
            "invalid path: must not contain '..': a/../../b",
        ),
        (
            "/etc/passwd",
            "invalid path: must be relative path: /etc/passwd",
        ),
        ("..data", "invalid path: must not start with '..': ..data"),
        ("", "invalid path: must not be empty: \"\""),
    ];
    for (path, message) in cases {
        let err = writer.write(&payload(&[(path, "x")])).expect_err(path);
        assert_eq!(err.to_string(), message);
    }
    assert!(
        fs::read_dir(tmp.path()).expect("dir").next().is_none(),
        "nothing written"
    );
    writer
        .write(&payload(&[("./x//y", "ok")]))
        .expect("normalised");
    assert_eq!(
        fs::read_to_string(tmp.path().join("x/y")).expect("x/y"),
        "ok"
    );
}

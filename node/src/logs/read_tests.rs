use std::io::Write;
use std::sync::{Arc, Mutex};

use skiff_sandbox::cri_log::LogFile;

use super::*;

/// Collects what a client would receive.
#[derive(Default, Clone)]
struct Collect(Arc<Mutex<Vec<u8>>>);

impl Collect {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl LogSink for Collect {
    fn write(&mut self, bytes: &[u8]) -> bool {
        self.0.lock().unwrap().extend_from_slice(bytes);
        true
    }
    fn closed(&self) -> bool {
        false
    }
}

fn exited() -> tokio::sync::watch::Receiver<bool> {
    tokio::sync::watch::channel(true).1
}

/// A log file written by hand: `(second, stream, tag, content)` at 2024-05-01T10:00:SS.5Z.
fn write_log(path: &Path, entries: &[(u32, &str, &str, &str)]) {
    let mut f = File::create(path).unwrap();
    for (sec, stream, tag, content) in entries {
        writeln!(
            f,
            "2024-05-01T10:00:{sec:02}.500000000Z {stream} {tag} {content}"
        )
        .unwrap();
    }
}

fn read(path: &Path, opts: LogOptions) -> String {
    let mut out = Collect::default();
    read_logs(path, &opts, &exited(), &mut out).unwrap();
    out.text()
}

fn sample(dir: &Path) -> PathBuf {
    let path = dir.join("0.log");
    write_log(
        &path,
        &[
            (1, "stdout", "F", "one"),
            (2, "stdout", "P", "tw"),
            (2, "stderr", "F", "oops"),
            (3, "stdout", "F", "o"),
            (4, "stdout", "F", "three"),
        ],
    );
    path
}

#[test]
fn partial_entries_join_their_line_and_streams_interleave_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    assert_eq!(
        read(&path, LogOptions::default()),
        "one\ntwoops\no\nthree\n"
    );
}

#[test]
fn timestamps_prefix_each_line_once_in_go_rfc3339_nano() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    write_log(
        &path,
        &[
            (1, "stdout", "P", "hel"),
            (2, "stdout", "F", "lo"),
            (3, "stdout", "F", "bye"),
        ],
    );
    let got = read(
        &path,
        LogOptions {
            timestamps: true,
            ..Default::default()
        },
    );
    assert_eq!(
        got,
        "2024-05-01T10:00:01.5Z hello\n2024-05-01T10:00:03.5Z bye\n"
    );
}

#[test]
fn go_rfc3339_nano_drops_trailing_zeros_only() {
    let t = DateTime::parse_from_rfc3339("2024-05-01T10:00:01.000001200Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(go_rfc3339_nano(t), "2024-05-01T10:00:01.0000012Z");
    let whole = DateTime::parse_from_rfc3339("2024-05-01T10:00:01Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(go_rfc3339_nano(whole), "2024-05-01T10:00:01Z");
}

#[test]
fn tail_counts_lines_not_partial_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let tail = |n| {
        read(
            &path,
            LogOptions {
                tail_lines: Some(n),
                ..Default::default()
            },
        )
    };
    assert_eq!(tail(1), "three\n");
    // The joined line `two` starts with its partial entry, before stderr's `oops`.
    assert_eq!(tail(3), "twoops\no\nthree\n");
    assert_eq!(tail(10), "one\ntwoops\no\nthree\n");
    assert_eq!(tail(0), "");
}

#[test]
fn tail_reaches_into_the_rotated_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    write_log(
        &dir.path().join("0.log.1"),
        &[(1, "stdout", "F", "a"), (2, "stdout", "F", "b")],
    );
    write_log(&path, &[(3, "stdout", "F", "c")]);
    assert_eq!(read(&path, LogOptions::default()), "a\nb\nc\n");
    let opts = LogOptions {
        tail_lines: Some(2),
        ..Default::default()
    };
    assert_eq!(read(&path, opts), "b\nc\n");
}

#[test]
fn since_skips_older_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let since = DateTime::parse_from_rfc3339("2024-05-01T10:00:03Z")
        .unwrap()
        .with_timezone(&Utc);
    let opts = LogOptions {
        since: Some(since),
        ..Default::default()
    };
    assert_eq!(read(&path, opts), "o\nthree\n");
}

#[test]
fn limit_bytes_cuts_the_output_mid_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    let opts = LogOptions {
        limit_bytes: Some(6),
        ..Default::default()
    };
    assert_eq!(read(&path, opts), "one\ntw");
}

#[test]
fn malformed_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(
        &path,
        "garbage\n2024-05-01T10:00:01Z stdout F ok\n2024-05-01T10:00:02Z stdout F half-writ",
    )
    .unwrap();
    assert_eq!(read(&path, LogOptions::default()), "ok\n");
}

#[test]
fn follow_streams_new_entries_across_rotation_and_ends_when_the_run_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    // Small enough that the writes below rotate the file several times.
    let log = LogFile::open(&path, 400).unwrap();
    let mut stdout = log.stream(Stream::Stdout);
    writeln!(stdout, "before").unwrap();
    let (exit_tx, exit_rx) = tokio::sync::watch::channel(false);
    let out = Collect::default();
    let reader = std::thread::spawn({
        let path = path.clone();
        let mut out = out.clone();
        move || {
            let opts = LogOptions {
                follow: true,
                ..Default::default()
            };
            read_logs(&path, &opts, &exit_rx, &mut out)
        }
    });
    let wait_for = |text: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !out.text().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} in {:?}",
                out.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("before\n");
    // In batches a reader keeps up with: the writer keeps one rotated generation, so a burst of
    // several rotations between two polls loses lines (as it does with the kubelet).
    for batch in 0..5 {
        for i in batch * 4..batch * 4 + 4 {
            writeln!(stdout, "line {i}").unwrap();
        }
        wait_for(&format!("line {}\n", batch * 4 + 3));
    }
    assert_eq!(
        LogFile::generations(&path).len(),
        2,
        "the file never rotated"
    );
    assert!(
        !reader.is_finished(),
        "a follow ended while the run was still going"
    );
    writeln!(stdout, "last words").unwrap();
    drop(stdout);
    exit_tx.send(true).unwrap();
    reader.join().unwrap().unwrap();
    let expected: String = std::iter::once("before".to_string())
        .chain((0..20).map(|i| format!("line {i}")))
        .chain(std::iter::once("last words".to_string()))
        .map(|l| l + "\n")
        .collect();
    assert_eq!(out.text(), expected);
}

#[test]
fn query_parameters_parse_as_the_kubelet_reads_them() {
    let now = Utc::now();
    let params = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>()
    };
    let opts = LogOptions::from_params(
        &params(&[
            ("follow", "true"),
            ("tailLines", "5"),
            ("sinceSeconds", "60"),
            ("timestamps", "1"),
            ("limitBytes", "100"),
        ]),
        now,
    )
    .unwrap();
    assert_eq!(
        opts,
        LogOptions {
            follow: true,
            previous: false,
            tail_lines: Some(5),
            since: Some(now - chrono::Duration::seconds(60)),
            timestamps: true,
            limit_bytes: Some(100),
        }
    );
    let e = LogOptions::from_params(&params(&[("tailLines", "-1")]), now).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value \"-1\" for query parameter tailLines"
    );
    assert!(LogOptions::from_params(&params(&[("sinceTime", "yesterday")]), now).is_err());
}

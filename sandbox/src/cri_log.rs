//! The CRI container log format, written by both runtimes and read by the node's log server:
//! one entry per line, `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <content>`, where `P`
//! marks a partial line continued by the next entry (the kubelet's `pkg/kubelet/kuberuntime/logs`).
//!
//! [`LogFile`] owns one file and rotates it by size, keeping one previous generation at
//! `<path>.1` (what [`LogFile::generations`] lists, oldest first). [`LogFile::stream`] hands
//! out a writer per stream that turns raw bytes into entries.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

/// Entries longer than this are split into `P` entries, as containerd does at 16 KiB.
pub const MAX_ENTRY: usize = 16 * 1024;

/// Logs rotate at this size, keeping one previous generation (the kubelet's default
/// `containerLogMaxSize`).
pub const MAX_FILE_BYTES: u64 = 10 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub stream: Stream,
    /// False for a `P` entry: the line continues in the next entry.
    pub full: bool,
    pub content: Vec<u8>,
}

impl Entry {
    /// Parses one line (without its trailing newline). `None` for a malformed line.
    pub fn parse(line: &[u8]) -> Option<Entry> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(parts.next()?).ok()?;
        let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
        let stream = match parts.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let full = match parts.next()? {
            b"F" => true,
            b"P" => false,
            _ => return None,
        };
        let content = parts.next().unwrap_or_default().to_vec();
        Some(Entry {
            time,
            stream,
            full,
            content,
        })
    }
}

/// A container run's log file, shared by its stream writers.
#[derive(Debug, Clone)]
pub struct LogFile {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
}

impl LogFile {
    /// Opens `path` for appending; once it exceeds `max_bytes` it moves to `<path>.1`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(LogFile {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file,
                written,
                max_bytes,
            })),
        })
    }

    /// The files holding this log, oldest first (the rotated generation only if present).
    pub fn generations(path: &Path) -> Vec<PathBuf> {
        let rotated = rotated_path(path);
        [rotated, path.to_path_buf()]
            .into_iter()
            .filter(|p| p.exists())
            .collect()
    }

    /// A writer for one stream. Bytes are buffered until a newline (or [`MAX_ENTRY`]); dropping
    /// the writer flushes what remains as a final entry.
    pub fn stream(&self, stream: Stream) -> StreamWriter {
        StreamWriter {
            log: self.clone(),
            stream,
            pending: Vec::new(),
        }
    }

    fn append(&self, stream: Stream, full: bool, content: &[u8]) -> io::Result<()> {
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let mut entry = Vec::with_capacity(content.len() + 48);
        entry.extend_from_slice(time.as_bytes());
        entry.push(b' ');
        entry.extend_from_slice(stream.as_str().as_bytes());
        entry.extend_from_slice(if full { b" F " } else { b" P " });
        entry.extend_from_slice(content);
        entry.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.written > 0 && inner.written + entry.len() as u64 > inner.max_bytes {
            inner.rotate()?;
        }
        inner.file.write_all(&entry)?;
        inner.written += entry.len() as u64;
        Ok(())
    }
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Turns one stream's raw bytes into entries of a [`LogFile`].
#[derive(Debug)]
pub struct StreamWriter {
    log: LogFile,
    stream: Stream,
    pending: Vec<u8>,
}

impl Write for StreamWriter {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let len = buf.len();
        while !buf.is_empty() {
            match buf.iter().position(|b| *b == b'\n') {
                Some(end) if self.pending.len() + end <= MAX_ENTRY => {
                    self.pending.extend_from_slice(&buf[..end]);
                    let line = std::mem::take(&mut self.pending);
                    self.log.append(self.stream, true, &line)?;
                    buf = &buf[end + 1..];
                }
                _ => {
                    let room = MAX_ENTRY - self.pending.len();
                    let take = room.min(buf.len());
                    self.pending.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if self.pending.len() == MAX_ENTRY {
                        let part = std::mem::take(&mut self.pending);
                        self.log.append(self.stream, false, &part)?;
                    }
                }
            }
        }
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            // A failure here has nowhere to go: the run is over and its log is best effort.
            let _ = self.log.append(self.stream, true, &rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(path: &Path) -> Vec<Entry> {
        LogFile::generations(path)
            .iter()
            .flat_map(|p| {
                std::fs::read(p)
                    .unwrap()
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| Entry::parse(l).expect("well-formed entry"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn lines_become_full_entries_and_a_trailing_fragment_is_flushed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogFile::open(&path, 1 << 20).unwrap();
        let mut out = log.stream(Stream::Stdout);
        let mut err = log.stream(Stream::Stderr);
        out.write_all(b"hello ").unwrap();
        err.write_all(b"oops\n").unwrap();
        out.write_all(b"world\nbye").unwrap();
        drop(out);
        let got: Vec<_> = entries(&path)
            .into_iter()
            .map(|e| (e.stream, e.full, String::from_utf8(e.content).unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stderr, true, "oops".into()),
                (Stream::Stdout, true, "hello world".into()),
                (Stream::Stdout, true, "bye".into()),
            ]
        );
    }

    #[test]
    fn long_lines_split_into_partial_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogFile::open(&path, 1 << 20).unwrap();
        let mut out = log.stream(Stream::Stdout);
        let mut line = vec![b'x'; MAX_ENTRY + 10];
        line.push(b'\n');
        out.write_all(&line).unwrap();
        let got: Vec<_> = entries(&path)
            .into_iter()
            .map(|e| (e.full, e.content.len()))
            .collect();
        assert_eq!(got, vec![(false, MAX_ENTRY), (true, 10)]);
    }

    #[test]
    fn rotation_keeps_one_previous_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogFile::open(&path, 200).unwrap();
        let mut out = log.stream(Stream::Stdout);
        for i in 0..10 {
            writeln!(out, "line {i}").unwrap();
        }
        let files = LogFile::generations(&path);
        assert_eq!(files.len(), 2);
        let got: Vec<_> = entries(&path)
            .into_iter()
            .map(|e| String::from_utf8(e.content).unwrap())
            .collect();
        // The oldest lines are gone with the generation before the rotated one; the rest are in order.
        assert_eq!(got.last().unwrap(), "line 9");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
    }

    #[test]
    fn malformed_lines_do_not_parse() {
        assert!(Entry::parse(b"not a timestamp stdout F x").is_none());
        assert!(Entry::parse(b"2024-01-01T00:00:00.000000000Z stdin F x").is_none());
        let e = Entry::parse(b"2024-01-01T00:00:00.5Z stderr P a b").unwrap();
        assert_eq!(
            (e.stream, e.full, e.content.as_slice()),
            (Stream::Stderr, false, &b"a b"[..])
        );
    }
}

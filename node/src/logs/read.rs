//! Reading a container's CRI log files as the kubelet's `ReadLogs` does
//! (`pkg/kubelet/kuberuntime/logs`): the rotated generation then the current file, both streams
//! in file order, partial (`P`) entries joined to their line, `tailLines`, `sinceTime`,
//! `timestamps` and `limitBytes` applied, and `follow` streaming new entries (across a
//! rotation) until the container's run exits.
//!
//! [`read_logs`] blocks: the server runs it on a blocking thread and hands it a [`LogSink`].

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use skiff_sandbox::cri_log::{Entry, LogFile, Stream};

/// How often a follow looks for new entries, and for its client having gone.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The kubelet's `/containerLogs` query, resolved (`sinceSeconds` becomes a time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("invalid value {value:?} for query parameter {name}")]
    InvalidParameter { name: &'static str, value: String },
    #[error("failed to read log file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LogOptions {
    /// Parses the query parameters; `now` resolves `sinceSeconds`.
    pub fn from_params(
        params: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<LogOptions, ReadError> {
        let get = |name: &'static str| {
            params
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let invalid = |name: &'static str, value: &str| ReadError::InvalidParameter {
            name,
            value: value.to_string(),
        };
        let flag = |name: &'static str| match get(name) {
            None => Ok(false),
            Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
            Some(v) => Err(invalid(name, v)),
        };
        let count = |name: &'static str| {
            get(name)
                .map(|v| v.parse::<u64>().map_err(|_| invalid(name, v)))
                .transpose()
        };
        let since = match (get("sinceTime"), get("sinceSeconds")) {
            (Some(t), _) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| invalid("sinceTime", t))?
                    .with_timezone(&Utc),
            ),
            (None, Some(s)) => {
                let secs = s
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| invalid("sinceSeconds", s))?;
                Some(now - chrono::Duration::seconds(secs))
            }
            (None, None) => None,
        };
        Ok(LogOptions {
            follow: flag("follow")?,
            previous: flag("previous")?,
            tail_lines: count("tailLines")?,
            since,
            timestamps: flag("timestamps")?,
            limit_bytes: count("limitBytes")?,
        })
    }
}

/// Where the output goes.
pub trait LogSink {
    /// Writes one chunk; false when the client has gone (the read stops).
    fn write(&mut self, bytes: &[u8]) -> bool;
    /// True once the client has gone, checked while a follow waits.
    fn closed(&self) -> bool;
}

/// Copies the log whose current file is `path` to `sink`. With `follow`, waits for new entries
/// until `exited` turns true, then drains what the run wrote last and returns.
pub fn read_logs(
    path: &Path,
    opts: &LogOptions,
    exited: &tokio::sync::watch::Receiver<bool>,
    sink: &mut dyn LogSink,
) -> Result<(), ReadError> {
    // Open every generation first: a rotation while we read then moves names, not our handles.
    let mut readers = LogFile::generations(path)
        .into_iter()
        .map(|p| EntryReader::open(&p))
        .collect::<Result<Vec<_>, _>>()?;
    let (first, offset) = match opts.tail_lines {
        Some(n) => tail_start(&mut readers, n)?,
        None => (0, 0),
    };
    let mut out = Output::new(opts, sink);
    for (i, reader) in readers.iter_mut().enumerate().skip(first) {
        reader.seek(if i == first { offset } else { 0 })?;
        if out.copy(reader)? == Flow::Stop {
            return Ok(());
        }
    }
    if !opts.follow {
        return Ok(());
    }
    // The reader of the current file, or none while the runtime has not created it.
    let mut current = readers.pop().filter(|r| r.path == path);
    loop {
        let done = *exited.borrow();
        if let Some(reader) = current.as_mut() {
            if out.copy(reader)? == Flow::Stop {
                return Ok(());
            }
            if reader.rotated()? {
                // The writer renames only after its last write to this file: what it wrote
                // since our last read is still behind our handle.
                if out.copy(reader)? == Flow::Stop {
                    return Ok(());
                }
                current = None;
            }
        }
        if current.is_none() && path.exists() {
            current = Some(EntryReader::open(path)?);
            continue;
        }
        if done {
            return Ok(());
        }
        if out.sink.closed() {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Where the last `n` lines start: (reader index, byte offset). Lines are counted as the user
/// sees them: a run of partial entries and its final entry are one line.
fn tail_start(readers: &mut [EntryReader], n: u64) -> Result<(usize, u64), ReadError> {
    let end = readers.len().saturating_sub(1);
    let end_offset = |readers: &mut [EntryReader]| match readers.last_mut() {
        Some(r) => r.len(),
        None => Ok(0),
    };
    if n == 0 {
        return Ok((end, end_offset(readers)?));
    }
    let mut starts: VecDeque<(usize, u64)> = VecDeque::new();
    let mut line_start = [true, true];
    for (i, reader) in readers.iter_mut().enumerate() {
        reader.seek(0)?;
        while let Some((entry, at)) = reader.next_entry()? {
            let s = stream_index(entry.stream);
            if line_start[s] {
                if starts.len() as u64 == n {
                    starts.pop_front();
                }
                starts.push_back((i, at));
            }
            line_start[s] = entry.full;
        }
    }
    Ok(starts.front().copied().unwrap_or((0, 0)))
}

fn stream_index(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Turns entries into what the user reads, applying `sinceTime`, `timestamps` and `limitBytes`.
struct Output<'a> {
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    remaining: Option<u64>,
    /// Per stream: whether the next entry starts a line (the previous one was full).
    line_start: [bool; 2],
    sink: &'a mut dyn LogSink,
}

impl<'a> Output<'a> {
    fn new(opts: &LogOptions, sink: &'a mut dyn LogSink) -> Self {
        Output {
            since: opts.since,
            timestamps: opts.timestamps,
            remaining: opts.limit_bytes,
            line_start: [true, true],
            sink,
        }
    }

    /// Copies the reader's complete entries from where it stands to its end.
    fn copy(&mut self, reader: &mut EntryReader) -> Result<Flow, ReadError> {
        while let Some((entry, _)) = reader.next_entry()? {
            if self.entry(&entry) == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    fn entry(&mut self, entry: &Entry) -> Flow {
        let s = stream_index(entry.stream);
        let starts_line = std::mem::replace(&mut self.line_start[s], entry.full);
        if self.since.is_some_and(|since| entry.time < since) {
            return Flow::Continue;
        }
        let mut line = Vec::with_capacity(entry.content.len() + 40);
        if self.timestamps && starts_line {
            line.extend_from_slice(go_rfc3339_nano(entry.time).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(&entry.content);
        if entry.full {
            line.push(b'\n');
        }
        let (bytes, flow) = match self.remaining {
            Some(left) if (line.len() as u64) >= left => {
                self.remaining = Some(0);
                (&line[..left as usize], Flow::Stop)
            }
            Some(left) => {
                self.remaining = Some(left - line.len() as u64);
                (&line[..], Flow::Continue)
            }
            None => (&line[..], Flow::Continue),
        };
        if !bytes.is_empty() && !self.sink.write(bytes) {
            return Flow::Stop;
        }
        flow
    }
}

/// Go's `time.RFC3339Nano` (trailing zeros of the fraction dropped), the kubelet's timestamp
/// prefix as `kubectl logs --timestamps` shows it.
pub fn go_rfc3339_nano(t: DateTime<Utc>) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        s.push('.');
        s.push_str(fraction.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// One log file read entry by entry, remembering where each starts.
struct EntryReader {
    path: PathBuf,
    file: BufReader<File>,
    offset: u64,
    line: Vec<u8>,
}

impl EntryReader {
    fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(io_error(path))?;
        Ok(EntryReader {
            path: path.to_path_buf(),
            file: BufReader::new(file),
            offset: 0,
            line: Vec::new(),
        })
    }

    fn seek(&mut self, offset: u64) -> Result<(), ReadError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(io_error(&self.path))?;
        self.offset = offset;
        Ok(())
    }

    fn len(&self) -> Result<u64, ReadError> {
        Ok(self
            .file
            .get_ref()
            .metadata()
            .map_err(io_error(&self.path))?
            .len())
    }

    /// The next well-formed entry and its offset; `None` at the end of what is complete. A
    /// trailing entry still being written is left for the next call.
    fn next_entry(&mut self) -> Result<Option<(Entry, u64)>, ReadError> {
        loop {
            self.line.clear();
            let n = self
                .file
                .read_until(b'\n', &mut self.line)
                .map_err(io_error(&self.path))?;
            if n == 0 {
                return Ok(None);
            }
            if self.line.last() != Some(&b'\n') {
                let at = self.offset;
                self.seek(at)?;
                return Ok(None);
            }
            let at = self.offset;
            self.offset += n as u64;
            // A malformed line is skipped, as the kubelet does.
            if let Some(entry) = Entry::parse(&self.line[..n - 1]) {
                return Ok(Some((entry, at)));
            }
        }
    }

    /// Whether the file behind this handle no longer has its name (the writer rotated it).
    fn rotated(&self) -> Result<bool, ReadError> {
        let ours = self
            .file
            .get_ref()
            .metadata()
            .map_err(io_error(&self.path))?;
        Ok(match std::fs::metadata(&self.path) {
            Ok(now) => now.ino() != ours.ino() || now.dev() != ours.dev(),
            Err(_) => true,
        })
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;

//! The container log, `<root>/containers/<id>/ctr.log`: one JSON object per line, Docker's
//! json-file format (`{"log":"text\n","stream":"stdout","time":"RFC 3339"}`). The monitor
//! writes it ([`append`], through [`Writer`]) and `logs` reads it ([`LogLine::parse`]), through
//! this one type. Output the log could not take (a full disk) is counted in a marker beside
//! it ([`loss_marker`], read by [`lost`]), so `logs` can say that output was lost.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which of the container's output streams a line came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stream {
    #[default]
    Stdout,
    Stderr,
}

impl Stream {
    /// The name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl Serialize for Stream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `"stderr"` is stderr; any other name (or none) is stdout, as `logs` always treated it.
impl<'de> Deserialize<'de> for Stream {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Stream, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(if name == "stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        })
    }
}

/// One line of the log: a piece of output up to and including a newline (or the end of
/// what one read returned), its stream, and when the monitor read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogLine {
    /// The text (invalid UTF-8 replaced).
    pub log: String,
    pub stream: Stream,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

impl LogLine {
    /// One line of the log file (without its newline); None when it is not a log line.
    pub fn parse(line: &[u8]) -> Option<LogLine> {
        serde_json::from_slice(line).ok()
    }
}

/// Appends to `out` the log lines of `data`, read from `stream` at `time`: one per line of
/// output, each ending in a newline.
pub fn append(out: &mut Vec<u8>, stream: Stream, data: &[u8], time: &str) {
    for piece in data.split_inclusive(|b| *b == b'\n') {
        let line = LogLine {
            log: String::from_utf8_lossy(piece).into_owned(),
            stream,
            time: time.to_string(),
        };
        serde_json::to_writer(&mut *out, &line).expect("a log line serializes");
        out.push(b'\n');
    }
}

/// The file beside the log that says output was lost (`ctr.log.lost`): created empty when
/// a write first fails (an empty file needs no data block, so this works on a full disk),
/// then holding "BYTES ERROR" once that can be written.
pub fn loss_marker(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".lost");
    log.with_file_name(name)
}

/// What was lost of a container's output, read back from [`loss_marker`] by `logs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// Bytes of output that did not reach the log; None when the disk never had room to
    /// say how many.
    pub bytes: Option<u64>,
    /// Why the log's write failed, when known.
    pub error: Option<String>,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bytes {
            Some(n) => write!(f, "{n} bytes of output were lost")?,
            None => write!(f, "some output was lost")?,
        }
        match &self.error {
            Some(e) => write!(f, ": writing the log failed: {e}"),
            None => write!(f, ": writing the log failed"),
        }
    }
}

/// Whether output of the container whose log is `log` was lost, and how much.
pub fn lost(log: &Path) -> Option<Loss> {
    let text = std::fs::read_to_string(loss_marker(log)).ok()?;
    let (bytes, error) = match text.trim().split_once(' ') {
        Some((n, e)) => (n.parse().ok(), Some(e.to_string())),
        None => (text.trim().parse().ok(), None),
    };
    Some(Loss { bytes, error })
}

/// The monitor's log: appends whole lines, and when a write fails (a full disk) drops what
/// it wrote of them, counts the bytes lost and says so in [`loss_marker`].
pub struct Writer {
    path: PathBuf,
    file: Option<File>,
    /// The log's length after the last complete write.
    len: u64,
    lost: u64,
    error: Option<String>,
    /// Whether the marker says `lost` bytes.
    marked: bool,
}

impl Writer {
    /// Opens (creates) the log at `path` for appending. A log that cannot be opened counts
    /// everything written to it as lost.
    pub fn open(path: PathBuf) -> Writer {
        let (file, error) = match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let len = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Writer {
            path,
            file,
            len,
            lost: 0,
            error,
            marked: true,
        }
    }

    /// Appends the log lines of `data`, read from `stream` now.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        let mut out = Vec::new();
        append(&mut out, stream, data, &crate::record::now_rfc3339());
        let r = match self.file.as_mut() {
            Some(f) => f.write_all(&out),
            None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
        };
        match r {
            Ok(()) => {
                self.len += out.len() as u64;
                if !self.marked {
                    self.mark();
                }
            }
            Err(e) => {
                // A partial line would merge with the next one: cut it off (freeing blocks
                // cannot fail for want of space).
                if let Some(f) = &self.file {
                    let _ = f.set_len(self.len);
                }
                if self.file.is_some() {
                    self.error = Some(e.to_string());
                }
                self.lost += data.len() as u64;
                self.marked = false;
                self.mark();
            }
        }
    }

    /// Writes the marker: created empty first, then with the count and the error.
    fn mark(&mut self) {
        let Ok(mut f) = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(loss_marker(&self.path))
        else {
            return;
        };
        let text = format!("{} {}", self.lost, self.error.as_deref().unwrap_or(""));
        self.marked = f.write_all(text.trim().as_bytes()).is_ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes are those the monitor wrote with `json!` before this type existed.
    #[test]
    fn lines_are_docker_json_file_lines_and_read_back() {
        let time = "2024-01-02T03:04:05.000000006Z";
        let data = b"one \"q\" \\ \t\nt\xffwo\npartial";
        let mut out = Vec::new();
        append(&mut out, Stream::Stderr, data, time);
        let mut expected = Vec::new();
        for piece in data.split_inclusive(|b| *b == b'\n') {
            let v = serde_json::json!({
                "log": String::from_utf8_lossy(piece),
                "stream": "stderr",
                "time": time,
            });
            serde_json::to_writer(&mut expected, &v).unwrap();
            expected.push(b'\n');
        }
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        let lines: Vec<LogLine> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| LogLine::parse(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].log, "one \"q\" \\ \t\n");
        assert_eq!(lines[1].log, "t\u{fffd}wo\n");
        assert_eq!(lines[2].log, "partial");
        assert!(lines
            .iter()
            .all(|l| l.stream == Stream::Stderr && l.time == time));
    }

    #[test]
    fn odd_lines_read_as_logs_did() {
        let l = LogLine::parse(br#"{"log":"x","stream":"other"}"#).unwrap();
        assert_eq!(
            (l.log.as_str(), l.stream, l.time.as_str()),
            ("x", Stream::Stdout, "")
        );
        assert_eq!(LogLine::parse(b"not json"), None);
    }

    #[test]
    fn a_failed_write_is_cut_off_counted_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = Writer::open(path.clone());
        w.write(Stream::Stdout, b"kept\n");
        assert_eq!(lost(&path), None);
        // A write that fails: the file is read-only underneath.
        let good = std::fs::read(&path).unwrap();
        w.file = Some(File::open(&path).unwrap());
        w.write(Stream::Stderr, b"gone\n");
        assert_eq!(std::fs::read(&path).unwrap(), good);
        let l = lost(&path).unwrap();
        assert_eq!(l.bytes, Some(5));
        assert!(l.error.is_some(), "{l:?}");
        assert!(l
            .to_string()
            .starts_with("5 bytes of output were lost: writing the log failed: "));
        // An empty marker (no room for its text) still says that output was lost.
        std::fs::write(loss_marker(&path), b"").unwrap();
        assert_eq!(
            lost(&path).unwrap().to_string(),
            "some output was lost: writing the log failed"
        );
    }
}

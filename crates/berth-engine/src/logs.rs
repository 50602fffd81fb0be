//! The container log, `<root>/containers/<id>/ctr.log`: one JSON object per line, Docker's
//! json-file format (`{"log":"text\n","stream":"stdout","time":"RFC 3339"}`). The monitor
//! writes it ([`append`]) and `logs` reads it ([`LogLine::parse`]), through this one type.

use serde::{Deserialize, Serialize};

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
}

//! `/proc/PID/stat`: one parser for the fields berth reads (state, parent, start time), and
//! the liveness check that tells a recycled pid from the process that was recorded.

use std::io;

/// The fields of `/proc/PID/stat` that berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The state letter (`R`, `S`, `D`, `Z`, `X`, `T`, ...).
    pub state: char,
    /// The parent's pid (field 4).
    pub ppid: i32,
    /// CPU time spent in user mode, in clock ticks (field 14).
    pub utime: u64,
    /// CPU time spent in kernel mode, in clock ticks (field 15).
    pub stime: u64,
    /// When the process started, in clock ticks after boot (field 22). With the pid it names
    /// one process for the life of the machine.
    pub start_time: u64,
}

impl Stat {
    /// A zombie or a dead task: it has exited, whether or not it was reaped yet.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so the fields are counted from its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    // After ppid (field 4): fields 5..=13, then utime (14) and stime (15).
    let utime = fields.nth(9)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    // Fields 16..=21, then the start time (field 22).
    let start_time = fields.nth(6)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        utime,
        stime,
        start_time,
    })
}

/// Reads and parses `/proc/<pid>/stat`.
pub fn stat(pid: i32) -> io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: unexpected format"),
        )
    })
}

/// Whether `pid` is a live process (not a zombie), and, when `start_time` is given, still the
/// same process that had that start time (a pid reused after its process died is not).
pub fn alive(pid: i32, start_time: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match stat(pid) {
        Ok(s) => !s.has_exited() && start_time.is_none_or(|t| t == s.start_time),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 31 11 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 17,
                utime: 31,
                stime: 11,
                start_time: 987654
            }
        );
        assert!(!s.has_exited());
    }

    #[test]
    fn rejects_truncated_text() {
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert!(alive(me, None));
        assert!(alive(me, Some(s.start_time)));
        assert!(!alive(me, Some(s.start_time + 1)));
        assert!(!alive(0, None));
        assert!(!alive(-5, None));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Unreaped: it becomes a zombie once it exits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while stat(pid).map(|s| !s.has_exited()).unwrap_or(false) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!alive(pid, None));
        drop(child);
    }
}

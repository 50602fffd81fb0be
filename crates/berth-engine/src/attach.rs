//! The stream protocol between the monitor and attached clients (`run`,
//! `start -a`, `attach`) over a unix socket: frames of `[type u8][len u32 BE][data]`.
//! Also the client's side: terminal raw mode, stdin, signals, resizes.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STDIN_EOF: u8 = 3;
/// rows u16 BE, cols u16 BE.
pub const RESIZE: u8 = 4;
/// i32 BE.
pub const SIGNAL: u8 = 5;
/// i32 BE exit code.
pub const EXIT: u8 = 6;
pub const STARTED: u8 = 7;
/// i32 BE exit code, then the message.
pub const ERROR: u8 = 8;

pub fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let mut p = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::OUT,
                )];
                let _ = rustix::event::poll(&mut p, None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub fn frame(typ: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + data.len());
    v.push(typ);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

pub fn send(fd: BorrowedFd<'_>, typ: u8, data: &[u8]) -> io::Result<()> {
    write_all_fd(fd, &frame(typ, data))
}

/// Reassembles frames from a byte stream.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    pub fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        if self.buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
        if self.buf.len() < 5 + len {
            return None;
        }
        let typ = self.buf[0];
        let data = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Some((typ, data))
    }
}

/// Reads what is available; Ok(None) at EOF.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(rustix::io::Errno::INTR) => {}
            // A pty master whose slave side is gone reads EIO: that is its EOF.
            Err(rustix::io::Errno::IO) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// How a client session ended.
#[derive(Debug)]
pub enum Outcome {
    /// The container exited with this code.
    Exited(i32),
    /// The monitor reported a failure (exit code, message).
    Failed(i32, String),
    /// The container started (only when asked to stop there).
    Started,
    /// The connection closed without an exit report.
    Closed,
    /// The user typed the detach keys: the container goes on running.
    Detached,
}

/// Docker's default detach sequence: Ctrl-P Ctrl-Q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Parses Docker's `--detach-keys` syntax: comma-separated keys, each a single
/// character or `ctrl-X` with X one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`.
/// An empty string disables detaching.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, String> {
    let bad = |k: &str| {
        format!(
            "invalid detach key {k:?} in {spec:?}: use single characters or ctrl-<a-z, @, [, \\, ], ^, _>, comma-separated (e.g. ctrl-p,ctrl-q)"
        )
    };
    let mut out = Vec::new();
    if spec.is_empty() {
        return Ok(out);
    }
    for k in spec.split(',') {
        let lower = k.to_ascii_lowercase();
        if let Some(c) = lower.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad(k)),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad(k));
        }
    }
    Ok(out)
}

/// Watches stdin for the detach sequence, holding back a partial match until it
/// is either completed (detach) or broken (the held bytes go through).
#[derive(Default)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    held: usize,
}

impl DetachMatcher {
    pub fn new(keys: Vec<u8>) -> DetachMatcher {
        DetachMatcher { keys, held: 0 }
    }

    /// The bytes to forward, and whether the sequence was completed.
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        if self.keys.is_empty() {
            return (data.to_vec(), false);
        }
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    self.held = 0;
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.held]);
            if b == self.keys[0] {
                self.held = 1;
            } else {
                self.held = 0;
                out.push(b);
            }
        }
        (out, false)
    }
}

pub struct ClientOptions {
    /// Forward our stdin.
    pub stdin: bool,
    /// The container has a terminal: raw mode and resizes.
    pub tty: bool,
    /// Forward SIGINT/SIGTERM/... to the container (without a terminal).
    pub proxy_signals: bool,
    /// Return as soon as the container has started.
    pub until_started: bool,
    /// The detach sequence (empty: none). Only read with a terminal and stdin.
    pub detach_keys: Vec<u8>,
}

/// Restores the terminal's settings when dropped.
pub struct RawGuard {
    saved: Option<rustix::termios::Termios>,
}

impl RawGuard {
    pub fn enable(on: bool) -> RawGuard {
        let stdin = rustix::stdio::stdin();
        if !on || !rustix::termios::isatty(stdin) {
            return RawGuard { saved: None };
        }
        let Ok(saved) = rustix::termios::tcgetattr(stdin) else {
            return RawGuard { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw);
        RawGuard { saved: Some(saved) }
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                rustix::stdio::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

fn window_size() -> Option<(u16, u16)> {
    for fd in [rustix::stdio::stdin(), rustix::stdio::stdout()] {
        if let Ok(ws) = rustix::termios::tcgetwinsize(fd) {
            if ws.ws_row > 0 {
                return Some((ws.ws_row, ws.ws_col));
            }
        }
    }
    None
}

fn resize_frame() -> Option<Vec<u8>> {
    let (r, c) = window_size()?;
    let mut d = r.to_be_bytes().to_vec();
    d.extend_from_slice(&c.to_be_bytes());
    Some(d)
}

/// Runs an attached session until the container exits or the monitor hangs up.
pub fn client_loop(sock: &OwnedFd, opts: &ClientOptions) -> io::Result<Outcome> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    if opts.proxy_signals {
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
        ] {
            mask.add(s);
        }
    }
    if opts.tty {
        mask.add(Signal::SIGWINCH);
    }
    mask.thread_block().map_err(io::Error::from)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(io::Error::from)?;
    let _raw = RawGuard::enable(opts.tty && opts.stdin);
    if opts.tty {
        if let Some(f) = resize_frame() {
            let _ = send(sock.as_fd(), RESIZE, &f);
        }
    }
    let stdin = rustix::stdio::stdin();
    let mut stdin_open = opts.stdin;
    let mut detach = DetachMatcher::new(if opts.tty && opts.stdin {
        opts.detach_keys.clone()
    } else {
        Vec::new()
    });
    let mut reader = FrameReader::default();
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = io::stdout().lock();
    let mut err = io::stderr();
    loop {
        use rustix::event::{poll, PollFd, PollFlags};
        let mut fds = vec![
            PollFd::new(sock, PollFlags::IN),
            PollFd::new(&sfd, PollFlags::IN),
        ];
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let sock_ready = !fds[0].revents().is_empty();
        let sig_ready = !fds[1].revents().is_empty();
        let stdin_ready = stdin_open && !fds[2].revents().is_empty();
        drop(fds);
        if sig_ready {
            while let Ok(Some(si)) = sfd.read_signal() {
                let signo = si.ssi_signo as i32;
                if signo == libc::SIGWINCH {
                    if let Some(f) = resize_frame() {
                        let _ = send(sock.as_fd(), RESIZE, &f);
                    }
                } else {
                    let _ = send(sock.as_fd(), SIGNAL, &signo.to_be_bytes());
                }
            }
        }
        if stdin_ready {
            match read_some(stdin, &mut buf) {
                Ok(Some(n)) => {
                    let (data, detached) = detach.feed(&buf[..n]);
                    if !data.is_empty() && send(sock.as_fd(), STDIN, &data).is_err() {
                        stdin_open = false;
                    }
                    if detached {
                        return Ok(Outcome::Detached);
                    }
                }
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    let _ = send(sock.as_fd(), STDIN_EOF, &[]);
                }
            }
        }
        if sock_ready {
            match read_some(sock.as_fd(), &mut buf)? {
                None => return Ok(Outcome::Closed),
                Some(n) => reader.feed(&buf[..n]),
            }
            while let Some((typ, data)) = reader.next_frame() {
                match typ {
                    STDOUT => {
                        out.write_all(&data)?;
                        out.flush()?;
                    }
                    STDERR => {
                        err.write_all(&data)?;
                    }
                    STARTED if opts.until_started => return Ok(Outcome::Started),
                    EXIT if data.len() >= 4 => {
                        return Ok(Outcome::Exited(i32::from_be_bytes(
                            data[..4].try_into().unwrap(),
                        )))
                    }
                    ERROR if data.len() >= 4 => {
                        let code = i32::from_be_bytes(data[..4].try_into().unwrap());
                        return Ok(Outcome::Failed(
                            code,
                            String::from_utf8_lossy(&data[4..]).into_owned(),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Reads a whole small stream (used for the runtime's error output).
pub fn read_available(fd: &OwnedFd) -> Vec<u8> {
    let _ = rustix::io::ioctl_fionbio(fd, true);
    let mut out = Vec::new();
    let mut f = std::fs::File::from(fd.try_clone().expect("dup"));
    let _ = f.read_to_end(&mut out);
    out
}

pub fn raw(fd: &impl AsRawFd) -> RawFd {
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(
            parse_detach_keys(DEFAULT_DETACH_KEYS).unwrap(),
            vec![16, 17]
        );
        assert_eq!(
            parse_detach_keys("ctrl-@,a,ctrl-[").unwrap(),
            vec![0, b'a', 27]
        );
        assert_eq!(parse_detach_keys("").unwrap(), Vec::<u8>::new());
        let e = parse_detach_keys("ctrl-pq").unwrap_err();
        assert!(
            e.contains("ctrl-pq") && e.contains("comma-separated"),
            "{e}"
        );
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn detach_matcher_holds_partial_sequences() {
        let mut m = DetachMatcher::new(vec![16, 17]);
        // A lone Ctrl-P is held back, then released when the sequence breaks.
        assert_eq!(m.feed(b"ls\x10"), (b"ls".to_vec(), false));
        assert_eq!(m.feed(b"x"), (b"\x10x".to_vec(), false));
        // Ctrl-P Ctrl-P Ctrl-Q: the first is data, the next two detach.
        assert_eq!(m.feed(b"\x10\x10\x11rest"), (b"\x10".to_vec(), true));
        // Split across reads.
        let mut m = DetachMatcher::new(vec![16, 17]);
        assert_eq!(m.feed(b"\x10"), (vec![], false));
        assert_eq!(m.feed(b"\x11"), (vec![], true));
        // No keys: everything passes.
        let mut m = DetachMatcher::new(vec![]);
        assert_eq!(m.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}

//! The stage protocol between the runtime process ("parent") and a process it starts ("child":
//! the container's init for `create`/`run`, the intermediate process that joins namespaces,
//! or the process of `exec`).
//!
//! One `SOCK_SEQPACKET` socketpair, close-on-exec on both ends, so a successful `execve` in the
//! child shows up in the parent as end-of-file. [`pair`] gives each side its own end type:
//! [`ParentEnd`] sends only [`ToChild`] messages and receives only [`FromChild`] ones,
//! [`ChildEnd`] the reverse, so a stage cannot send a message its peer does not expect. Each
//! end has one method per protocol step. A message is one packet: a tag byte and a fixed
//! payload (integers in native byte order: both ends are the same binary on the same host);
//! a file descriptor travels with its packet by `SCM_RIGHTS` ([`berth_sys::fdpass`]).
//! Packets are encoded into a buffer on the stack: the start path allocates nothing for them.
//!
//! | tag | message | from | payload | when |
//! |---|---|---|---|---|
//! | 1 | [`ToChild::Go`] | parent | pid: i32 | uid/gid maps written, `oom_score_adj` set: the child may proceed; `pid` is its pid in the runtime's pid namespace (for hook state) |
//! | 9 | [`ToChild::Joined`] | parent | — | the init is in its cgroups (sent after "go": the init mounts meanwhile, and waits for this only before a cgroup namespace, cgroup mounts or hooks) |
//! | 2 | [`FromChild::Hooks`] | init | — | (`create`, with prestart/createRuntime hooks) mounts are done, `pivot_root` is not: run the hooks now |
//! | 3 | [`ToChild::HooksDone`] | parent | — | the hooks succeeded |
//! | 8 | [`FromChild::SeccompFd`] | init, exec | a seccomp notify listener fd | the filter is loaded with `SCMP_ACT_NOTIFY`: the runtime passes the fd to the agent at `linux.seccomp.listenerPath` (a path in the runtime's mount namespace) |
//! | 4 | [`FromChild::Ready`] | init | — | everything before the user program is prepared; the init waits for start (the exec fifo, or "start") |
//! | 5 | [`ToChild::Start`] | parent | — | (`run`, `exec`) start the user program now |
//! | 7 | [`FromChild::Pid`] | intermediate | pid: i32 | the host pid of the process it cloned (the init or the exec process) |
//! | 6 | [`FromChild::Error`] | any child | errno: i32 (0: none), flags: u8 (1: while finding or executing the program), message: UTF-8 | the child failed and exits; the parent gets it as [`ChildError`] at the step it waits on, with the errno (as crun reports errors) |
//!
//! The order: go → (joined) → [hooks → hooks done] → [seccomp fd] → ready → start (or the exec
//! fifo) → [seccomp fd] → end-of-file at `execve`. An error may replace any child message.
//! The parent reports `Ok` for end-of-file after start ([`ParentEnd::wait_exec`]); end-of-file
//! anywhere else means the child died, and its report, if it sent one, is the error.
//!
//! [`send_fd`] and [`recv_fd`] carry one descriptor with data over any unix socket: runc's
//! `--console-socket` protocol (the pty master, with the pty's name as data).

use crate::sys::{Errno, SysCtx, SysError};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

const GO: u8 = 1;
const HOOKS: u8 = 2;
const HOOKS_DONE: u8 = 3;
const READY: u8 = 4;
const START: u8 = 5;
const ERROR: u8 = 6;
const PID: u8 = 7;
const SECCOMP_FD: u8 = 8;
const JOINED: u8 = 9;

/// The largest packet; an error message is cut to fit.
pub const MAX_PACKET: usize = 4096;

/// Errors of the stage protocol itself.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Sending or receiving failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The peer sent a message that does not belong at this step.
    #[error("protocol error: got message {got} while waiting for {waiting_for}")]
    Unexpected {
        /// The message's tag.
        got: u8,
        /// What this side was waiting for.
        waiting_for: &'static str,
    },
    /// A message whose payload does not match its tag, or an unknown tag.
    #[error("protocol error: malformed message {0}")]
    Malformed(u8),
    /// The child exited without a report while the parent waited.
    #[error("the container process exited while the runtime was waiting for {0}")]
    PeerExited(&'static str),
    /// The child exited without a report before it was ready.
    #[error("the container process exited before it was ready")]
    ExitedBeforeReady,
}

/// An error the child reported over the channel: its message and the errno of the failed
/// system call, rebuilt in the parent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChildError {
    /// The errno of the system call that failed, if one did.
    pub errno: Option<i32>,
    /// Whether it failed finding or executing the user's program.
    pub exec: bool,
    /// The message for people.
    pub message: String,
}

impl ChildError {
    /// The report of `e`, as the child sends it.
    pub fn of(e: &impl Errno) -> ChildError {
        ChildError {
            errno: e.errno(),
            exec: e.during_exec(),
            message: e.to_string(),
        }
    }
}

/// What the parent gets instead of the message it waits for.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The protocol failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The child reported an error.
    #[error(transparent)]
    Child(#[from] ChildError),
}

impl Errno for StageError {
    /// The errno: the child's, or of the failed send or receive.
    fn errno(&self) -> Option<i32> {
        match self {
            StageError::Child(e) => e.errno,
            StageError::Protocol(ProtocolError::Sys(e)) => e.errno(),
            StageError::Protocol(_) => None,
        }
    }

    fn during_exec(&self) -> bool {
        matches!(self, StageError::Child(e) if e.exec)
    }
}

/// What the parent sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToChild {
    /// Proceed; the child's pid in the runtime's pid namespace.
    Go {
        /// The pid.
        pid: i32,
    },
    /// The init is in its cgroups.
    Joined,
    /// The prestart/createRuntime hooks ran.
    HooksDone,
    /// Start the user program.
    Start,
}

/// What a child sends.
#[derive(Debug)]
pub enum FromChild {
    /// Run the prestart/createRuntime hooks now.
    Hooks,
    /// Prepared; waiting for start.
    Ready,
    /// The host pid of the process the intermediate cloned.
    Pid(i32),
    /// The seccomp notify listener.
    SeccompFd(OwnedFd),
    /// The child failed.
    Error(ChildError),
}

/// What the parent can receive while waiting for the child to be ready.
#[derive(Debug)]
pub enum Step {
    /// The child asks the parent to run prestart/createRuntime hooks now.
    Hooks,
    /// The child is ready.
    Ready,
    /// The child loaded a seccomp filter with a notify listener: here it is, for the agent.
    SeccompFd(OwnedFd),
}

/// A packet being built or received, on the stack.
struct Packet {
    buf: [u8; MAX_PACKET],
    len: usize,
}

impl Packet {
    fn new(tag: u8) -> Packet {
        let mut p = Packet {
            buf: [0; MAX_PACKET],
            len: 1,
        };
        p.buf[0] = tag;
        p
    }

    /// Appends what fits of `b`.
    fn push(&mut self, b: &[u8]) {
        let n = b.len().min(MAX_PACKET - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn i32_at(p: &[u8], tag: u8) -> Result<i32, ProtocolError> {
    p.get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or(ProtocolError::Malformed(tag))
}

impl ToChild {
    fn encode(self) -> Packet {
        match self {
            ToChild::Go { pid } => {
                let mut p = Packet::new(GO);
                p.push(&pid.to_ne_bytes());
                p
            }
            ToChild::Joined => Packet::new(JOINED),
            ToChild::HooksDone => Packet::new(HOOKS_DONE),
            ToChild::Start => Packet::new(START),
        }
    }

    fn decode(b: &[u8]) -> Result<ToChild, ProtocolError> {
        let (&tag, rest) = b.split_first().ok_or(ProtocolError::Malformed(0))?;
        Ok(match tag {
            GO => ToChild::Go {
                pid: i32_at(rest, tag)?,
            },
            JOINED => ToChild::Joined,
            HOOKS_DONE => ToChild::HooksDone,
            START => ToChild::Start,
            t => return Err(ProtocolError::Malformed(t)),
        })
    }

    fn tag(self) -> u8 {
        match self {
            ToChild::Go { .. } => GO,
            ToChild::Joined => JOINED,
            ToChild::HooksDone => HOOKS_DONE,
            ToChild::Start => START,
        }
    }
}

impl FromChild {
    /// The packet and the descriptor that goes with it.
    fn encode(&self) -> (Packet, Option<BorrowedFd<'_>>) {
        match self {
            FromChild::Hooks => (Packet::new(HOOKS), None),
            FromChild::Ready => (Packet::new(READY), None),
            FromChild::Pid(pid) => {
                let mut p = Packet::new(PID);
                p.push(&pid.to_ne_bytes());
                (p, None)
            }
            FromChild::SeccompFd(fd) => (Packet::new(SECCOMP_FD), Some(fd.as_fd())),
            FromChild::Error(e) => {
                let mut p = Packet::new(ERROR);
                p.push(&e.errno.unwrap_or(0).to_ne_bytes());
                p.push(&[u8::from(e.exec)]);
                // Cut at a character boundary when the message does not fit.
                let room = MAX_PACKET - p.len;
                let mut end = e.message.len().min(room);
                while !e.message.is_char_boundary(end) {
                    end -= 1;
                }
                p.push(&e.message.as_bytes()[..end]);
                (p, None)
            }
        }
    }

    fn decode(b: &[u8], fds: Vec<OwnedFd>) -> Result<FromChild, ProtocolError> {
        let (&tag, rest) = b.split_first().ok_or(ProtocolError::Malformed(0))?;
        Ok(match tag {
            HOOKS => FromChild::Hooks,
            READY => FromChild::Ready,
            PID => FromChild::Pid(i32_at(rest, tag)?),
            SECCOMP_FD => FromChild::SeccompFd(
                fds.into_iter()
                    .next()
                    .ok_or(ProtocolError::Malformed(tag))?,
            ),
            ERROR => {
                let errno = i32_at(rest, tag)?;
                let flags = *rest.get(4).ok_or(ProtocolError::Malformed(tag))?;
                FromChild::Error(ChildError {
                    errno: (errno != 0).then_some(errno),
                    exec: flags & 1 != 0,
                    message: String::from_utf8_lossy(&rest[5..]).into_owned(),
                })
            }
            t => return Err(ProtocolError::Malformed(t)),
        })
    }
}

/// Sends one packet (and a descriptor).
fn send_packet(sock: &OwnedFd, p: &Packet, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let fds: &[BorrowedFd<'_>] = match &fd {
        Some(f) => std::slice::from_ref(f),
        None => &[],
    };
    berth_sys::fdpass::send(sock, p.bytes(), fds).map(drop)
}

/// Receives one packet into `p`; None on end-of-file (the peer exited or exec'd).
fn recv_packet(sock: &OwnedFd, p: &mut Packet) -> io::Result<Option<Vec<OwnedFd>>> {
    let mut reset = false;
    loop {
        match berth_sys::fdpass::recv(sock, &mut p.buf) {
            Ok(r) if r.len == 0 && r.fds.is_empty() => return Ok(None),
            Ok(r) => {
                p.len = r.len;
                return Ok(Some(r.fds));
            }
            // The peer exited with our messages unread: the kernel reports that once, ahead
            // of what the peer sent before it exited (its error report). Read on.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !reset => reset = true,
            Err(e) => return Err(e),
        }
    }
}

/// A new close-on-exec socketpair: the parent's end and the child's.
pub fn pair() -> Result<(ParentEnd, ChildEnd), SysError> {
    let (parent, child) = crate::sys::socketpair(libc::SOCK_SEQPACKET)
        .sys(|| "creating the parent/child socketpair")?;
    Ok((ParentEnd(parent), ChildEnd(child)))
}

/// The runtime's end: sends [`ToChild`], receives [`FromChild`].
#[derive(Debug)]
pub struct ParentEnd(OwnedFd);

impl ParentEnd {
    fn send(&self, m: ToChild, what: &'static str) -> Result<(), ProtocolError> {
        Ok(send_packet(&self.0, &m.encode(), None).sys(|| what)?)
    }

    /// The next message; None on end-of-file.
    fn recv(&self, what: &'static str) -> Result<Option<FromChild>, ProtocolError> {
        let mut p = Packet::new(0);
        match recv_packet(&self.0, &mut p).sys(|| format!("waiting for {what}"))? {
            None => Ok(None),
            Some(fds) => FromChild::decode(p.bytes(), fds).map(Some),
        }
    }

    /// Step "go": the child may proceed; `pid` is its pid in the runtime's namespace.
    pub fn send_go(&self, pid: i32) -> Result<(), ProtocolError> {
        self.send(
            ToChild::Go { pid },
            "telling the container process to proceed",
        )
    }

    /// Step "joined": the child is in its cgroups.
    pub fn send_joined(&self) -> Result<(), ProtocolError> {
        self.send(
            ToChild::Joined,
            "telling the container process it is in its cgroup",
        )
    }

    /// Step "hooks done": the prestart/createRuntime hooks ran fine.
    pub fn hooks_done(&self) -> Result<(), ProtocolError> {
        self.send(ToChild::HooksDone, "reporting hooks done")
    }

    /// `run`/`exec`: start the user program now (no exec fifo).
    pub fn send_start(&self) -> Result<(), ProtocolError> {
        self.send(ToChild::Start, "telling the container to start")
    }

    /// Steps "hooks", "seccomp fd" and "ready": the next thing the child asks for.
    pub fn wait_ready(&self) -> Result<Step, StageError> {
        match self.recv("the container process")? {
            Some(FromChild::Ready) => Ok(Step::Ready),
            Some(FromChild::Hooks) => Ok(Step::Hooks),
            Some(FromChild::SeccompFd(fd)) => Ok(Step::SeccompFd(fd)),
            Some(FromChild::Error(e)) => Err(e.into()),
            Some(FromChild::Pid(_)) => Err(ProtocolError::Unexpected {
                got: PID,
                waiting_for: "the container process",
            }
            .into()),
            None => Err(ProtocolError::ExitedBeforeReady.into()),
        }
    }

    /// Step "pid", from the intermediate process.
    pub fn recv_pid(&self) -> Result<i32, StageError> {
        const WHAT: &str = "the container's pid";
        match self.recv(WHAT)? {
            Some(FromChild::Pid(pid)) => Ok(pid),
            Some(FromChild::Error(e)) => Err(e.into()),
            Some(m) => Err(ProtocolError::Unexpected {
                got: m.tag(),
                waiting_for: WHAT,
            }
            .into()),
            None => Err(ProtocolError::PeerExited(WHAT).into()),
        }
    }

    /// After start: Ok when the child exec'd (end-of-file), its error otherwise; a seccomp
    /// listener sent on the way goes to `on_seccomp`.
    pub fn wait_exec<E: From<StageError>>(
        &self,
        mut on_seccomp: impl FnMut(OwnedFd) -> Result<(), E>,
    ) -> Result<(), E> {
        const WHAT: &str = "the container process to exec";
        loop {
            let stage = |e: StageError| E::from(e);
            match self.recv(WHAT).map_err(|e| stage(e.into()))? {
                None => return Ok(()),
                Some(FromChild::SeccompFd(fd)) => on_seccomp(fd)?,
                Some(FromChild::Error(e)) => return Err(stage(e.into())),
                Some(m) => {
                    return Err(stage(
                        ProtocolError::Unexpected {
                            got: m.tag(),
                            waiting_for: WHAT,
                        }
                        .into(),
                    ))
                }
            }
        }
    }

    /// After a failure of the parent's own: the error the child already reported, if any (the
    /// more useful message when the child died first). Does not block.
    pub fn pending_error(&self) -> Option<ChildError> {
        let mut p = Packet::new(0);
        loop {
            let (n, _) =
                rustix::net::recv(&self.0, &mut p.buf, rustix::net::RecvFlags::DONTWAIT).ok()?;
            if n == 0 {
                return None;
            }
            p.len = n;
            if let Ok(FromChild::Error(e)) = FromChild::decode(p.bytes(), Vec::new()) {
                return Some(e);
            }
        }
    }
}

impl FromChild {
    fn tag(&self) -> u8 {
        match self {
            FromChild::Hooks => HOOKS,
            FromChild::Ready => READY,
            FromChild::Pid(_) => PID,
            FromChild::SeccompFd(_) => SECCOMP_FD,
            FromChild::Error(_) => ERROR,
        }
    }
}

/// The child's end (init, intermediate or exec process): sends [`FromChild`], receives
/// [`ToChild`].
#[derive(Debug)]
pub struct ChildEnd(OwnedFd);

impl AsRawFd for ChildEnd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl ChildEnd {
    fn send(&self, m: &FromChild, what: &'static str) -> Result<(), ProtocolError> {
        let (p, fd) = m.encode();
        Ok(send_packet(&self.0, &p, fd).sys(|| what)?)
    }

    /// Waits for `want`; returns the message.
    fn expect(&self, want: u8, what: &'static str) -> Result<ToChild, ProtocolError> {
        let mut p = Packet::new(0);
        if recv_packet(&self.0, &mut p)
            .sys(|| format!("waiting for {what}"))?
            .is_none()
        {
            return Err(ProtocolError::PeerExited(what));
        }
        let m = ToChild::decode(p.bytes())?;
        if m.tag() != want {
            return Err(ProtocolError::Unexpected {
                got: m.tag(),
                waiting_for: what,
            });
        }
        Ok(m)
    }

    /// Step "go": returns the child's pid in the runtime's namespace (for hook state).
    pub fn wait_go(&self) -> Result<i32, ProtocolError> {
        match self.expect(GO, "the runtime's go-ahead")? {
            ToChild::Go { pid } => Ok(pid),
            _ => unreachable!("expect checked the tag"),
        }
    }

    /// Step "joined".
    pub fn wait_joined(&self) -> Result<(), ProtocolError> {
        self.expect(JOINED, "the runtime to add it to its cgroup")
            .map(drop)
    }

    /// Steps "hooks" and "hooks done": ask for the prestart/createRuntime hooks and wait
    /// until they ran.
    pub fn request_hooks(&self) -> Result<(), ProtocolError> {
        self.send(&FromChild::Hooks, "asking for createRuntime hooks")?;
        self.expect(HOOKS_DONE, "the createRuntime hooks").map(drop)
    }

    /// Step "ready".
    pub fn send_ready(&self) -> Result<(), ProtocolError> {
        self.send(&FromChild::Ready, "reporting readiness")
    }

    /// Step "start" (`run`, `exec`).
    pub fn wait_start(&self) -> Result<(), ProtocolError> {
        self.expect(START, "start").map(drop)
    }

    /// Step "seccomp fd": hands the notify listener to the runtime, which passes it to the
    /// agent.
    pub fn send_seccomp_fd(&self, fd: OwnedFd) -> Result<(), ProtocolError> {
        self.send(
            &FromChild::SeccompFd(fd),
            "sending the seccomp listener to the runtime",
        )
    }

    /// Step "pid" (the intermediate process).
    pub fn send_pid(&self, pid: i32) -> Result<(), ProtocolError> {
        self.send(&FromChild::Pid(pid), "reporting a pid")
    }

    /// Step "error": reports a failure with its errno (best effort: the child exits next).
    pub fn send_error(&self, e: ChildError) {
        let _ = self.send(&FromChild::Error(e), "reporting an error");
    }
}

/// Sends `fd` over a unix socket with SCM_RIGHTS, with `payload` as the data (runc's console
/// protocol sends the pty's name).
pub fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> io::Result<()> {
    // SAFETY: the caller passes descriptors that are open for the duration of the call.
    let (sock, fd) = unsafe { (BorrowedFd::borrow_raw(sock), BorrowedFd::borrow_raw(fd)) };
    berth_sys::fdpass::send(sock, payload, &[fd]).map(drop)
}

/// Receives one fd sent with SCM_RIGHTS, and the data that came with it.
pub fn recv_fd(sock: RawFd) -> io::Result<(OwnedFd, Vec<u8>)> {
    // SAFETY: the caller passes a descriptor that is open for the duration of the call.
    let sock = unsafe { BorrowedFd::borrow_raw(sock) };
    let mut data = vec![0u8; 4096];
    let r = berth_sys::fdpass::recv(sock, &mut data)?;
    data.truncate(r.len);
    let fd = r.fds.into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no file descriptor in the message",
        )
    })?;
    Ok((fd, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_to_child(m: ToChild) -> ToChild {
        ToChild::decode(m.encode().bytes()).unwrap()
    }

    fn round_trip_from_child(m: FromChild) -> FromChild {
        let (p, fd) = m.encode();
        let fds = fd
            .map(|f| f.try_clone_to_owned().unwrap())
            .into_iter()
            .collect();
        FromChild::decode(p.bytes(), fds).unwrap()
    }

    #[test]
    fn parent_messages_round_trip() {
        for m in [
            ToChild::Go { pid: 4242 },
            ToChild::Go { pid: -1 },
            ToChild::Joined,
            ToChild::HooksDone,
            ToChild::Start,
        ] {
            assert_eq!(round_trip_to_child(m), m);
        }
    }

    #[test]
    fn child_messages_round_trip() {
        assert!(matches!(
            round_trip_from_child(FromChild::Hooks),
            FromChild::Hooks
        ));
        assert!(matches!(
            round_trip_from_child(FromChild::Ready),
            FromChild::Ready
        ));
        assert!(matches!(
            round_trip_from_child(FromChild::Pid(77)),
            FromChild::Pid(77)
        ));
        let f = tempfile::tempfile().unwrap();
        assert!(matches!(
            round_trip_from_child(FromChild::SeccompFd(f.into())),
            FromChild::SeccompFd(_)
        ));
        for e in [
            ChildError {
                errno: Some(libc::ENOENT),
                exec: true,
                message: "exec: \"nope\": executable file not found in $PATH".into(),
            },
            ChildError {
                errno: None,
                exec: false,
                message: String::new(),
            },
        ] {
            match round_trip_from_child(FromChild::Error(e.clone())) {
                FromChild::Error(got) => assert_eq!(got, e),
                m => panic!("{m:?}"),
            }
        }
    }

    #[test]
    fn a_long_error_is_cut_at_a_character_boundary() {
        let e = ChildError {
            errno: Some(libc::EACCES),
            exec: false,
            message: "é".repeat(MAX_PACKET),
        };
        let FromChild::Error(got) = round_trip_from_child(FromChild::Error(e)) else {
            panic!()
        };
        assert_eq!(got.errno, Some(libc::EACCES));
        assert!(got.message.len() <= MAX_PACKET - 6);
        assert!(got.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert!(matches!(
            ToChild::decode(&[GO, 1, 2]),
            Err(ProtocolError::Malformed(GO))
        ));
        assert!(matches!(
            ToChild::decode(&[READY]),
            Err(ProtocolError::Malformed(READY))
        ));
        assert!(matches!(
            FromChild::decode(&[SECCOMP_FD], Vec::new()),
            Err(ProtocolError::Malformed(SECCOMP_FD))
        ));
        assert!(matches!(
            FromChild::decode(&[ERROR, 0, 0], Vec::new()),
            Err(ProtocolError::Malformed(ERROR))
        ));
        assert!(ToChild::decode(&[]).is_err());
    }

    #[test]
    fn the_steps_travel_over_the_socketpair() {
        let (parent, child) = pair().unwrap();
        parent.send_go(99).unwrap();
        assert_eq!(child.wait_go().unwrap(), 99);
        child.send_ready().unwrap();
        assert!(matches!(parent.wait_ready().unwrap(), Step::Ready));
        // An error arrives with its errno, at whatever step the parent waits on.
        let e = crate::error::Error::Sys(SysError {
            what: "mounting /proc".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        });
        child.send_error(ChildError::of(&e));
        let got = parent.recv_pid().unwrap_err();
        assert_eq!(got.errno(), Some(libc::EPERM));
        assert_eq!(got.to_string(), e.to_string());
        assert_eq!(crate::error::Error::from(got).errno(), Some(libc::EPERM));
        // A message the step does not expect is a protocol error.
        parent.send_start().unwrap();
        assert!(matches!(
            child.wait_joined(),
            Err(ProtocolError::Unexpected { got: START, .. })
        ));
        // The child's report stays readable after the parent failed on its own.
        child.send_error(ChildError::of(&e));
        assert_eq!(parent.pending_error().unwrap().errno, Some(libc::EPERM));
        assert!(parent.pending_error().is_none());
        // End-of-file after start: the child exec'd.
        drop(child);
        parent.wait_exec(|_| Ok::<(), StageError>(())).unwrap();
    }
}

//! The typed protocol between the runtime process ("parent") and the process it starts inside the
//! container ("child": the init of `create`/`run`, or the process of `exec`).
//!
//! One `SOCK_SEQPACKET` socketpair, close-on-exec on both ends, so a successful `execve` in the
//! child shows up in the parent as end-of-file. Each message is one packet: a tag byte plus a
//! payload (an i32 or UTF-8 text). File descriptors travel with `SCM_RIGHTS`
//! ([`send_fd`]/[`recv_fd`], also used for runc's `--console-socket` protocol).
//!
//! The steps, in order (one function per step):
//! 1. parent [`Channel::send_go`] → child [`Channel::wait_go`]: uid/gid maps written,
//!    oom_score_adj set; the child may proceed. Then parent [`Channel::send_joined`] → child [`Channel::wait_joined`]: the init is in its
//!    cgroups. The parent adds it after "go", so the child prepares its mounts meanwhile and
//!    waits for this only where the cgroup matters (cgroup namespace and mounts, hooks).
//! 2. (create only) child [`Channel::request_hooks`] → parent runs prestart + createRuntime hooks →
//!    parent [`Channel::hooks_done`]: mounts are done, pivot_root has not happened yet.
//! 3. child [`Channel::send_ready`] → parent [`Channel::wait_ready`]: everything before the user
//!    program is prepared; the child now waits for start (exec fifo, or [`Channel::send_start`]).
//! 4. any time: child [`Channel::send_error`] → parent gets `Err(message)` at the step it waits on.
//! 5. (intermediate for joining namespaces / exec) child [`Channel::send_pid`] → parent
//!    [`Channel::recv_pid`]: the host pid of the process it forked.
//! 6. (seccomp notify) child [`Channel::send_seccomp_fd`] → parent gets
//!    [`Step::SeccompFd`] (or the `wait_exec` callback) and passes the listener to the agent at
//!    `linux.seccomp.listenerPath`, which is a path in the runtime's mount namespace.

use crate::error::{Ctx, Error, Result};
use crate::sys::cvt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const GO: u8 = 1;
const HOOKS: u8 = 2;
const HOOKS_DONE: u8 = 3;
const READY: u8 = 4;
const START: u8 = 5;
const ERROR: u8 = 6;
const PID: u8 = 7;
const SECCOMP_FD: u8 = 8;
const JOINED: u8 = 9;

/// One received message: tag, payload, and the fd that came with it.
type Packet = (u8, Vec<u8>, Option<OwnedFd>);

/// One end of the parent/child socketpair.
pub struct Channel(pub OwnedFd);

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

impl Channel {
    /// A new close-on-exec socketpair: (parent end, child end).
    pub fn pair() -> Result<(Channel, Channel)> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-int buffer.
        cvt(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        })
        .ctx(|| "creating the parent/child socketpair")?;
        // SAFETY: both fds are new and ours.
        unsafe {
            Ok((
                Channel(OwnedFd::from_raw_fd(fds[0])),
                Channel(OwnedFd::from_raw_fd(fds[1])),
            ))
        }
    }

    fn send(&self, tag: u8, payload: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 + payload.len());
        buf.push(tag);
        buf.extend_from_slice(payload);
        // SAFETY: buf is valid for len bytes.
        let r = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one packet; None on end-of-file (the peer exited or exec'd).
    fn recv(&self) -> io::Result<Option<(u8, Vec<u8>)>> {
        Ok(self.recv_fd()?.map(|(t, p, _)| (t, p)))
    }

    /// Receives one packet and the fd sent with it, if any.
    fn recv_fd(&self) -> io::Result<Option<Packet>> {
        let mut buf = vec![0u8; 8192];
        // SAFETY: pure computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        let mut cbuf = vec![0u8; space];
        let mut reset = false;
        loop {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: a zeroed msghdr is valid; pointers below reference live buffers.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            // SAFETY: msg points to live buffers for the call.
            let r = unsafe { libc::recvmsg(self.0.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The peer exited with our messages unread: the kernel reports that once,
                // ahead of what the peer sent before it exited (its error report). Read on.
                if e.kind() == io::ErrorKind::ConnectionReset && !reset {
                    reset = true;
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                return Ok(None);
            }
            // SAFETY: walking the control buffer the kernel filled.
            let fd = unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                if !c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
                    Some(OwnedFd::from_raw_fd(fd))
                } else {
                    None
                }
            };
            buf.truncate(r as usize);
            let tag = buf.remove(0);
            return Ok(Some((tag, buf, fd)));
        }
    }

    fn expect(&self, want: u8, what: &str) -> Result<Vec<u8>> {
        match self.recv().ctx(|| format!("waiting for {what}"))? {
            Some((t, p)) if t == want => Ok(p),
            Some((ERROR, p)) => Err(Error::Msg(String::from_utf8_lossy(&p).into_owned())),
            Some((t, _)) => Err(Error::Msg(format!(
                "protocol error: got message {t} while waiting for {what}"
            ))),
            None => Err(Error::Msg(format!(
                "the container process exited while the runtime was waiting for {what}"
            ))),
        }
    }

    /// Step 1, parent: the child may proceed; `pid` is its pid in the runtime's namespace.
    pub fn send_go(&self, pid: i32) -> Result<()> {
        self.send(GO, &pid.to_ne_bytes())
            .ctx(|| "telling the container process to proceed")
    }

    /// Step 1, child: returns its pid in the runtime's namespace (for hook state).
    pub fn wait_go(&self) -> Result<i32> {
        let p = self.expect(GO, "the runtime's go-ahead")?;
        Ok(p.get(..4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .unwrap_or(0))
    }

    /// Step 1b, parent: the child is in its cgroups.
    pub fn send_joined(&self) -> Result<()> {
        self.send(JOINED, &[])
            .ctx(|| "telling the container process it is in its cgroup")
    }

    /// Step 1b, child.
    pub fn wait_joined(&self) -> Result<()> {
        self.expect(JOINED, "the runtime to add it to its cgroup")
            .map(drop)
    }

    /// Parent, after a failure of its own: the error the child already reported, if any (the
    /// more useful message when the child died first). Does not block.
    pub fn pending_error(&self) -> Option<String> {
        loop {
            let mut buf = [0u8; 4096];
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return None;
            }
            if buf[0] == ERROR {
                return Some(String::from_utf8_lossy(&buf[1..n as usize]).into_owned());
            }
        }
    }

    /// Step 2, child: ask for prestart/createRuntime hooks and wait until they ran.
    pub fn request_hooks(&self) -> Result<()> {
        self.send(HOOKS, &[])
            .ctx(|| "asking for createRuntime hooks")?;
        self.expect(HOOKS_DONE, "the createRuntime hooks").map(drop)
    }

    /// Step 2, parent: hooks ran fine.
    pub fn hooks_done(&self) -> Result<()> {
        self.send(HOOKS_DONE, &[]).ctx(|| "reporting hooks done")
    }

    /// Step 3, child.
    pub fn send_ready(&self) -> Result<()> {
        self.send(READY, &[]).ctx(|| "reporting readiness")
    }

    /// Steps 2 and 3, parent: the next thing the child asks for.
    pub fn wait_ready(&self) -> Result<Step> {
        match self.recv_fd().ctx(|| "waiting for the container process")? {
            Some((READY, _, _)) => Ok(Step::Ready),
            Some((HOOKS, _, _)) => Ok(Step::Hooks),
            Some((SECCOMP_FD, _, Some(fd))) => Ok(Step::SeccompFd(fd)),
            Some((t, p, _)) => Self::unexpected(t, p),
            None => Err(Error::Msg(
                "the container process exited before it was ready".into(),
            )),
        }
    }

    fn unexpected<T>(t: u8, p: Vec<u8>) -> Result<T> {
        match t {
            ERROR => Err(Error::Msg(String::from_utf8_lossy(&p).into_owned())),
            t => Err(Error::Msg(format!(
                "protocol error: unexpected message {t}"
            ))),
        }
    }

    /// `run`/`exec`, parent: start the user program now (no exec fifo).
    pub fn send_start(&self) -> Result<()> {
        self.send(START, &[])
            .ctx(|| "telling the container to start")
    }

    /// `run`/`exec`, child.
    pub fn wait_start(&self) -> Result<()> {
        self.expect(START, "start").map(drop)
    }

    /// After start, parent: Ok when the child exec'd (end-of-file), Err with its message
    /// otherwise; a seccomp listener sent on the way goes to `on_seccomp`.
    pub fn wait_exec(&self, mut on_seccomp: impl FnMut(OwnedFd) -> Result<()>) -> Result<()> {
        loop {
            match self
                .recv_fd()
                .ctx(|| "waiting for the container process to exec")?
            {
                None => return Ok(()),
                Some((SECCOMP_FD, _, Some(fd))) => on_seccomp(fd)?,
                Some((t, p, _)) => return Self::unexpected(t, p),
            }
        }
    }

    /// Child: hands the seccomp notify listener to the runtime, which passes it to the agent.
    pub fn send_seccomp_fd(&self, fd: &OwnedFd) -> Result<()> {
        send_fd(self.0.as_raw_fd(), fd.as_raw_fd(), &[SECCOMP_FD])
            .ctx(|| "sending the seccomp listener to the runtime")
    }

    /// Step 4, child: report a failure (best effort).
    pub fn send_error(&self, msg: &str) {
        let _ = self.send(ERROR, msg.as_bytes());
    }

    /// Step 5, child.
    pub fn send_pid(&self, pid: i32) -> Result<()> {
        self.send(PID, &pid.to_ne_bytes()).ctx(|| "reporting a pid")
    }

    /// Step 5, parent.
    pub fn recv_pid(&self) -> Result<i32> {
        let p = self.expect(PID, "the container's pid")?;
        let b: [u8; 4] = p
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Msg("protocol error: short pid message".into()))?;
        Ok(i32::from_ne_bytes(b))
    }
}

/// Sends `fd` over a unix socket with SCM_RIGHTS, with `payload` as the data (runc's console
/// protocol sends the pty's name).
pub fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> io::Result<()> {
    let payload = if payload.is_empty() { b"\0" } else { payload };
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: a zeroed msghdr is valid; all pointers set below point to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one cmsg with one fd.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd);
    }
    // SAFETY: msg is fully initialised.
    cvt(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) as libc::c_int }).map(drop)
}

/// Receives one fd sent with SCM_RIGHTS, and the data that came with it.
pub fn recv_fd(sock: RawFd) -> io::Result<(OwnedFd, Vec<u8>)> {
    let mut data = vec![0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: buffers live for the call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    data.truncate(n as usize);
    // SAFETY: walking the control buffer the kernel filled.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no file descriptor in the message",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
        Ok((OwnedFd::from_raw_fd(fd), data))
    }
}

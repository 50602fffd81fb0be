//! The container's terminal: a pty opened inside the container's devpts, made the init's
//! controlling terminal, its master sent over runc's `--console-socket` (SCM_RIGHTS), and, for a
//! foreground `run`/`exec` without a console socket, proxied to the runtime's own stdio.

use crate::channel;
use crate::sys;
use crate::sys::{SysCtx, SysError};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

type Result<T> = std::result::Result<T, SysError>;

/// Opens a new pty in the current mount namespace's /dev/ptmx. Returns (master, slave, slave path).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd, String)> {
    let master = sys::open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)
        .sys(|| "opening /dev/ptmx in the container (is devpts mounted at /dev/pts?)")?;
    let mut n: libc::c_uint = 0;
    let mut unlock: libc::c_int = 0;
    // SAFETY: ioctls on our master with valid out-pointers.
    unsafe {
        sys::cvt(libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            &mut unlock,
        ))
        .sys(|| "unlocking the pty")?;
        sys::cvt(libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n))
            .sys(|| "getting the pty number")?;
    }
    // Open the peer through the master (TIOCGPTPEER) so a symlink in /dev/pts cannot redirect it.
    // SAFETY: ioctl returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = sys::cvt(slave).sys(|| "opening the pty's slave")?;
    // SAFETY: new fd we own.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok((master, slave, format!("/dev/pts/{n}")))
}

/// Makes `slave` the controlling terminal and stdio of the calling process (already a session
/// leader).
pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    // SAFETY: plain ioctl/dup2 on fds we own.
    unsafe {
        sys::cvt(libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0)).sys(|| "TIOCSCTTY")?;
        for fd in 0..3 {
            sys::cvt(libc::dup2(slave.as_raw_fd(), fd)).sys(|| "dup2 of the pty")?;
        }
    }
    Ok(())
}

/// Sets the pty's window size.
pub fn set_size(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Sends the master over the console socket (runc's protocol: the pty name as data).
pub fn send_master(console: RawFd, master: &OwnedFd, name: &str) -> Result<()> {
    channel::send_fd(console, master.as_raw_fd(), name.as_bytes())
        .sys(|| "sending the pty master over --console-socket")
}

/// Connects to a `--console-socket` path.
pub fn connect_console(path: &str) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .sys(|| format!("connecting to --console-socket {path}"))?;
    Ok(OwnedFd::from(s))
}

/// Copies between our stdin/stdout and `master` until the master hangs up or `pidfd` fires.
/// Our stdin is put in raw mode for the duration when it is a terminal.
pub fn proxy(master: &OwnedFd) {
    // SAFETY: termios calls on fd 0 with a valid buffer.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) == 0 {
            let orig = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
            }
            Some(orig)
        } else {
            None
        }
    };
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: valid pollfd array.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            if sys::last().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        if fds[0].revents != 0 {
            // SAFETY: the kernel writes at most buf.len() bytes into buf.
            let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            write_all(1, &buf[..n as usize]);
        }
        if fds[1].revents != 0 {
            // SAFETY: the kernel writes at most buf.len() bytes into buf.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                stdin_open = false;
            } else {
                write_all(master.as_raw_fd(), &buf[..n as usize]);
            }
        }
    }
    if let Some(t) = saved {
        // SAFETY: restoring the saved termios.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
    }
}

fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: the kernel reads data.len() bytes of data.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}

/// The console fds for a container process: the `--console-socket` connection, or for a
/// foreground process with a terminal an internal socketpair (child end, our end) whose master
/// the runtime proxies.
pub fn console_fds(
    console_socket: Option<&str>,
    terminal: bool,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match (console_socket, terminal) {
        (Some(p), _) => Ok((Some(connect_console(p)?), None)),
        (None, true) => {
            let (child, ours) =
                sys::socketpair(libc::SOCK_STREAM).sys(|| "creating the console socketpair")?;
            Ok((Some(child), Some(ours)))
        }
        _ => Ok((None, None)),
    }
}

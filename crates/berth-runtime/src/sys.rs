//! Thin wrappers over the Linux system calls the runtime uses (raw `libc`, no allocation on the
//! hot path beyond path strings).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A system call or file operation that failed while doing `what`; keeps the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SysError {
    /// What was being done ("creating the cgroup namespace").
    pub what: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// The calling thread's errno, failing while doing `what`.
    pub fn last(what: impl Into<String>) -> SysError {
        SysError {
            what: what.into(),
            source: io::Error::last_os_error(),
        }
    }

    /// The OS errno.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Adds "what was being done" to an `io::Result`.
pub trait SysCtx<T> {
    /// Wraps the error with the context computed by `f`, as a [`SysError`].
    fn sys<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, SysError>;
}

impl<T> SysCtx<T> for io::Result<T> {
    fn sys<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T, SysError> {
        self.map_err(|source| SysError {
            what: f().into(),
            source,
        })
    }
}

/// An error that may have an OS errno behind it: what the stage channel and the log's error
/// line carry besides the message.
pub trait Errno: std::fmt::Display {
    /// The OS errno behind the error.
    fn errno(&self) -> Option<i32>;
    /// Whether finding or executing the container's program failed.
    fn during_exec(&self) -> bool {
        false
    }
}

/// The errno of the first `io::Error` in `e`'s chain of sources, starting with `e` itself.
pub fn chain_errno(mut e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    loop {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        e = e.source()?;
    }
}

/// Turns a -1 return into the thread's errno.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A C string from a Rust string (paths never contain NUL; a NUL is reported as EINVAL).
pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// mount(2).
pub fn mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let target = cstr(target)?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.filter(|d| !d.is_empty()).map(cstr).transpose()?;
    let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null or a valid NUL-terminated string alive for the call.
    cvt(unsafe {
        libc::mount(
            p(&src),
            target.as_ptr(),
            p(&fstype),
            flags,
            p(&data) as *const libc::c_void,
        )
    })
    .map(drop)
}

/// umount2(2).
pub fn umount2(target: &str, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) used like fork(2): no new stack, SIGCHLD on exit. Returns 0 in the child.
/// The caller must be single-threaded.
pub fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> io::Result<libc::pid_t> {
    // With CLONE_PARENT the child inherits our exit signal; clone3 wants 0 then.
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let mut args = CloneArgs {
        flags,
        exit_signal,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: with no stack given clone3 behaves like fork; the args struct outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    cvt_long(r).map(|p| p as libc::pid_t)
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `RESOLVE_NO_XDEV`.
pub const RESOLVE_NO_XDEV: u64 = 0x01;
/// `RESOLVE_NO_MAGICLINKS`.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// `RESOLVE_NO_SYMLINKS`.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// `RESOLVE_IN_ROOT`.
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(2).
pub fn openat2(
    dirfd: RawFd,
    path: &str,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: valid C string and struct for the duration of the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                p.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match cvt_long(r) {
            // SAFETY: the kernel returned a new fd that we own.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// open(2) with O_CLOEXEC.
pub fn open(path: &str, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: valid C string.
    let fd = cvt(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The magic-link path of an fd, used to mount onto or reopen an O_PATH fd.
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// fstat(2).
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid buffer.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// fstatfs(2) f_type.
pub fn fstatfs_type(fd: RawFd) -> io::Result<i64> {
    // SAFETY: zeroed statfs is a valid out-buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: st is a live statfs for the kernel to fill.
    cvt(unsafe { libc::fstatfs(fd, &mut st) })?;
    Ok(st.f_type as i64)
}

/// Mount flags (MS_*) of the mount holding `path` as statvfs reports them.
pub fn mount_flags_of(path: &str) -> io::Result<libc::c_ulong> {
    let p = cstr(path)?;
    // SAFETY: zeroed statvfs is a valid out-buffer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and buffer.
    cvt(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    let mut flags = 0;
    for (sv, ms) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & sv != 0 {
            flags |= ms;
        }
    }
    Ok(flags)
}

/// Closes every fd >= 3 that is not in `keep` (close_range over the gaps).
pub fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&f| f >= 3).collect();
    keep.sort_unstable();
    let mut next: u32 = 3;
    for k in keep {
        let k = k as u32;
        if k > next {
            // SAFETY: closing fds we own; nothing else in this single-threaded process uses them.
            unsafe { libc::syscall(libc::SYS_close_range, next, k - 1, 0) };
        }
        next = next.max(k + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0) };
}

/// A close-on-exec unix socketpair of type `ty` (`SOCK_STREAM`, `SOCK_SEQPACKET`).
pub fn socketpair(ty: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid buffer of two ints for the kernel to fill.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded: both fds are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Marks every fd >= `first` close-on-exec.
pub fn cloexec_from(first: u32) {
    // SAFETY: only flags change.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Writes `data` to an existing file (procfs/sysfs style: one write, no truncate dance).
pub fn write_file(path: &str, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(data)
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes only integers.
    let r = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Waits up to `timeout_ms` for a pidfd to become readable (the process exited). True if it did.
pub fn pidfd_wait(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout_ms) > 0 }
}

/// `mount_setattr(2)` on the mount `fd` refers to (`AT_EMPTY_PATH`), and with `recursive`
/// on every mount below it: sets and clears `MOUNT_ATTR_*` bits; `userns` is the user
/// namespace of a `MOUNT_ATTR_IDMAP` in `set`.
pub fn mount_setattr(
    fd: RawFd,
    recursive: bool,
    set: u64,
    clr: u64,
    userns: Option<RawFd>,
) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        set: u64,
        clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let attr = MountAttr {
        set,
        clr,
        propagation: 0,
        userns_fd: userns.map_or(0, |f| f as u64),
    };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: attr is a valid mount_attr of the size passed; the path is an empty C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(last());
    }
    Ok(())
}

/// The calling thread's errno as an io::Error.
pub fn last() -> io::Error {
    io::Error::last_os_error()
}

/// prctl(2) with integer arguments.
pub fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> io::Result<()> {
    // SAFETY: integer-only prctl calls.
    cvt(unsafe { libc::prctl(op, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) }).map(drop)
}

/// Parses a cpu list like "0-3,7" into a cpu_set_t.
pub fn parse_cpuset(list: &str) -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let a = part.parse::<usize>().ok()?;
                (a, a)
            }
        };
        if a > b || b >= libc::CPU_SETSIZE as usize {
            return None;
        }
        for c in a..=b {
            // SAFETY: c < CPU_SETSIZE.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let s = parse_cpuset("0-2,5").unwrap();
        for (c, want) in [(0, true), (1, true), (2, true), (3, false), (5, true)] {
            // SAFETY: c < CPU_SETSIZE and s is an initialised cpu_set_t.
            assert_eq!(unsafe { libc::CPU_ISSET(c, &s) }, want, "cpu {c}");
        }
        assert!(parse_cpuset("3-1").is_none());
        assert!(parse_cpuset("x").is_none());
    }
}

//! CVE-2019-5736: a container must never be able to overwrite the runtime's binary on the host.
//!
//! The container's init and every `exec` process are clones of the runtime, so until they
//! `execve` the user's program their `/proc/self/exe` is the host binary. A program in the
//! container that makes the runtime execute `#!/proc/self/exe` runs that binary again inside the
//! container, where it can be opened through `/proc/<pid>/exe` and written once it exits.
//!
//! Before a command that starts container processes, the runtime therefore re-executes itself
//! from a *read-only* view of its binary, so that every `/proc/<pid>/exe` of its descendants
//! points into a read-only mount and any write fails with `EROFS`:
//! - as root: a detached bind mount of the binary (`open_tree(OPEN_TREE_CLONE)`) made read-only
//!   with `mount_setattr`, executed with `execveat(AT_EMPTY_PATH)`. It is attached to no mount
//!   table, costs no copy, and disappears with the last process that runs from it;
//! - without the privilege for that (rootless): a sealed `memfd` copy of the binary.
//!
//! A binary that already lives on a read-only mount (or a sealed memfd) is used as it is.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Marks the re-executed process so a failure to protect never loops.
const MARK: &str = "_BERTH_RUNTIME_SEALED";

/// Re-executes the current process from a read-only view of its binary unless it already runs
/// from one. Returns only when nothing needs doing (or on error, before anything changed).
pub fn ensure_read_only_exe() -> io::Result<()> {
    if runs_read_only()? {
        name_after_argv0();
        return Ok(());
    }
    if std::env::var_os(MARK).is_some() {
        return Err(io::Error::other(
            "the runtime re-executed itself but its binary is still writable",
        ));
    }
    let fd = match read_only_bind() {
        Ok(fd) => fd,
        Err(_) => sealed_copy()?,
    };
    let argv: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(std::os::unix::ffi::OsStringExt::into_vec(a)))
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != MARK)
        .map(|(k, v)| {
            let mut kv = std::os::unix::ffi::OsStringExt::into_vec(k);
            kv.push(b'=');
            kv.extend(std::os::unix::ffi::OsStringExt::into_vec(v));
            CString::new(kv)
        })
        .collect::<Result<_, _>>()
        .map_err(io::Error::other)?;
    envp.push(CString::new(format!("{MARK}=1")).expect("no NUL"));
    let argv_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_p: Vec<*const libc::c_char> = envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv_p.as_ptr(),
            envp_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}

/// A runtime started through `/proc/self/fd/N` (see [`read_only_view`]) is named `N` by
/// the kernel; it takes back the name of its argv[0] so `ps` shows `berth-runtime`.
fn name_after_argv0() {
    let Ok(comm) = std::fs::read_to_string("/proc/self/comm") else {
        return;
    };
    let comm = comm.trim_end();
    if comm.is_empty() || !comm.bytes().all(|b| b.is_ascii_digit()) {
        return;
    }
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let base = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| std::os::unix::ffi::OsStrExt::as_bytes(n).to_vec())
        .unwrap_or_default();
    let mut name: Vec<u8> = base.into_iter().filter(|b| *b != 0).take(15).collect();
    if name.is_empty() {
        return;
    }
    name.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Whether `/proc/self/exe` is on a read-only mount or is a write-sealed memfd.
pub fn runs_read_only() -> io::Result<bool> {
    exe_is_read_only("/proc/self/exe")
}

/// Whether the executable behind `path` (a `/proc/<pid>/exe` link) can be written through it.
pub fn exe_is_read_only(path: &str) -> io::Result<bool> {
    let c = CString::new(path).map_err(io::Error::other)?;
    // SAFETY: statvfs is plain data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.f_flag & libc::ST_RDONLY != 0 {
        return Ok(true);
    }
    // SAFETY: c is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_GET_SEALS takes no argument; on anything but a memfd it fails with EINVAL.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    Ok(seals >= 0 && seals & libc::F_SEAL_WRITE != 0)
}

/// A detached, read-only bind mount of the running binary, as an `O_PATH` fd.
fn read_only_bind() -> io::Result<OwnedFd> {
    read_only_view(std::path::Path::new("/proc/self/exe"))
}

/// A detached, read-only, nosuid, nodev bind mount of the file at `path`, as an `O_PATH`
/// fd (close-on-exec). Executing it (`execveat(AT_EMPTY_PATH)` or `/proc/self/fd/N`)
/// starts the runtime already protected, without the re-exec above. Needs root.
pub fn read_only_view(path: &std::path::Path) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let c = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(io::Error::other)?;
    // SAFETY: open_tree reads the NUL-terminated path c, which lives for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new fd that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    crate::sys::mount_setattr(
        fd.as_raw_fd(),
        false,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        0,
        None,
    )?;
    Ok(fd)
}

/// A memfd holding a copy of the running binary, sealed against every change.
fn sealed_copy() -> io::Result<OwnedFd> {
    let exe = std::fs::File::open("/proc/self/exe")?;
    // SAFETY: memfd_create reads a static NUL-terminated name.
    let fd = unsafe {
        libc::memfd_create(
            c"berth-runtime".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new fd that we own.
    let mem = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut src = &exe;
    let mut dst = std::fs::File::from(mem.try_clone()?);
    std::io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on our memfd.
    if unsafe { libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(mem)
}

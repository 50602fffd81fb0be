//! The operating-system calls the root filesystem's set-up makes, behind a narrow trait so the
//! mount plan of a spec can be unit-tested without root: [`Linux`] calls the kernel exactly as
//! the set-up always did (one trait method is one system call, or one helper the set-up
//! already called), and the tests' recording mock (`rootfs/mock.rs`) keeps a model of the
//! rootfs and writes down every call.
//!
//! File descriptors stay real `OwnedFd`s, and mounts still go onto `/proc/self/fd/N` of an fd
//! resolved with `openat2(RESOLVE_IN_ROOT)`: the mock hands out real descriptors too and knows
//! which path each one stands for.

use crate::sys;
use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

/// An error of a step that is not a single system call (the tmpcopyup copy, the attach of an
/// idmapped tree), kept with its own type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The system calls of the root filesystem's set-up. Paths are strings as the set-up builds
/// them (`/proc/self/fd/N` for an fd); names for the `*at` calls are single components.
pub trait Syscall {
    /// mount(2).
    fn mount(
        &self,
        src: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// umount2(2).
    fn umount2(&self, target: &str, flags: libc::c_int) -> io::Result<()>;
    /// mount_setattr(2) on the mount `fd` refers to (no idmap).
    fn mount_setattr(&self, fd: RawFd, recursive: bool, set: u64, clr: u64) -> io::Result<()>;
    /// The id of the mount `fd` is on (`mnt_id` of `/proc/self/fdinfo/FD`, as mountinfo's
    /// first field).
    fn mount_id(&self, fd: RawFd) -> io::Result<u64>;
    /// Moves the idmapped tree `tree` (prepared by the runtime) onto `target` (move_mount(2)).
    fn attach_tree(&self, tree: RawFd, target: &OwnedFd) -> Result<(), BoxError>;
    /// open(2) with O_CLOEXEC.
    fn open(&self, path: &str, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd>;
    /// openat2(2) with O_CLOEXEC.
    fn openat2(
        &self,
        dirfd: RawFd,
        path: &str,
        flags: libc::c_int,
        mode: u32,
        resolve: u64,
    ) -> io::Result<OwnedFd>;
    /// mkdirat(2).
    fn mkdirat(&self, dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()>;
    /// mknodat(2).
    fn mknodat(
        &self,
        dir: RawFd,
        name: &CStr,
        mode: libc::mode_t,
        dev: libc::dev_t,
    ) -> io::Result<()>;
    /// unlinkat(2).
    fn unlinkat(&self, dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()>;
    /// symlinkat(2): `name` in `dir` pointing at `target`.
    fn symlinkat(&self, target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()>;
    /// fchownat(2).
    fn fchownat(
        &self,
        dir: RawFd,
        name: &CStr,
        uid: libc::uid_t,
        gid: libc::gid_t,
        flags: libc::c_int,
    ) -> io::Result<()>;
    /// readlinkat(2) into a 4 KiB buffer.
    fn readlinkat(&self, dir: RawFd, name: &CStr) -> io::Result<Vec<u8>>;
    /// fstat(2).
    fn fstat(&self, fd: RawFd) -> io::Result<libc::stat>;
    /// fstatfs(2)'s `f_type`.
    fn fstatfs_type(&self, fd: RawFd) -> io::Result<i64>;
    /// The MS_* flags of the mount holding `path` (statvfs(2)).
    fn mount_flags_of(&self, path: &str) -> io::Result<libc::c_ulong>;
    /// A readable directory descriptor from an `O_PATH` one (openat(2) of ".").
    fn open_dir(&self, fd: &OwnedFd) -> io::Result<OwnedFd>;
    /// tmpcopyup: copies directory `from` into directory `to` ([`crate::copyup::copy_dir`]).
    fn copy_dir(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), BoxError>;
    /// Reads a whole (proc) file.
    fn read_to_string(&self, path: &str) -> io::Result<String>;
    /// stat(2) of a host path (symlinks followed): whether it is a directory.
    fn is_dir(&self, path: &str) -> io::Result<bool>;
    /// Whether a host path exists (stat(2) succeeds).
    fn exists(&self, path: &str) -> bool;
    /// chdir(2).
    fn chdir(&self, path: &CStr) -> io::Result<()>;
    /// fchdir(2).
    fn fchdir(&self, fd: RawFd) -> io::Result<()>;
    /// chroot(2).
    fn chroot(&self, path: &CStr) -> io::Result<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> io::Result<()>;
}

/// The kernel.
pub struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        src: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()> {
        sys::mount(src, target, fstype, flags, data)
    }

    fn umount2(&self, target: &str, flags: libc::c_int) -> io::Result<()> {
        sys::umount2(target, flags)
    }

    fn mount_setattr(&self, fd: RawFd, recursive: bool, set: u64, clr: u64) -> io::Result<()> {
        sys::mount_setattr(fd, recursive, set, clr, None)
    }

    fn mount_id(&self, fd: RawFd) -> io::Result<u64> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
        info.lines()
            .find_map(|l| l.strip_prefix("mnt_id:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODATA))
    }

    fn attach_tree(&self, tree: RawFd, target: &OwnedFd) -> Result<(), BoxError> {
        Ok(crate::idmap::attach(tree, target)?)
    }

    fn open(&self, path: &str, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        sys::open(path, flags, mode)
    }

    fn openat2(
        &self,
        dirfd: RawFd,
        path: &str,
        flags: libc::c_int,
        mode: u32,
        resolve: u64,
    ) -> io::Result<OwnedFd> {
        sys::openat2(dirfd, path, flags, mode, resolve)
    }

    fn mkdirat(&self, dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
        // SAFETY: `name` is a NUL-terminated string alive for the call; a bad fd is EBADF.
        sys::cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) }).map(drop)
    }

    fn mknodat(
        &self,
        dir: RawFd,
        name: &CStr,
        mode: libc::mode_t,
        dev: libc::dev_t,
    ) -> io::Result<()> {
        // SAFETY: `name` is a NUL-terminated string alive for the call; a bad fd is EBADF.
        sys::cvt(unsafe { libc::mknodat(dir, name.as_ptr(), mode, dev) }).map(drop)
    }

    fn unlinkat(&self, dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: `name` is a NUL-terminated string alive for the call; a bad fd is EBADF.
        sys::cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) }).map(drop)
    }

    fn symlinkat(&self, target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
        // SAFETY: both strings are NUL-terminated and alive for the call; a bad fd is EBADF.
        sys::cvt(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
    }

    fn fchownat(
        &self,
        dir: RawFd,
        name: &CStr,
        uid: libc::uid_t,
        gid: libc::gid_t,
        flags: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: `name` is a NUL-terminated string alive for the call; a bad fd is EBADF.
        sys::cvt(unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, flags) }).map(drop)
    }

    fn readlinkat(&self, dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: `name` is NUL-terminated and `buf` is writable for `buf.len()` bytes, both
        // alive for the call; the kernel writes at most that many bytes.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(sys::last());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    fn fstat(&self, fd: RawFd) -> io::Result<libc::stat> {
        sys::fstat(fd)
    }

    fn fstatfs_type(&self, fd: RawFd) -> io::Result<i64> {
        sys::fstatfs_type(fd)
    }

    fn mount_flags_of(&self, path: &str) -> io::Result<libc::c_ulong> {
        sys::mount_flags_of(path)
    }

    fn open_dir(&self, fd: &OwnedFd) -> io::Result<OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        Ok(rustix::fs::openat(
            fd,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    fn copy_dir(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), BoxError> {
        Ok(crate::copyup::copy_dir(from, to)?)
    }

    fn read_to_string(&self, path: &str) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn is_dir(&self, path: &str) -> io::Result<bool> {
        std::fs::metadata(path).map(|m| m.is_dir())
    }

    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }

    fn chdir(&self, path: &CStr) -> io::Result<()> {
        // SAFETY: a NUL-terminated string alive for the call.
        sys::cvt(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
    }

    fn fchdir(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: no memory is passed; a bad fd is EBADF.
        sys::cvt(unsafe { libc::fchdir(fd) }).map(drop)
    }

    fn chroot(&self, path: &CStr) -> io::Result<()> {
        // SAFETY: a NUL-terminated string alive for the call.
        sys::cvt(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> io::Result<()> {
        // SAFETY: both strings are NUL-terminated and alive for the call.
        let r = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
        sys::cvt(r as libc::c_int).map(drop)
    }
}

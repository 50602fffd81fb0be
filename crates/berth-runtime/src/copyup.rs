//! Copies of a directory of a container's rootfs: for `tmpcopyup`, the runc and crun mount
//! option that podman passes for its tmpfs mounts (a tmpfs mounted over a directory of the
//! rootfs starts with a copy of what that directory held, instead of empty), and for the
//! engine's new volumes, which Docker fills from the image.
//!
//! The rootfs is the image's, so nothing in it is trusted: the copy reads every entry with
//! `*at` calls relative to its directory's descriptor and never follows a symlink, so a
//! link in the image can neither pull host files in nor write outside the target.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A copy that failed: the entry and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("tmpcopyup: {}{source}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct CopyError {
    /// The entry that failed, below the copied directory (names joined by ": ").
    pub path: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl From<io::Error> for CopyError {
    fn from(source: io::Error) -> CopyError {
        CopyError {
            path: String::new(),
            source,
        }
    }
}

impl From<rustix::io::Errno> for CopyError {
    fn from(e: rustix::io::Errno) -> CopyError {
        io::Error::from(e).into()
    }
}

/// Deeper trees are refused rather than recursed into (the stack is the init's).
const MAX_DEPTH: u32 = 128;

/// Copies the contents of directory `from` into directory `to`: directories, regular files,
/// symlinks, devices and fifos, with their owners, modes and times (hard links become
/// separate files, sockets are skipped).
pub fn copy_dir(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), CopyError> {
    copy_entries(from, to, 0)
}

fn copy_entries(from: BorrowedFd<'_>, to: BorrowedFd<'_>, depth: u32) -> Result<(), CopyError> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "the directory tree is more than {MAX_DEPTH} levels deep"
        ))
        .into());
    }
    let mut dir = rfs::Dir::read_from(from)?;
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        copy_entry(from, to, name, depth).map_err(|mut e| {
            let name = name.to_string_lossy();
            e.path = if e.path.is_empty() {
                name.into_owned()
            } else {
                format!("{name}: {}", e.path)
            };
            e
        })?;
    }
    Ok(())
}

fn copy_entry(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    name: &CStr,
    depth: u32,
) -> Result<(), CopyError> {
    let st = rfs::statat(from, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    let kind = FileType::from_raw_mode(st.st_mode);
    match kind {
        FileType::Directory => {
            rfs::mkdirat(to, name, Mode::RWXU)?;
            let src = open_dir(from, name)?;
            let dst = open_dir(to, name)?;
            copy_entries(src.as_fd(), dst.as_fd(), depth + 1)?;
        }
        FileType::RegularFile => {
            let src = rfs::openat(
                from,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let dst = rfs::openat(
                to,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            )?;
            let mut src = std::fs::File::from(src);
            let mut dst = std::fs::File::from(dst);
            std::io::copy(&mut src, &mut dst)?;
        }
        FileType::Symlink => {
            let target = rfs::readlinkat(from, name, Vec::new())?;
            rfs::symlinkat(target.as_c_str(), to, name)?;
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
            rfs::mknodat(to, name, kind, mode, st.st_rdev)?;
        }
        // A socket has no contents to copy and nothing listens on a copy.
        FileType::Socket | FileType::Unknown => return Ok(()),
    }
    rfs::chownat(
        to,
        name,
        Some(rfs::Uid::from_raw(st.st_uid)),
        Some(rfs::Gid::from_raw(st.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if kind != FileType::Symlink {
        // After chown, which clears the set-id bits.
        rfs::chmodat(to, name, mode, AtFlags::empty())?;
    }
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    };
    rfs::utimensat(to, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn open_dir(at: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_failed_entry_is_named_and_keeps_its_errno() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::create_dir_all(dst.join("a")).unwrap();
        let e = copy_dir(dir_fd(&src).as_fd(), dir_fd(&dst).as_fd()).unwrap_err();
        assert_eq!(e.path, "a");
        assert_eq!(e.source.raw_os_error(), Some(libc::EEXIST));
        assert!(e.to_string().starts_with("tmpcopyup: a: "), "{e}");
        // Below the top, the names of the directories on the way come first.
        let deep = (0..=MAX_DEPTH + 1).fold(src.join("d"), |p, _| p.join("d"));
        std::fs::create_dir_all(&deep).unwrap();
        let dst2 = t.path().join("dst2");
        std::fs::create_dir(&dst2).unwrap();
        let e = copy_dir(dir_fd(&src.join("d")).as_fd(), dir_fd(&dst2).as_fd()).unwrap_err();
        assert!(e.path.starts_with("d: d: d: "), "{}", e.path);
        assert!(e.to_string().ends_with("levels deep"), "{e}");
    }

    fn dir_fd(p: &std::path::Path) -> OwnedFd {
        rfs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn copies_files_dirs_links_and_modes_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst, outside) = (
            t.path().join("src"),
            t.path().join("dst"),
            t.path().join("o"),
        );
        for d in [&src, &dst, &outside] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(outside.join("secret"), "host").unwrap();
        std::fs::create_dir(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "data").unwrap();
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o4750))
            .unwrap();
        std::os::unix::fs::symlink("../sub/f", src.join("rel")).unwrap();
        // An absolute link to a host directory must stay a link, not become a copy.
        std::os::unix::fs::symlink(&outside, src.join("abs")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        copy_dir(dir_fd(&src).as_fd(), dir_fd(&dst).as_fd()).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("sub/f")).unwrap(), "data");
        let m = std::fs::metadata(dst.join("sub/f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4750);
        assert_eq!(
            m.mtime(),
            std::fs::metadata(src.join("sub/f")).unwrap().mtime()
        );
        assert_eq!(
            std::fs::read_link(dst.join("rel")).unwrap(),
            std::path::Path::new("../sub/f")
        );
        assert_eq!(std::fs::read_link(dst.join("abs")).unwrap(), outside);
        assert!(std::fs::symlink_metadata(dst.join("abs"))
            .unwrap()
            .file_type()
            .is_symlink());
        let f = std::fs::symlink_metadata(dst.join("fifo")).unwrap();
        assert_eq!(f.mode() & 0o170000, libc::S_IFIFO);
        assert_eq!(f.mode() & 0o7777, 0o640);
        // Nothing was written through the links.
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            1,
            "the copy wrote outside its target"
        );
    }
}

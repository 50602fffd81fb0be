//! Filesystem work, always relative to the layer root's directory fd.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
    XattrFlags, CWD,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

use super::entry::{EntryKind, Meta, Time};
use super::UnpackError;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
const DIR_PATH: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// The layer root and the state kept while unpacking into it.
pub(super) struct Tree {
    root: OwnedFd,
    keep_ownership: bool,
    umask: u32,
    /// The parent directory of the previous entry (tar streams list siblings together).
    cache_path: Vec<u8>,
    cache_fd: Option<OwnedFd>,
    /// Directories whose times are set at the end, after their children are written.
    dir_times: Vec<(Vec<u8>, Time, Option<Time>)>,
    root_time: Option<(Time, Option<Time>)>,
    cname: Vec<u8>,
}

fn io_err<'a>(entry: &'a str, op: &'static str) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |e| UnpackError::Io {
        entry: entry.to_string(),
        op,
        source: e.into(),
    }
}

fn ts(t: Time) -> Timespec {
    Timespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec.into(),
    }
}

fn timestamps(mtime: Time, atime: Option<Time>) -> Timestamps {
    Timestamps {
        last_access: ts(atime.unwrap_or(mtime)),
        last_modification: ts(mtime),
    }
}

/// The process umask, read without changing it.
fn read_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o777)
}

/// Retries `openat2` on EAGAIN, which the kernel returns when a rename raced the lookup.
fn open_in_root(root: BorrowedFd<'_>, path: &CStr, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match rfs::openat2(root, path, flags, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            r => return r,
        }
    }
}

fn with_nul<'a>(buf: &'a mut Vec<u8>, bytes: &[u8]) -> &'a CStr {
    buf.clear();
    buf.extend_from_slice(bytes);
    buf.push(0);
    CStr::from_bytes_with_nul(buf).expect("names were checked for NUL bytes")
}

fn cstring(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("names were checked for NUL bytes")
}

/// Removes `name` in `dir` and everything below it, never following a symlink.
fn remove_all(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        r => return r,
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => {}
        r => return r,
    }
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    for ent in rfs::Dir::read_from(&fd)? {
        let ent = ent?;
        let n = ent.file_name();
        if n != c"." && n != c".." {
            children.push(n.to_owned());
        }
    }
    for child in children {
        remove_all(fd.as_fd(), &child)?;
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

impl Tree {
    pub fn open(dest: &Path, keep_ownership: bool) -> io::Result<Tree> {
        let root = rfs::openat(
            CWD,
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Tree {
            root,
            keep_ownership,
            umask: read_umask(),
            cache_path: Vec::new(),
            cache_fd: None,
            dir_times: Vec::new(),
            root_time: None,
            cname: Vec::with_capacity(256),
        })
    }

    /// Opens (creating missing directories, mode 0755) the parent directory `parent` inside the
    /// root. Symlinks on the way resolve inside the root.
    fn parent(&mut self, parent: &[u8], entry: &str) -> Result<BorrowedFd<'_>, UnpackError> {
        if parent.is_empty() {
            return Ok(self.root.as_fd());
        }
        if self.cache_fd.is_none() || self.cache_path != parent {
            self.cache_fd = None;
            let fd = match open_in_root(
                self.root.as_fd(),
                with_nul(&mut self.cname, parent),
                DIR_PATH,
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => self.make_parents(parent, entry)?,
                Err(e) => return Err(io_err(entry, "open the parent directory")(e)),
            };
            self.cache_path.clear();
            self.cache_path.extend_from_slice(parent);
            self.cache_fd = Some(fd);
        }
        Ok(self.cache_fd.as_ref().expect("just set").as_fd())
    }

    /// Walks `path` component by component, creating what is missing.
    fn make_parents(&mut self, path: &[u8], entry: &str) -> Result<OwnedFd, UnpackError> {
        let mut cur: Option<OwnedFd> = None;
        let mut start = 0;
        while start <= path.len() {
            let end = path[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| start + i);
            let prefix = cstring(&path[..end]);
            let comp = cstring(&path[start..end]);
            let fd = match open_in_root(self.root.as_fd(), &prefix, DIR_PATH) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let dir = cur.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
                    match rfs::mkdirat(dir, &comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) => rfs::chmodat(
                            dir,
                            &comp,
                            Mode::from_raw_mode(0o755),
                            AtFlags::empty(),
                        )
                        .map_err(io_err(entry, "set the mode of a missing parent directory"))?,
                        Err(e) => return Err(io_err(
                            entry,
                            "create a missing parent directory (a dangling symlink is in the way?)",
                        )(e)),
                    }
                    rfs::openat(dir, &comp, DIR_PATH | OFlags::NOFOLLOW, Mode::empty())
                        .map_err(io_err(entry, "open a created parent directory"))?
                }
                Err(e) => return Err(io_err(entry, "open a parent directory")(e)),
            };
            cur = Some(fd);
            start = end + 1;
        }
        Ok(cur.expect("parent path is not empty"))
    }

    fn forget_cache(&mut self) {
        self.cache_fd = None;
    }

    /// Makes room for a new non-directory `name` in `dir`: removes whatever is there.
    fn clear_slot(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<()> {
        match remove_all(dir, name) {
            Err(Errno::NOENT) => Ok(()),
            r => r,
        }
    }

    /// Runs `make` to create `name` in `dir`; if something is already there, removes it (a whole
    /// tree for a directory, as Docker does) and runs `make` again. Returns whether it removed.
    fn create_replacing(
        dir: BorrowedFd<'_>,
        name: &CStr,
        mut make: impl FnMut() -> rustix::io::Result<()>,
    ) -> rustix::io::Result<bool> {
        match make() {
            Err(Errno::EXIST) => {
                Self::clear_slot(dir, name)?;
                make().map(|()| true)
            }
            r => r.map(|()| false),
        }
    }

    fn chown_at(
        keep: bool,
        dir: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        if !keep {
            return Ok(());
        }
        rfs::chownat(
            dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(&meta.display, "set the owner"))
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), UnpackError> {
        if !self.keep_ownership {
            return Ok(());
        }
        rfs::fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(io_err(&meta.display, "set the owner"))
    }

    /// Applies the tar's xattrs through `set`, tolerating namespaces the filesystem rejects.
    fn xattrs(
        meta: &Meta,
        mut set: impl FnMut(&CStr, &[u8]) -> rustix::io::Result<()>,
    ) -> Result<(), UnpackError> {
        for (name, value) in &meta.xattrs {
            let cname = CStr::from_bytes_with_nul(name).expect("checked in entry.rs");
            let shown = Meta::xattr_name(name);
            if shown.starts_with("trusted.overlay.") {
                // Overlay metadata is berth's to write (whiteouts, opaque dirs); a layer that
                // carries its own could redirect lookups.
                tracing::warn!(entry = %meta.display, xattr = shown, "ignoring overlay xattr from the layer");
                continue;
            }
            match set(cname, value) {
                Ok(()) => {}
                Err(e @ (Errno::NOTSUP | Errno::PERM)) => {
                    tracing::warn!(entry = %meta.display, xattr = shown, error = %e,
                        "filesystem refused xattr; skipped");
                }
                Err(e) => {
                    return Err(UnpackError::Io {
                        entry: meta.display.clone(),
                        op: "set an xattr",
                        source: io::Error::new(io::Error::from(e).kind(), format!("{shown}: {e}")),
                    })
                }
            }
        }
        Ok(())
    }

    /// Sets xattrs on a non-directory, non-regular `name` in `dir` (symlink, device, fifo) without
    /// opening it: `lsetxattr` on the directory fd's `/proc/self/fd` path plus the name, which
    /// does not follow the last component.
    fn xattrs_at(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), UnpackError> {
        if meta.xattrs.is_empty() {
            return Ok(());
        }
        let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        let p = cstring(&p);
        Self::xattrs(meta, |n, v| rfs::lsetxattr(&p, n, v, XattrFlags::empty()))
    }

    /// Mode bits after fchown: chmod needed unless creation already gave exactly `mode`.
    fn needs_chmod(&self, mode: u32) -> bool {
        mode & 0o7000 != 0 || mode & self.umask != 0
    }

    pub fn root_meta(&mut self, meta: &Meta) -> Result<(), UnpackError> {
        let root = self.root.as_fd();
        self.chown_fd(root, meta)?;
        rfs::fchmod(root, Mode::from_raw_mode(meta.mode))
            .map_err(io_err(&meta.display, "set the mode"))?;
        Self::xattrs(meta, |n, v| rfs::fsetxattr(root, n, v, XattrFlags::empty()))?;
        self.root_time = Some((meta.mtime, meta.atime));
        Ok(())
    }

    pub fn dir(&mut self, parent: &[u8], base: &[u8], meta: &Meta) -> Result<(), UnpackError> {
        let entry = meta.display.as_str();
        let name = cstring(base);
        let keep = self.keep_ownership;
        let dir = self.parent(parent, entry)?;
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let mut replaced = false;
        match rfs::mkdirat(dir, &name, mode) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rfs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_err(entry, "inspect the existing entry"))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    rfs::unlinkat(dir, &name, AtFlags::empty())
                        .map_err(io_err(entry, "remove the existing entry"))?;
                    rfs::mkdirat(dir, &name, mode)
                        .map_err(io_err(entry, "create the directory"))?;
                    replaced = true;
                }
            }
            Err(e) => return Err(io_err(entry, "create the directory")(e)),
        }
        let fd = rfs::openat(
            dir,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(entry, "open the directory"))?;
        if keep {
            self.chown_fd(fd.as_fd(), meta)?;
        }
        rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(io_err(entry, "set the mode"))?;
        Self::xattrs(meta, |n, v| rfs::fsetxattr(&fd, n, v, XattrFlags::empty()))?;
        let mut full = Vec::with_capacity(parent.len() + 1 + base.len());
        if !parent.is_empty() {
            full.extend_from_slice(parent);
            full.push(b'/');
        }
        full.extend_from_slice(base);
        self.dir_times.push((full, meta.mtime, meta.atime));
        if replaced {
            self.forget_cache();
        }
        Ok(())
    }

    pub fn file<R: Read>(
        &mut self,
        parent: &[u8],
        base: &[u8],
        meta: &Meta,
        data: &mut R,
        buf: &mut [u8],
    ) -> Result<u64, UnpackError> {
        let entry = meta.display.as_str();
        let name = with_nul(&mut self.cname, base).to_owned();
        let chmod = self.needs_chmod(meta.mode);
        let dir = self.parent(parent, entry)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let mut removed = false;
        let fd = match rfs::openat(dir, &name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                Self::clear_slot(dir, &name).map_err(io_err(entry, "remove the existing entry"))?;
                removed = true;
                rfs::openat(dir, &name, flags, mode).map_err(io_err(entry, "create the file"))?
            }
            Err(e) => return Err(io_err(entry, "create the file")(e)),
        };
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match data.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(UnpackError::Read {
                        entry: entry.to_string(),
                        source,
                    })
                }
            };
            file.write_all(&buf[..n])
                .map_err(|source| UnpackError::Io {
                    entry: entry.to_string(),
                    op: "write the file",
                    source,
                })?;
            written += n as u64;
        }
        if written != meta.size {
            return Err(UnpackError::Read {
                entry: entry.to_string(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("archive ends after {written} of {} bytes", meta.size),
                ),
            });
        }
        if self.keep_ownership {
            self.chown_fd(file.as_fd(), meta)?;
        }
        if chmod {
            rfs::fchmod(&file, Mode::from_raw_mode(meta.mode))
                .map_err(io_err(entry, "set the mode"))?;
        }
        Self::xattrs(meta, |n, v| {
            rfs::fsetxattr(&file, n, v, XattrFlags::empty())
        })?;
        rfs::futimens(&file, &timestamps(meta.mtime, meta.atime))
            .map_err(io_err(entry, "set the times"))?;
        if removed {
            self.forget_cache();
        }
        Ok(written)
    }

    pub fn symlink(&mut self, parent: &[u8], base: &[u8], meta: &Meta) -> Result<(), UnpackError> {
        let entry = meta.display.as_str();
        let name = cstring(base);
        let target = cstring(&meta.link);
        let keep = self.keep_ownership;
        let dir = self.parent(parent, entry)?;
        let removed = Self::create_replacing(dir, &name, || rfs::symlinkat(&target, dir, &name))
            .map_err(io_err(entry, "create the symlink"))?;
        Self::finish_node(keep, dir, &name, base, meta, false)?;
        if removed {
            self.forget_cache();
        }
        Ok(())
    }

    /// Owner, mode (not for symlinks), xattrs and times of a node that is not opened.
    fn finish_node(
        keep: bool,
        dir: BorrowedFd<'_>,
        name: &CStr,
        base: &[u8],
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        let entry = meta.display.as_str();
        Self::chown_at(keep, dir, name, meta)?;
        if chmod {
            rfs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(io_err(entry, "set the mode"))?;
        }
        Self::xattrs_at(dir, base, meta)?;
        rfs::utimensat(
            dir,
            name,
            &timestamps(meta.mtime, meta.atime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(entry, "set the times"))
    }

    pub fn node(&mut self, parent: &[u8], base: &[u8], meta: &Meta) -> Result<(), UnpackError> {
        let entry = meta.display.as_str();
        let name = cstring(base);
        let (ft, dev): (FileType, Dev) = match meta.kind {
            EntryKind::Char => (
                FileType::CharacterDevice,
                rfs::makedev(meta.dev_major, meta.dev_minor),
            ),
            EntryKind::Block => (
                FileType::BlockDevice,
                rfs::makedev(meta.dev_major, meta.dev_minor),
            ),
            _ => (FileType::Fifo, 0),
        };
        let keep = self.keep_ownership;
        let dir = self.parent(parent, entry)?;
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let removed = match Self::create_replacing(dir, &name, || {
            rfs::mknodat(dir, &name, ft, mode, dev)
        }) {
            Ok(removed) => removed,
            Err(Errno::PERM) if !keep && ft != FileType::Fifo => {
                tracing::warn!(entry = %entry, "cannot create a device node without privileges; skipped");
                return Ok(());
            }
            Err(e) => return Err(io_err(entry, "create the node")(e)),
        };
        Self::finish_node(keep, dir, &name, base, meta, true)?;
        if removed {
            self.forget_cache();
        }
        Ok(())
    }

    pub fn hardlink(
        &mut self,
        parent: &[u8],
        base: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let entry = meta.display.as_str();
        let missing = || UnpackError::MissingLinkTarget {
            entry: entry.to_string(),
            target: String::from_utf8_lossy(&meta.link).into_owned(),
        };
        let (tparent, tbase) = super::path::split(target);
        if tbase.is_empty() {
            return Err(missing());
        }
        let tname = cstring(tbase);
        // The target's parent, resolved inside the root; linkat does not follow the last
        // component, so a link to a symlink links the symlink itself.
        let tdir = if tparent.is_empty() {
            self.root.try_clone().map_err(|e| UnpackError::Io {
                entry: entry.to_string(),
                op: "duplicate the root fd",
                source: e,
            })?
        } else {
            match open_in_root(self.root.as_fd(), &cstring(tparent), DIR_PATH) {
                Ok(fd) => fd,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Err(missing()),
                Err(e) => return Err(io_err(entry, "open the hardlink target's directory")(e)),
            }
        };
        let tst = match rfs::statat(&tdir, &tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(io_err(entry, "inspect the hardlink target")(e)),
        };
        let name = cstring(base);
        let dir = self.parent(parent, entry)?;
        let mut removed = false;
        let mut r = rfs::linkat(&tdir, &tname, dir, &name, AtFlags::empty());
        if r == Err(Errno::EXIST) {
            let st = rfs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io_err(entry, "inspect the existing entry"))?;
            if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino {
                return Ok(()); // already that file
            }
            Self::clear_slot(dir, &name).map_err(io_err(entry, "remove the existing entry"))?;
            removed = true;
            r = rfs::linkat(&tdir, &tname, dir, &name, AtFlags::empty());
        }
        r.map_err(io_err(entry, "create the hardlink"))?;
        if removed {
            self.forget_cache();
        }
        Ok(())
    }

    /// `.wh.NAME` in `parent`: an overlay whiteout (0/0 character device) named NAME.
    pub fn whiteout(
        &mut self,
        parent: &[u8],
        hidden: &[u8],
        entry: &str,
    ) -> Result<(), UnpackError> {
        let name = cstring(hidden);
        let dir = self.parent(parent, entry)?;
        let dev = rfs::makedev(0, 0);
        let mut r = rfs::mknodat(dir, &name, FileType::CharacterDevice, Mode::empty(), dev);
        if r == Err(Errno::EXIST) {
            Self::clear_slot(dir, &name)
                .map_err(io_err(entry, "remove the entry the whiteout replaces"))?;
            r = rfs::mknodat(dir, &name, FileType::CharacterDevice, Mode::empty(), dev);
            self.forget_cache();
        }
        r.map_err(io_err(entry, "create the overlay whiteout"))
    }

    /// `.wh..wh..opq` in `parent`: mark the directory opaque for overlay.
    pub fn opaque(&mut self, parent: &[u8], entry: &str) -> Result<(), UnpackError> {
        let dir = self.parent(parent, entry)?;
        let fd = rfs::openat(
            dir,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(entry, "open the opaque directory"))?;
        rfs::fsetxattr(&fd, c"trusted.overlay.opaque", b"y", XattrFlags::empty()).map_err(io_err(
            entry,
            "set trusted.overlay.opaque (needs root and a filesystem with trusted xattrs)",
        ))
    }

    /// Sets the deferred directory times. Errors carry the directory's name.
    pub fn finish(&mut self) -> Result<(), (String, io::Error)> {
        self.forget_cache();
        let dirs = std::mem::take(&mut self.dir_times);
        for (path, mtime, atime) in &dirs {
            let (parent, base) = super::path::split(path);
            let shown = || String::from_utf8_lossy(path).into_owned();
            let fail = |e: Errno| (shown(), io::Error::from(e));
            let pfd;
            let dir = if parent.is_empty() {
                self.root.as_fd()
            } else {
                match open_in_root(self.root.as_fd(), &cstring(parent), DIR_PATH) {
                    Ok(fd) => {
                        pfd = fd;
                        pfd.as_fd()
                    }
                    // Removed or replaced by a later entry: nothing to do.
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
                    Err(e) => return Err(fail(e)),
                }
            };
            let name = cstring(base);
            match rfs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Ok(_) | Err(Errno::NOENT) => continue,
                Err(e) => return Err(fail(e)),
            }
            rfs::utimensat(
                dir,
                &name,
                &timestamps(*mtime, *atime),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(fail)?;
        }
        if let Some((mtime, atime)) = self.root_time {
            rfs::futimens(&self.root, &timestamps(mtime, atime))
                .map_err(|e| ("layer root".to_string(), e.into()))?;
        }
        Ok(())
    }
}

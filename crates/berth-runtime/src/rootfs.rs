//! The container's root filesystem, prepared by the init inside its new mount namespace:
//! propagation, the rootfs bind, the config's mounts in order, /dev, pivot_root, masked and
//! read-only paths.
//!
//! Every path inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)` from an fd on the
//! rootfs, so a symlink planted in the image can never point a mount at the host; mounts go onto
//! `/proc/self/fd/N` of the resolved O_PATH fd. Special files the runtime relies on (`/dev/null`
//! for masked paths, proc and sysfs mounts, the pty) are verified with fstat/fstatfs.
//!
//! Every system call goes through the [`Syscall`] trait: [`Linux`] in the init, a recording
//! mock in the unit tests, which check the mount plan of whole specs without root.

mod error;
mod syscall;

#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests;

pub use error::{RootfsError, Step};
pub use syscall::{BoxError, Linux, Syscall};

use crate::sys::{self, fd_path, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use error::StepCtx;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The result type of the root filesystem's set-up.
pub type Result<T> = std::result::Result<T, RootfsError>;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// What the rootfs setup needs to know besides the spec.
pub struct RootfsCtx<'a> {
    /// The spec.
    pub spec: &'a Spec,
    /// Absolute rootfs path (host view).
    pub root: &'a str,
    /// The container has (or joined) a user namespace: devices are bind-mounted, not mknod'ed.
    pub userns: bool,
    /// The container has a new cgroup namespace.
    pub cgroupns: bool,
    /// process.terminal is set: prepare /dev/console.
    pub terminal: bool,
    /// Idmapped trees prepared by the runtime: (mount index, fd).
    pub idmapped: &'a [(usize, std::os::fd::RawFd)],
    /// Waits until the process is in the container's cgroups (and in its cgroup namespace):
    /// needed before a cgroup2 mount in a cgroup namespace.
    pub enter_cgroup: &'a dyn Fn() -> std::result::Result<(), syscall::BoxError>,
    /// The container's directory in each cgroup hierarchy, by the hierarchy's mount point (from
    /// the runtime, so cgroup mounts need not wait until the init is in its cgroups).
    pub cgroup_dirs: &'a [(PathBuf, PathBuf)],
}

/// Normalizes a path inside the root lexically ("a/../b" -> "b"); "" is the root itself.
pub fn clean_rel(p: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// Opens `rel` inside the root (O_PATH), never leaving it.
pub fn open_in_root(rootfd: &OwnedFd, rel: &str) -> std::io::Result<OwnedFd> {
    open_in(&Linux, rootfd, rel)
}

/// [`open_in_root`] through `s`.
fn open_in(s: &dyn Syscall, rootfd: &OwnedFd, rel: &str) -> std::io::Result<OwnedFd> {
    let rel = if rel.is_empty() { "." } else { rel };
    s.openat2(
        rootfd.as_raw_fd(),
        rel,
        libc::O_PATH,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Creates every missing directory of `rel` inside the root, resolving inside it. A dangling
/// symlink on the way is followed inside the root (its target is created there), never out.
pub fn mkdir_all_in_root(rootfd: &OwnedFd, rel: &str) -> Result<OwnedFd> {
    mkdir_all(&Linux, rootfd, rel)
}

/// [`mkdir_all_in_root`] through `s`.
fn mkdir_all(s: &dyn Syscall, rootfd: &OwnedFd, rel: &str) -> Result<OwnedFd> {
    match open_in(s, rootfd, rel) {
        Ok(fd) => Ok(fd),
        Err(_) => mkdir_missing(s, rootfd, rel),
    }
}

/// [`mkdir_all_in_root`] for a `rel` that was just found missing.
fn mkdir_missing(s: &dyn Syscall, rootfd: &OwnedFd, rel: &str) -> Result<OwnedFd> {
    match mkdir_last(s, rootfd, rel) {
        Some(fd) => Ok(fd),
        None => mkdir_all_depth(s, rootfd, rel, 0),
    }
}

/// The common case in three system calls: only the last component of `rel` is missing. None
/// sends the caller down the component-by-component walk (which also reports errors and
/// follows a dangling symlink inside the root).
fn mkdir_last(s: &dyn Syscall, rootfd: &OwnedFd, rel: &str) -> Option<OwnedFd> {
    let rel = rel.trim_end_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    let pfd = open_in(s, rootfd, parent).ok()?;
    let cname = sys::cstr(name).ok()?;
    match s.mkdirat(pfd.as_raw_fd(), &cname, 0o755) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(_) => return None,
    }
    open_in(s, rootfd, rel).ok()
}

fn mkdir_all_depth(s: &dyn Syscall, rootfd: &OwnedFd, rel: &str, depth: u32) -> Result<OwnedFd> {
    if depth > 40 {
        return Err(RootfsError::TooManyLinks(rel.to_string()));
    }
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let mut cur = open_in(s, rootfd, "").step(|| Step::OpenRoot)?;
    for (i, part) in parts.iter().enumerate() {
        let prefix = parts[..=i].join("/");
        match open_in(s, rootfd, &prefix) {
            Ok(fd) => cur = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = sys::cstr(part).step(|| Step::BadPath)?;
                let exists = match s.mkdirat(cur.as_raw_fd(), &name, 0o755) {
                    Ok(()) => false,
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => true,
                    Err(e) => return Err(e).step(|| Step::Create(prefix)),
                };
                match open_in(s, rootfd, &prefix) {
                    Ok(fd) => cur = fd,
                    Err(e) if exists && e.raw_os_error() == Some(libc::ENOENT) => {
                        // A dangling symlink: create its target inside the root.
                        let buf = s
                            .readlinkat(cur.as_raw_fd(), &name)
                            .step(|| Step::ReadLink(prefix.clone()))?;
                        let target = String::from_utf8_lossy(&buf).into_owned();
                        let base = if target.starts_with('/') {
                            target
                        } else {
                            format!("/{}/{target}", parts[..i].join("/"))
                        };
                        let rest = parts[i + 1..].join("/");
                        let next = clean_rel(Path::new(&format!("{base}/{rest}")));
                        return mkdir_all_depth(s, rootfd, &next, depth + 1);
                    }
                    Err(e) => return Err(e).step(|| Step::Open(prefix)),
                }
            }
            Err(e) => return Err(e).step(|| Step::Open(prefix)),
        }
    }
    Ok(cur)
}

/// Opens (creating if missing: a directory, or an empty file when `dir` is false) a mount
/// target inside the root.
pub fn ensure_target(rootfd: &OwnedFd, rel: &str, dir: bool) -> Result<OwnedFd> {
    ensure(&Linux, rootfd, rel, dir)
}

/// [`ensure_target`] through `s`.
fn ensure(s: &dyn Syscall, rootfd: &OwnedFd, rel: &str, dir: bool) -> Result<OwnedFd> {
    ensure_depth(s, rootfd, rel, dir, 0)
}

/// [`ensure`], `depth` dangling symlinks down.
fn ensure_depth(
    s: &dyn Syscall,
    rootfd: &OwnedFd,
    rel: &str,
    dir: bool,
    depth: u32,
) -> Result<OwnedFd> {
    match open_in(s, rootfd, rel) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
            return Err(e).step(|| Step::OpenTarget(rel.to_string()))
        }
        Err(_) => {}
    }
    if dir {
        return mkdir_missing(s, rootfd, rel);
    }
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let pfd = mkdir_all(s, rootfd, parent)?;
    let cname = sys::cstr(name).step(|| Step::BadPath)?;
    match s.mknodat(pfd.as_raw_fd(), &cname, libc::S_IFREG | 0o644, 0) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // A dangling symlink (an image's /etc/resolv.conf -> ../run/...): create its
            // target inside the root, as runc does, and mount there.
            if let Ok(buf) = s.readlinkat(pfd.as_raw_fd(), &cname) {
                if depth > 40 {
                    return Err(RootfsError::TooManyLinks(rel.to_string()));
                }
                let target = String::from_utf8_lossy(&buf).into_owned();
                let next = match target.starts_with('/') {
                    true => clean_rel(Path::new(&target)),
                    false => clean_rel(Path::new(&format!("/{parent}/{target}"))),
                };
                return ensure_depth(s, rootfd, &next, dir, depth + 1);
            }
        }
        Err(e) => return Err(e).step(|| Step::Create(rel.to_string())),
    }
    open_in(s, rootfd, rel).step(|| Step::Open(rel.to_string()))
}

/// Parsed mount options.
#[derive(Default, Debug)]
pub struct Opts {
    /// MS_* flags to set.
    pub flags: libc::c_ulong,
    /// Propagation flags, applied after the mount.
    pub propagation: Vec<libc::c_ulong>,
    /// Filesystem-specific data.
    pub data: Vec<String>,
    /// The mount is a bind mount.
    pub bind: bool,
    /// Recursive read-only etc. (mount_setattr) attributes to set.
    pub rec_attr_set: u64,
    /// Recursive attributes to clear (rrw, rsuid, ...; the atime mode when one is set).
    pub rec_attr_clr: u64,
    /// A tmpfs starts with a copy of the directory it covers ([`crate::copyup`]).
    pub tmpcopyup: bool,
}

/// `MOUNT_ATTR_*` bits for the recursive options (linux/mount.h).
mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const ATIME_MASK: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x20_0000;
}

/// The recursive (`mount_setattr`) options the runtime-spec lists: (name, clear?, attribute).
const REC_OPTS: [(&str, bool, u64); 12] = [
    ("rro", false, attr::RDONLY),
    ("rrw", true, attr::RDONLY),
    ("rnosuid", false, attr::NOSUID),
    ("rsuid", true, attr::NOSUID),
    ("rnodev", false, attr::NODEV),
    ("rdev", true, attr::NODEV),
    ("rnoexec", false, attr::NOEXEC),
    ("rexec", true, attr::NOEXEC),
    ("rnodiratime", false, attr::NODIRATIME),
    ("rdiratime", true, attr::NODIRATIME),
    ("rnosymfollow", false, attr::NOSYMFOLLOW),
    ("rsymfollow", true, attr::NOSYMFOLLOW),
];

/// The recursive atime options: the kernel takes one atime mode, replacing the whole field;
/// the negative ones go back to the default (relatime).
const REC_ATIME: [(&str, u64); 6] = [
    ("rrelatime", attr::RELATIME),
    ("rnorelatime", attr::RELATIME),
    ("rnoatime", attr::NOATIME),
    ("ratime", attr::RELATIME),
    ("rstrictatime", attr::STRICTATIME),
    ("rnostrictatime", attr::RELATIME),
];

/// Applies a recursive option to `o`; false when `opt` is not one.
fn rec_option(o: &mut Opts, opt: &str) -> bool {
    if let Some((_, clear, a)) = REC_OPTS.iter().find(|(n, _, _)| *n == opt) {
        if *clear {
            o.rec_attr_clr |= a;
            o.rec_attr_set &= !a;
        } else {
            o.rec_attr_set |= a;
            o.rec_attr_clr &= !a;
        }
        return true;
    }
    if let Some((_, mode)) = REC_ATIME.iter().find(|(n, _)| *n == opt) {
        o.rec_attr_clr |= attr::ATIME_MASK;
        o.rec_attr_set = (o.rec_attr_set & !attr::ATIME_MASK) | mode;
        return true;
    }
    false
}
/// Parses OCI/fstab mount options into flags and data.
pub fn parse_options(opts: &[String]) -> Opts {
    let mut o = Opts::default();
    for opt in opts {
        if rec_option(&mut o, opt) {
            continue;
        }
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "defaults" => (0, 0),
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "suid" => (0, libc::MS_NOSUID),
            "nosuid" => (libc::MS_NOSUID, 0),
            "dev" => (0, libc::MS_NODEV),
            "nodev" => (libc::MS_NODEV, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "noexec" => (libc::MS_NOEXEC, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "silent" => (libc::MS_SILENT, 0),
            "loud" => (0, libc::MS_SILENT),
            "lazytime" => (libc::MS_LAZYTIME, 0),
            "nolazytime" => (0, libc::MS_LAZYTIME),
            "iversion" => (libc::MS_I_VERSION, 0),
            "noiversion" => (0, libc::MS_I_VERSION),
            "nosymfollow" => (libc::MS_NOSYMFOLLOW, 0),
            "symfollow" => (0, libc::MS_NOSYMFOLLOW),
            "bind" => {
                o.bind = true;
                (libc::MS_BIND, 0)
            }
            "rbind" => {
                o.bind = true;
                (libc::MS_BIND | libc::MS_REC, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation.push(propagation_flags(opt));
                (0, 0)
            }
            "tmpcopyup" => {
                o.tmpcopyup = true;
                (0, 0)
            }
            "notmpcopyup" => {
                o.tmpcopyup = false;
                (0, 0)
            }
            "idmap" | "ridmap" | "copy-symlink" => (0, 0),
            other => {
                o.data.push(other.to_string());
                (0, 0)
            }
        };
        o.flags = (o.flags | set) & !clear;
    }
    o
}

fn propagation_flags(p: &str) -> libc::c_ulong {
    match p {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => libc::MS_SLAVE | libc::MS_REC,
    }
}

/// linux.rootfsPropagation as mount flags (default rslave, as runc).
fn root_propagation(spec: &Spec) -> libc::c_ulong {
    spec.linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .filter(|p| !p.is_empty())
        .map(|p| propagation_flags(&p))
        .unwrap_or(libc::MS_SLAVE | libc::MS_REC)
}

/// Steps before pivot_root: propagation, rootfs bind, mounts, /dev.
pub fn prepare(c: &RootfsCtx) -> Result<()> {
    prepare_with(&Linux, c)
}

/// [`prepare`] through `s`.
pub fn prepare_with(s: &dyn Syscall, c: &RootfsCtx) -> Result<()> {
    let mut prop = root_propagation(c.spec);
    if prop & libc::MS_UNBINDABLE != 0 {
        // Unbindable is applied to the new root after pivot_root (a bind from an unbindable
        // mount is refused); set up under the default.
        prop = libc::MS_SLAVE | libc::MS_REC;
    }
    s.mount(None, "/", None, prop, None)
        .step(|| Step::RootPropagation)?;
    if prop & libc::MS_SHARED != 0 {
        make_parent_private(s, c.root)?;
    }
    s.mount(
        Some(c.root),
        c.root,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .step(|| Step::BindRootfs(c.root.to_string()))?;
    let rootfd = s
        .open(c.root, libc::O_PATH | libc::O_DIRECTORY, 0)
        .step(|| Step::OpenRootfs(c.root.to_string()))?;
    let mounts = c.spec.mounts().clone().unwrap_or_default();
    let mut dev_bound = false;
    let mut devpts = false;
    for (i, m) in mounts.iter().enumerate() {
        let rel = clean_rel(m.destination());
        let o = parse_options(m.options().as_deref().unwrap_or(&[]));
        if rel == "dev" && (o.bind || m.typ().as_deref() == Some("bind")) {
            dev_bound = true;
        }
        if rel == "dev/pts" {
            devpts = true;
        }
        let tree = c.idmapped.iter().find(|(j, _)| *j == i).map(|(_, fd)| *fd);
        crate::debug!(
            "mount {} on {} (type {}, options {:?})",
            m.source().as_deref().unwrap_or(Path::new("")).display(),
            m.destination().display(),
            m.typ().as_deref().unwrap_or("none"),
            m.options().as_deref().unwrap_or_default()
        );
        mount_one(s, c, &rootfd, m, &rel, o, tree).map_err(|e| RootfsError::Mount {
            dest: m.destination().clone(),
            typ: m.typ().as_deref().unwrap_or("bind").to_string(),
            source: Box::new(e),
        })?;
    }
    if !dev_bound {
        setup_dev(s, c, &rootfd, devpts)?;
        crate::debug!("default devices and /dev symlinks created");
    }
    Ok(())
}

fn make_parent_private(s: &dyn Syscall, root: &str) -> Result<()> {
    // The mount containing the rootfs must not be shared for pivot_root.
    let info = s
        .read_to_string("/proc/self/mountinfo")
        .step(|| Step::ReadMountinfo)?;
    let mut best = "/".to_string();
    for l in info.lines() {
        if let Some(mp) = l.split(' ').nth(4) {
            if (root.starts_with(mp) && (mp == "/" || root[mp.len()..].starts_with('/')))
                && mp.len() > best.len()
            {
                best = mp.to_string();
            }
        }
    }
    s.mount(None, &best, None, libc::MS_PRIVATE, None)
        .step(|| Step::MakePrivate(best.clone()))
}

fn is_bind(m: &Mount, o: &Opts) -> bool {
    o.bind || m.typ().as_deref() == Some("bind")
}

fn mount_one(
    s: &dyn Syscall,
    c: &RootfsCtx,
    rootfd: &OwnedFd,
    m: &Mount,
    rel: &str,
    o: Opts,
    idmapped: Option<std::os::fd::RawFd>,
) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("none");
    if is_bind(m, &o) {
        let Some(src) = m.source().as_ref() else {
            return Err(RootfsError::BindWithoutSource);
        };
        let src = src.to_str().unwrap_or_default();
        let is_dir = s.is_dir(src).step(|| Step::BindSource(src.to_string()))?;
        let target = ensure(s, rootfd, rel, is_dir)?;
        let rec = o.flags & libc::MS_REC;
        match idmapped {
            Some(tree) => s.attach_tree(tree, &target).map_err(RootfsError::Idmap)?,
            None => s
                .mount(
                    Some(src),
                    &fd_path(&target),
                    None,
                    libc::MS_BIND | rec,
                    None,
                )
                .step(|| Step::Bind(src.to_string()))?,
        }
        let target = open_in(s, rootfd, rel).step(|| Step::Reopen)?;
        let extra = o.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            remount(s, &fd_path(&target), extra)?;
        }
        finish(s, &target, &o)?;
        return Ok(());
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(s, c, rootfd, rel, &o);
    }
    let target = ensure(s, rootfd, rel, true)?;
    let src = m
        .source()
        .as_ref()
        .and_then(|s| s.to_str())
        .unwrap_or(typ)
        .to_string();
    let data = o.data.join(",");
    // tmpcopyup: the directory as it is, opened before the tmpfs hides it.
    let covered = if typ == "tmpfs" && o.tmpcopyup {
        Some(
            s.open_dir(&target)
                .step(|| Step::OpenCovered(rel.to_string()))?,
        )
    } else {
        None
    };
    let r = s.mount(
        Some(&src),
        &fd_path(&target),
        Some(typ),
        o.flags,
        Some(&data),
    );
    match r {
        Ok(()) => {}
        Err(e) if typ == "sysfs" && c.userns && e.raw_os_error() == Some(libc::EPERM) => {
            // A user namespace without its own network namespace may not mount sysfs: bind it.
            s.mount(
                Some("/sys"),
                &fd_path(&target),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .step(|| Step::BindSys)?;
            let t = open_in(s, rootfd, rel).step(|| Step::Reopen)?;
            remount(s, &fd_path(&t), o.flags)?;
        }
        Err(e) => {
            return Err(e).step(|| Step::MountFs {
                typ: typ.to_string(),
                src,
                data,
            })
        }
    }
    let target = open_in(s, rootfd, rel).step(|| Step::Reopen)?;
    if let Some(covered) = covered {
        let tmpfs = s
            .open_dir(&target)
            .step(|| Step::OpenTmpfs(rel.to_string()))?;
        s.copy_dir(covered.as_fd(), tmpfs.as_fd())
            .map_err(|source| RootfsError::Copyup {
                rel: rel.to_string(),
                source,
            })?;
    }
    let magic = match typ {
        "proc" => Some(PROC_SUPER_MAGIC),
        "sysfs" => Some(SYSFS_MAGIC),
        "devpts" => Some(DEVPTS_SUPER_MAGIC),
        _ => None,
    };
    if let Some(want) = magic {
        let got = s.fstatfs_type(target.as_raw_fd()).step(|| Step::Statfs)?;
        if got != want && !(typ == "sysfs" && c.userns) {
            return Err(RootfsError::Raced {
                rel: rel.to_string(),
                typ: typ.to_string(),
            });
        }
    }
    finish(s, &target, &o)
}

fn remount(s: &dyn Syscall, path: &str, flags: libc::c_ulong) -> Result<()> {
    let f = flags | libc::MS_REMOUNT | libc::MS_BIND;
    match s.mount(None, path, None, f, None) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // Locked flags (from a less privileged mount namespace) must be kept.
            let cur = s.mount_flags_of(path).step(|| Step::Statvfs)?;
            s.mount(None, path, None, f | cur, None)
                .step(|| Step::Remount)
        }
        Err(e) => Err(e).step(|| Step::Remount),
    }
}

fn finish(s: &dyn Syscall, target: &OwnedFd, o: &Opts) -> Result<()> {
    for p in &o.propagation {
        s.mount(None, &fd_path(target), None, *p, None)
            .step(|| Step::Propagation)?;
    }
    if o.rec_attr_set != 0 || o.rec_attr_clr != 0 {
        set_attr_tree(s, target, o.rec_attr_set, o.rec_attr_clr)?;
    }
    Ok(())
}

/// Sets and clears the `MOUNT_ATTR_*` bits `set` and `clr` (the recursive options: `rro`,
/// `rnosuid`, ...) on the mount `target` and every mount below it: one
/// `mount_setattr(AT_RECURSIVE)`, or, on a kernel without it (ENOSYS, before 5.12), a
/// remount of each mount of the tree in turn, so that a read-only bind is never writable
/// in a submount.
fn set_attr_tree(s: &dyn Syscall, target: &OwnedFd, set: u64, clr: u64) -> Result<()> {
    match s.mount_setattr(target.as_raw_fd(), true, set, clr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => remount_tree(s, target, set, clr),
        r => r.step(|| Step::SetAttr),
    }
}

/// [`set_attr_tree`] without `mount_setattr`: the tree's mounts are found in mountinfo by
/// mount id (the target's, then their children's), each opened below the target without
/// following symlinks, checked to be that very mount (a mount covered by another at the same
/// place cannot be reached, and is skipped), and remounted with its current flags (some may
/// be locked) changed as the attributes say.
fn remount_tree(s: &dyn Syscall, target: &OwnedFd, set: u64, clr: u64) -> Result<()> {
    let top = s.mount_id(target.as_raw_fd()).step(|| Step::MountId)?;
    let info = s
        .read_to_string("/proc/self/mountinfo")
        .step(|| Step::ReadMountinfo)?;
    let tree = mount_tree(&info, top);
    let top_path = tree.first().map_or("", |(_, p)| p.as_str());
    crate::debug!(
        "mount_setattr missing: remounting {} mounts under {top_path}",
        tree.len()
    );
    for (id, path) in &tree {
        let rel = path
            .strip_prefix(top_path)
            .unwrap_or(path)
            .trim_start_matches('/');
        let fd = if rel.is_empty() {
            None
        } else {
            let fd = s
                .openat2(
                    target.as_raw_fd(),
                    rel,
                    libc::O_PATH,
                    0,
                    RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | sys::RESOLVE_NO_SYMLINKS,
                )
                .step(|| Step::OpenSubmount(path.clone()))?;
            if s.mount_id(fd.as_raw_fd()).step(|| Step::MountId)? != *id {
                crate::debug!("{path}: covered by another mount, not reachable");
                continue;
            }
            Some(fd)
        };
        let at = fd_path(fd.as_ref().unwrap_or(target));
        let cur = s.mount_flags_of(&at).step(|| Step::Statvfs)?;
        let flags = attr_flags(cur, set, clr) | libc::MS_REMOUNT | libc::MS_BIND;
        s.mount(None, &at, None, flags, None)
            .step(|| Step::RemountSubmount(path.clone()))?;
    }
    Ok(())
}

/// The mounts of the tree whose top has mount id `top` in a mountinfo text, as (id, mount
/// point): the top first, every parent before its children. Empty when `top` is not there.
fn mount_tree(info: &str, top: u64) -> Vec<(u64, String)> {
    let all: Vec<(u64, u64, String)> = info
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let id = f.next()?.parse().ok()?;
            let parent = f.next()?.parse().ok()?;
            let point = f.nth(2)?;
            let point = berth_sys::mountinfo::unescape(point);
            Some((id, parent, point.to_string_lossy().into_owned()))
        })
        .collect();
    let mut out: Vec<(u64, String)> = all
        .iter()
        .find(|(id, _, _)| *id == top)
        .map(|(id, _, p)| (*id, p.clone()))
        .into_iter()
        .collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].0;
        for (id, p, point) in &all {
            if *p == parent && *id != parent && !out.iter().any(|(o, _)| o == id) {
                out.push((*id, point.clone()));
            }
        }
        i += 1;
    }
    out
}

/// A mount's MS_* flags `cur` changed as the `MOUNT_ATTR_*` bits `set` and `clr` say.
fn attr_flags(cur: libc::c_ulong, set: u64, clr: u64) -> libc::c_ulong {
    const BITS: [(u64, libc::c_ulong); 6] = [
        (attr::RDONLY, libc::MS_RDONLY),
        (attr::NOSUID, libc::MS_NOSUID),
        (attr::NODEV, libc::MS_NODEV),
        (attr::NOEXEC, libc::MS_NOEXEC),
        (attr::NODIRATIME, libc::MS_NODIRATIME),
        (attr::NOSYMFOLLOW, libc::MS_NOSYMFOLLOW),
    ];
    let mut f = cur;
    for (a, ms) in BITS {
        if clr & a != 0 {
            f &= !ms;
        }
        if set & a != 0 {
            f |= ms;
        }
    }
    if clr & attr::ATIME_MASK != 0 {
        f &= !(libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME);
        f |= match set & attr::ATIME_MASK {
            attr::NOATIME => libc::MS_NOATIME,
            attr::STRICTATIME => libc::MS_STRICTATIME,
            _ => libc::MS_RELATIME,
        };
    }
    f
}

fn mount_cgroup(
    s: &dyn Syscall,
    c: &RootfsCtx,
    rootfd: &OwnedFd,
    rel: &str,
    o: &Opts,
) -> Result<()> {
    let target = ensure(s, rootfd, rel, true)?;
    let info = s
        .read_to_string("/proc/self/mountinfo")
        .step(|| Step::ReadMountinfo)?;
    let mounts = crate::cgroups::mountinfo::parse_mountinfo(&info);
    let own = s
        .read_to_string("/proc/self/cgroup")
        .step(|| Step::ReadProcCgroup)?;
    let own = crate::cgroups::mountinfo::parse_proc_cgroup(&own);
    let flags = o.flags & !libc::MS_RDONLY;
    let pure_v2 = mounts
        .iter()
        .any(|m| m.v2 && m.mount_point == Path::new("/sys/fs/cgroup"));
    if pure_v2 {
        // Born in its cgroup (CLONE_INTO_CGROUP): the runtime's go-ahead comes at once.
        (c.enter_cgroup)().map_err(RootfsError::Cgroup)?;
        if c.cgroupns {
            s.mount(
                Some("cgroup2"),
                &fd_path(&target),
                Some("cgroup2"),
                o.flags,
                None,
            )
            .step(|| Step::MountCgroup2)?;
        } else {
            let p = own.get("").cloned().unwrap_or_default();
            let src = match c
                .cgroup_dirs
                .iter()
                .find(|(mp, _)| mp == Path::new("/sys/fs/cgroup"))
            {
                Some((_, dir)) => dir.display().to_string(),
                None => format!("/sys/fs/cgroup{}", if p == "/" { "" } else { &p }),
            };
            s.mount(
                Some(&src),
                &fd_path(&target),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .step(|| Step::Bind(src.clone()))?;
            let t = open_in(s, rootfd, rel).step(|| Step::Reopen)?;
            remount(s, &fd_path(&t), o.flags)?;
        }
        return Ok(());
    }
    s.mount(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .step(|| Step::CgroupTmpfs)?;
    for m in &mounts {
        if !m.mount_point.starts_with("/sys/fs/cgroup") {
            continue;
        }
        let Some(name) = m.mount_point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let sub_rel = format!("{rel}/{name}");
        let sub = ensure(s, rootfd, &sub_rel, true)?;
        let key = if m.v2 {
            String::new()
        } else {
            m.controllers.first().cloned().unwrap_or_default()
        };
        let own_path = own.get(&key).cloned().unwrap_or_else(|| "/".into());
        // The container's own directory, bound in: inside its cgroup namespace this is the
        // same view a fresh cgroup mount gives, and it needs the init neither in its cgroups
        // nor in that namespace yet. Hierarchies without a container directory show the
        // init's cgroup there (the runtime's).
        {
            let rest = match own_path.strip_prefix(m.root.trim_end_matches('/')) {
                Some(r) if r.is_empty() || r.starts_with('/') => r,
                _ => own_path.as_str(),
            };
            let src = match c.cgroup_dirs.iter().find(|(mp, _)| *mp == m.mount_point) {
                Some((_, dir)) => dir.display().to_string(),
                None => format!("{}{}", m.mount_point.display(), rest.trim_end_matches('/')),
            };
            s.mount(
                Some(&src),
                &fd_path(&sub),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .step(|| Step::Bind(src.clone()))?;
            let sfd = open_in(s, rootfd, &sub_rel).step(|| Step::Reopen)?;
            remount(s, &fd_path(&sfd), o.flags)?;
        }
        if m.controllers.len() > 1 {
            for ctl in &m.controllers {
                if ctl == name {
                    continue;
                }
                let dfd = open_in(s, rootfd, rel).step(|| Step::Reopen)?;
                let _ = symlinkat(s, name, &dfd, ctl);
            }
        }
    }
    if o.flags & libc::MS_RDONLY != 0 {
        let t = open_in(s, rootfd, rel).step(|| Step::Reopen)?;
        s.mount(
            None,
            &fd_path(&t),
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | flags,
            None,
        )
        .step(|| Step::CgroupTmpfsReadOnly)?;
    }
    Ok(())
}

fn symlinkat(s: &dyn Syscall, target: &str, dir: &OwnedFd, name: &str) -> std::io::Result<()> {
    let t = sys::cstr(target)?;
    let n = sys::cstr(name)?;
    s.symlinkat(&t, dir.as_raw_fd(), &n)
}

fn default_devices() -> Vec<(&'static str, u32, u32)> {
    vec![
        ("dev/null", 1, 3),
        ("dev/zero", 1, 5),
        ("dev/full", 1, 7),
        ("dev/random", 1, 8),
        ("dev/urandom", 1, 9),
        ("dev/tty", 5, 0),
    ]
}

fn setup_dev(s: &dyn Syscall, c: &RootfsCtx, rootfd: &OwnedFd, devpts: bool) -> Result<()> {
    for (p, maj, min) in default_devices() {
        make_device(s, c, rootfd, p, libc::S_IFCHR, maj, min, 0o666, 0, 0)?;
    }
    if let Some(devs) = c.spec.linux().as_ref().and_then(|l| l.devices().as_ref()) {
        for d in devs {
            add_device(s, c, rootfd, d)?;
        }
    }
    let dev = mkdir_all(s, rootfd, "dev")?;
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        let _ = symlinkat(s, target, &dev, name);
    }
    if s.exists("/proc/kcore") {
        let _ = symlinkat(s, "/proc/kcore", &dev, "core");
    }
    if devpts {
        let _ = s.unlinkat(dev.as_raw_fd(), c"ptmx", 0);
        symlinkat(s, "pts/ptmx", &dev, "ptmx").step(|| Step::DevPtmx)?;
    }
    if c.terminal {
        ensure(s, rootfd, "dev/console", false)?;
    }
    Ok(())
}

fn add_device(s: &dyn Syscall, c: &RootfsCtx, rootfd: &OwnedFd, d: &LinuxDevice) -> Result<()> {
    let rel = clean_rel(d.path());
    if !rel.starts_with("dev/") {
        return Err(RootfsError::DeviceOutsideDev(d.path().clone()));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => return Err(RootfsError::DeviceTypeAll(d.path().clone())),
    };
    let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
    let (maj, min) = (d.major() as u32, d.minor() as u32);
    // A file already there must be this very device (config-linux.md); never replace another.
    if let Ok(fd) = s.openat2(
        rootfd.as_raw_fd(),
        &rel,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    ) {
        let st = s
            .fstat(fd.as_raw_fd())
            .step(|| Step::FstatDevice(rel.clone()))?;
        let same = st.st_mode & libc::S_IFMT == kind
            && (kind == libc::S_IFIFO || st.st_rdev == libc::makedev(maj, min));
        if same {
            return Ok(());
        }
        return Err(RootfsError::DeviceExists(d.path().clone()));
    }
    make_device(
        s,
        c,
        rootfd,
        &rel,
        kind,
        maj,
        min,
        mode,
        d.uid().unwrap_or(0),
        d.gid().unwrap_or(0),
    )
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    s: &dyn Syscall,
    c: &RootfsCtx,
    rootfd: &OwnedFd,
    rel: &str,
    kind: libc::mode_t,
    maj: u32,
    min: u32,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let pfd = mkdir_all(s, rootfd, parent)?;
    let cname = sys::cstr(name).step(|| Step::BadDeviceName)?;
    if c.userns {
        let target = ensure(s, rootfd, rel, false)?;
        let host = format!("/{rel}");
        return s
            .mount(Some(&host), &fd_path(&target), None, libc::MS_BIND, None)
            .step(|| Step::BindDevice(host.clone()));
    }
    let _ = s.unlinkat(pfd.as_raw_fd(), &cname, 0);
    s.mknodat(
        pfd.as_raw_fd(),
        &cname,
        kind | mode,
        libc::makedev(maj, min),
    )
    .step(|| Step::Mknod(rel.to_string()))?;
    s.fchownat(pfd.as_raw_fd(), &cname, uid, gid, libc::AT_SYMLINK_NOFOLLOW)
        .step(|| Step::Chown(rel.to_string()))
}

/// Switches the root: pivot_root (detaching the old root) or, with `no_pivot`, MS_MOVE + chroot.
pub fn switch_root(root: &str, no_pivot: bool) -> Result<()> {
    switch_root_with(&Linux, root, no_pivot)
}

/// [`switch_root`] through `s`.
pub fn switch_root_with(s: &dyn Syscall, root: &str, no_pivot: bool) -> Result<()> {
    let r = sys::cstr(root).step(|| Step::BadRootPath)?;
    s.chdir(&r).step(|| Step::Chdir(root.to_string()))?;
    if no_pivot {
        s.mount(Some(root), "/", None, libc::MS_MOVE, None)
            .step(|| Step::MoveRoot)?;
        s.chroot(c".").step(|| Step::Chroot)?;
    } else {
        let old = s
            .open("/", libc::O_DIRECTORY | libc::O_RDONLY, 0)
            .step(|| Step::OpenSlash)?;
        s.pivot_root(c".", c".")
            .step(|| Step::PivotRoot(root.to_string()))?;
        s.fchdir(old.as_raw_fd()).step(|| Step::FchdirOldRoot)?;
        s.mount(None, ".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .step(|| Step::OldRootSlave)?;
        s.umount2(".", libc::MNT_DETACH)
            .step(|| Step::DetachOldRoot)?;
    }
    s.chdir(c"/").step(|| Step::ChdirSlash)?;
    Ok(())
}

/// After the root switch: masked paths, read-only paths, read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    finalize_with(&Linux, spec)
}

/// [`finalize`] through `s`.
pub fn finalize_with(s: &dyn Syscall, spec: &Spec) -> Result<()> {
    let rootfd = s
        .open("/", libc::O_PATH | libc::O_DIRECTORY, 0)
        .step(|| Step::OpenSlash)?;
    if let Some(l) = spec.linux() {
        crate::debug!(
            "masking {} paths, {} read-only paths",
            l.masked_paths().as_ref().map_or(0, Vec::len),
            l.readonly_paths().as_ref().map_or(0, Vec::len)
        );
        if let Some(masked) = l.masked_paths() {
            if !masked.is_empty() {
                let null = dev_null(s)?;
                for p in masked {
                    mask_path(s, &rootfd, &null, p)?;
                }
            }
        }
        if let Some(ro) = l.readonly_paths() {
            for p in ro {
                readonly_path(s, &rootfd, p)?;
            }
        }
    }
    // The requested propagation applies to the container's root mount, after pivot_root.
    let requested = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_ref())
        .is_some_and(|p| !p.is_empty());
    if requested {
        s.mount(None, "/", None, root_propagation(spec), None)
            .step(|| Step::ApplyPropagation)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount(s, "/", libc::MS_RDONLY).map_err(|e| RootfsError::ReadOnlyRoot(Box::new(e)))?;
    }
    Ok(())
}

/// Opens /dev/null without following symlinks and checks it is the real character device 1:3.
pub fn verified_dev_null() -> Result<OwnedFd> {
    dev_null(&Linux)
}

/// [`verified_dev_null`] through `s`.
fn dev_null(s: &dyn Syscall) -> Result<OwnedFd> {
    let fd = s
        .openat2(
            libc::AT_FDCWD,
            "/dev/null",
            libc::O_PATH,
            0,
            sys::RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        )
        .step(|| Step::OpenDevNull)?;
    let st = s.fstat(fd.as_raw_fd()).step(|| Step::FstatDevNull)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR
        || libc::major(st.st_rdev) != 1
        || libc::minor(st.st_rdev) != 3
    {
        return Err(RootfsError::NotNullDevice);
    }
    Ok(fd)
}

fn mask_path(s: &dyn Syscall, rootfd: &OwnedFd, null: &OwnedFd, p: &str) -> Result<()> {
    let rel = clean_rel(Path::new(p));
    let fd = match open_in(s, rootfd, &rel) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).step(|| Step::OpenMasked(p.to_string())),
    };
    let st = s
        .fstat(fd.as_raw_fd())
        .step(|| Step::FstatMasked(p.to_string()))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        s.mount(
            Some("tmpfs"),
            &fd_path(&fd),
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        )
        .step(|| Step::MaskTmpfs(p.to_string()))
    } else {
        s.mount(
            Some(&fd_path(null)),
            &fd_path(&fd),
            None,
            libc::MS_BIND,
            None,
        )
        .step(|| Step::MaskNull(p.to_string()))
    }
}

fn readonly_path(s: &dyn Syscall, rootfd: &OwnedFd, p: &str) -> Result<()> {
    let rel = clean_rel(Path::new(p));
    let fd = match open_in(s, rootfd, &rel) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).step(|| Step::OpenReadonly(p.to_string())),
    };
    s.mount(
        Some(&fd_path(&fd)),
        &fd_path(&fd),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .step(|| Step::BindReadonly(p.to_string()))?;
    let fd = open_in(s, rootfd, &rel).step(|| Step::ReopenReadonly(p.to_string()))?;
    remount(
        s,
        &fd_path(&fd),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )
    .map_err(|e| RootfsError::ReadOnlyPath {
        path: p.to_string(),
        source: Box::new(e),
    })
}

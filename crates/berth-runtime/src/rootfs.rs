//! The container's root filesystem, prepared by the init inside its new mount namespace:
//! propagation, the rootfs bind, the config's mounts in order, /dev, pivot_root, masked and
//! read-only paths.
//!
//! Every path inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)` from an fd on the
//! rootfs, so a symlink planted in the image can never point a mount at the host; mounts go onto
//! `/proc/self/fd/N` of the resolved O_PATH fd. Special files the runtime relies on (`/dev/null`
//! for masked paths, proc and sysfs mounts, the pty) are verified with fstat/fstatfs.

use crate::bail;
use crate::error::{Ctx, Error, Result};
use crate::sys::{self, fd_path, openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

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
    pub enter_cgroup: &'a dyn Fn() -> Result<()>,
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
    let rel = if rel.is_empty() { "." } else { rel };
    openat2(
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
    match open_in_root(rootfd, rel) {
        Ok(fd) => Ok(fd),
        Err(_) => mkdir_missing(rootfd, rel),
    }
}

/// [`mkdir_all_in_root`] for a `rel` that was just found missing.
fn mkdir_missing(rootfd: &OwnedFd, rel: &str) -> Result<OwnedFd> {
    match mkdir_last(rootfd, rel) {
        Some(fd) => Ok(fd),
        None => mkdir_all_depth(rootfd, rel, 0),
    }
}

/// The common case in three system calls: only the last component of `rel` is missing. None
/// sends the caller down the component-by-component walk (which also reports errors and
/// follows a dangling symlink inside the root).
fn mkdir_last(rootfd: &OwnedFd, rel: &str) -> Option<OwnedFd> {
    let rel = rel.trim_end_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    let pfd = open_in_root(rootfd, parent).ok()?;
    let cname = sys::cstr(name).ok()?;
    // SAFETY: O_PATH dir fd and a valid C string.
    let r = unsafe { libc::mkdirat(pfd.as_raw_fd(), cname.as_ptr(), 0o755) };
    if r != 0 && sys::last().raw_os_error() != Some(libc::EEXIST) {
        return None;
    }
    open_in_root(rootfd, rel).ok()
}

fn mkdir_all_depth(rootfd: &OwnedFd, rel: &str, depth: u32) -> Result<OwnedFd> {
    if depth > 40 {
        bail!("too many levels of symbolic links creating /{rel} in the rootfs");
    }
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let mut cur = open_in_root(rootfd, "").ctx(|| "opening the rootfs")?;
    for (i, part) in parts.iter().enumerate() {
        let prefix = parts[..=i].join("/");
        match open_in_root(rootfd, &prefix) {
            Ok(fd) => cur = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = sys::cstr(part).ctx(|| "bad path")?;
                // SAFETY: O_PATH dir fd and a valid C string.
                let r = unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) };
                let exists = r != 0 && sys::last().raw_os_error() == Some(libc::EEXIST);
                if r != 0 && !exists {
                    return Err(sys::last()).ctx(|| format!("creating /{prefix} in the rootfs"));
                }
                match open_in_root(rootfd, &prefix) {
                    Ok(fd) => cur = fd,
                    Err(e) if exists && e.raw_os_error() == Some(libc::ENOENT) => {
                        // A dangling symlink: create its target inside the root.
                        let mut buf = vec![0u8; 4096];
                        // SAFETY: valid fd, C string and buffer.
                        let n = unsafe {
                            libc::readlinkat(
                                cur.as_raw_fd(),
                                name.as_ptr(),
                                buf.as_mut_ptr().cast(),
                                buf.len(),
                            )
                        };
                        if n < 0 {
                            return Err(sys::last())
                                .ctx(|| format!("reading the symlink /{prefix} in the rootfs"));
                        }
                        buf.truncate(n as usize);
                        let target = String::from_utf8_lossy(&buf).into_owned();
                        let base = if target.starts_with('/') {
                            target
                        } else {
                            format!("/{}/{target}", parts[..i].join("/"))
                        };
                        let rest = parts[i + 1..].join("/");
                        let next = clean_rel(Path::new(&format!("{base}/{rest}")));
                        return mkdir_all_depth(rootfd, &next, depth + 1);
                    }
                    Err(e) => return Err(e).ctx(|| format!("opening /{prefix} in the rootfs")),
                }
            }
            Err(e) => return Err(e).ctx(|| format!("opening /{prefix} in the rootfs")),
        }
    }
    Ok(cur)
}

/// Opens (creating if missing: a directory, or an empty file when `dir` is false) a mount
/// target inside the root.
pub fn ensure_target(rootfd: &OwnedFd, rel: &str, dir: bool) -> Result<OwnedFd> {
    match open_in_root(rootfd, rel) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
            return Err(e).ctx(|| format!("opening mount target /{rel} in the rootfs"))
        }
        Err(_) => {}
    }
    if dir {
        return mkdir_missing(rootfd, rel);
    }
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let pfd = mkdir_all_in_root(rootfd, parent)?;
    let cname = sys::cstr(name).ctx(|| "bad path")?;
    // SAFETY: valid fd and C string.
    let r = unsafe { libc::mknodat(pfd.as_raw_fd(), cname.as_ptr(), libc::S_IFREG | 0o644, 0) };
    if r != 0 && sys::last().raw_os_error() != Some(libc::EEXIST) {
        return Err(sys::last()).ctx(|| format!("creating /{rel} in the rootfs"));
    }
    open_in_root(rootfd, rel).ctx(|| format!("opening /{rel} in the rootfs"))
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
    let mut prop = root_propagation(c.spec);
    if prop & libc::MS_UNBINDABLE != 0 {
        // Unbindable is applied to the new root after pivot_root (a bind from an unbindable
        // mount is refused); set up under the default.
        prop = libc::MS_SLAVE | libc::MS_REC;
    }
    sys::mount(None, "/", None, prop, None)
        .ctx(|| "setting the propagation of / in the container's mount namespace")?;
    if prop & libc::MS_SHARED != 0 {
        make_parent_private(c.root)?;
    }
    sys::mount(
        Some(c.root),
        c.root,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx(|| format!("bind-mounting the rootfs {} onto itself", c.root))?;
    let rootfd = sys::open(c.root, libc::O_PATH | libc::O_DIRECTORY, 0)
        .ctx(|| format!("opening the rootfs {}", c.root))?;
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
        mount_one(c, &rootfd, m, &rel, o, tree).map_err(|e| {
            Error::Msg(format!(
                "mounting {} ({}): {e}",
                m.destination().display(),
                m.typ().as_deref().unwrap_or("bind")
            ))
        })?;
    }
    if !dev_bound {
        setup_dev(c, &rootfd, devpts)?;
        crate::debug!("default devices and /dev symlinks created");
    }
    Ok(())
}

fn make_parent_private(root: &str) -> Result<()> {
    // The mount containing the rootfs must not be shared for pivot_root.
    let info = std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "reading mountinfo")?;
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
    sys::mount(None, &best, None, libc::MS_PRIVATE, None)
        .ctx(|| format!("making {best} private for pivot_root"))
}

fn is_bind(m: &Mount, o: &Opts) -> bool {
    o.bind || m.typ().as_deref() == Some("bind")
}

fn mount_one(
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
            bail!("bind mount without a source");
        };
        let src = src.to_str().unwrap_or_default();
        let meta = std::fs::metadata(src).ctx(|| format!("bind source {src}"))?;
        let target = ensure_target(rootfd, rel, meta.is_dir())?;
        let rec = o.flags & libc::MS_REC;
        match idmapped {
            Some(tree) => crate::idmap::attach(tree, &target)?,
            None => sys::mount(
                Some(src),
                &fd_path(&target),
                None,
                libc::MS_BIND | rec,
                None,
            )
            .ctx(|| format!("bind-mounting {src}"))?,
        }
        let target = open_in_root(rootfd, rel).ctx(|| "reopening the target")?;
        let extra = o.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            remount(&fd_path(&target), extra)?;
        }
        finish(&target, &o)?;
        return Ok(());
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(c, rootfd, rel, &o);
    }
    let target = ensure_target(rootfd, rel, true)?;
    let src = m
        .source()
        .as_ref()
        .and_then(|s| s.to_str())
        .unwrap_or(typ)
        .to_string();
    let data = o.data.join(",");
    // tmpcopyup: the directory as it is, opened before the tmpfs hides it.
    let covered = if typ == "tmpfs" && o.tmpcopyup {
        Some(readable_dir(&target).ctx(|| format!("opening /{rel} for tmpcopyup"))?)
    } else {
        None
    };
    let r = sys::mount(
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
            sys::mount(
                Some("/sys"),
                &fd_path(&target),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .ctx(|| "bind-mounting /sys (sysfs mount not permitted)")?;
            let t = open_in_root(rootfd, rel).ctx(|| "reopening the target")?;
            remount(&fd_path(&t), o.flags)?;
        }
        Err(e) => return Err(e).ctx(|| format!("mount -t {typ} {src} with {data:?}")),
    }
    let target = open_in_root(rootfd, rel).ctx(|| "reopening the target")?;
    if let Some(covered) = covered {
        let tmpfs = readable_dir(&target).ctx(|| format!("opening the tmpfs at /{rel}"))?;
        use std::os::fd::AsFd;
        crate::copyup::copy_dir(covered.as_fd(), tmpfs.as_fd())
            .map_err(|e| Error::Msg(format!("/{rel}: {e}")))?;
    }
    let magic = match typ {
        "proc" => Some(PROC_SUPER_MAGIC),
        "sysfs" => Some(SYSFS_MAGIC),
        "devpts" => Some(DEVPTS_SUPER_MAGIC),
        _ => None,
    };
    if let Some(want) = magic {
        let got = sys::fstatfs_type(target.as_raw_fd()).ctx(|| "statfs of the new mount")?;
        if got != want && !(typ == "sysfs" && c.userns) {
            bail!("/{rel} is not a {typ} mount after mounting it (the rootfs raced the runtime)");
        }
    }
    finish(&target, &o)
}

/// A directory descriptor that can be read, from an `O_PATH` one.
fn readable_dir(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::openat(
        fd,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn remount(path: &str, flags: libc::c_ulong) -> Result<()> {
    let f = flags | libc::MS_REMOUNT | libc::MS_BIND;
    match sys::mount(None, path, None, f, None) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // Locked flags (from a less privileged mount namespace) must be kept.
            let cur = sys::mount_flags_of(path).ctx(|| "statvfs")?;
            sys::mount(None, path, None, f | cur, None)
                .ctx(|| "remounting with the requested flags")
        }
        Err(e) => Err(e).ctx(|| "remounting with the requested flags"),
    }
}

fn finish(target: &OwnedFd, o: &Opts) -> Result<()> {
    for p in &o.propagation {
        sys::mount(None, &fd_path(target), None, *p, None).ctx(|| "setting mount propagation")?;
    }
    if o.rec_attr_set != 0 || o.rec_attr_clr != 0 {
        sys::mount_setattr(
            target.as_raw_fd(),
            true,
            o.rec_attr_set,
            o.rec_attr_clr,
            None,
        )
        .ctx(|| "mount_setattr (recursive mount options such as rro)")?;
    }
    Ok(())
}

fn mount_cgroup(c: &RootfsCtx, rootfd: &OwnedFd, rel: &str, o: &Opts) -> Result<()> {
    let target = ensure_target(rootfd, rel, true)?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "reading mountinfo")?;
    let mounts = crate::cgroups::mountinfo::parse_mountinfo(&info);
    let own = std::fs::read_to_string("/proc/self/cgroup").ctx(|| "reading /proc/self/cgroup")?;
    let own = crate::cgroups::mountinfo::parse_proc_cgroup(&own);
    let flags = o.flags & !libc::MS_RDONLY;
    let pure_v2 = mounts
        .iter()
        .any(|m| m.v2 && m.mount_point == Path::new("/sys/fs/cgroup"));
    if pure_v2 {
        // Born in its cgroup (CLONE_INTO_CGROUP): the runtime's go-ahead comes at once.
        (c.enter_cgroup)()?;
        if c.cgroupns {
            sys::mount(
                Some("cgroup2"),
                &fd_path(&target),
                Some("cgroup2"),
                o.flags,
                None,
            )
            .ctx(|| "mount -t cgroup2")?;
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
            sys::mount(
                Some(&src),
                &fd_path(&target),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .ctx(|| format!("bind-mounting {src}"))?;
            let t = open_in_root(rootfd, rel).ctx(|| "reopening the target")?;
            remount(&fd_path(&t), o.flags)?;
        }
        return Ok(());
    }
    sys::mount(
        Some("tmpfs"),
        &fd_path(&target),
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .ctx(|| "mounting the tmpfs for cgroup v1 hierarchies")?;
    for m in &mounts {
        if !m.mount_point.starts_with("/sys/fs/cgroup") {
            continue;
        }
        let Some(name) = m.mount_point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let sub_rel = format!("{rel}/{name}");
        let sub = ensure_target(rootfd, &sub_rel, true)?;
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
            sys::mount(
                Some(&src),
                &fd_path(&sub),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .ctx(|| format!("bind-mounting {src}"))?;
            let s = open_in_root(rootfd, &sub_rel).ctx(|| "reopening the target")?;
            remount(&fd_path(&s), o.flags)?;
        }
        if m.controllers.len() > 1 {
            for ctl in &m.controllers {
                if ctl == name {
                    continue;
                }
                let link = format!("{rel}/{ctl}");
                let dfd = open_in_root(rootfd, rel).ctx(|| "reopening the target")?;
                let _ = symlinkat(name, &dfd, ctl);
                let _ = link;
            }
        }
    }
    if o.flags & libc::MS_RDONLY != 0 {
        let t = open_in_root(rootfd, rel).ctx(|| "reopening the target")?;
        sys::mount(
            None,
            &fd_path(&t),
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | flags,
            None,
        )
        .ctx(|| "remounting the cgroup tmpfs read-only")?;
    }
    Ok(())
}

fn symlinkat(target: &str, dir: &OwnedFd, name: &str) -> std::io::Result<()> {
    let t = sys::cstr(target)?;
    let n = sys::cstr(name)?;
    // SAFETY: valid C strings and dir fd.
    sys::cvt(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) }).map(drop)
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

fn setup_dev(c: &RootfsCtx, rootfd: &OwnedFd, devpts: bool) -> Result<()> {
    for (p, maj, min) in default_devices() {
        make_device(c, rootfd, p, libc::S_IFCHR, maj, min, 0o666, 0, 0)?;
    }
    if let Some(devs) = c.spec.linux().as_ref().and_then(|l| l.devices().as_ref()) {
        for d in devs {
            add_device(c, rootfd, d)?;
        }
    }
    let dev = mkdir_all_in_root(rootfd, "dev")?;
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        let _ = symlinkat(target, &dev, name);
    }
    if Path::new("/proc/kcore").exists() {
        let _ = symlinkat("/proc/kcore", &dev, "core");
    }
    if devpts {
        let n = sys::cstr("ptmx").expect("no NUL");
        // SAFETY: valid fd and C string.
        unsafe { libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0) };
        symlinkat("pts/ptmx", &dev, "ptmx").ctx(|| "creating /dev/ptmx")?;
    }
    if c.terminal {
        ensure_target(rootfd, "dev/console", false)?;
    }
    Ok(())
}

fn add_device(c: &RootfsCtx, rootfd: &OwnedFd, d: &LinuxDevice) -> Result<()> {
    let rel = clean_rel(d.path());
    if !rel.starts_with("dev/") {
        bail!(
            "linux.devices path {} must be under /dev",
            d.path().display()
        );
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => bail!(
            "linux.devices {}: type \"a\" is not a device type",
            d.path().display()
        ),
    };
    let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
    let (maj, min) = (d.major() as u32, d.minor() as u32);
    // A file already there must be this very device (config-linux.md); never replace another.
    if let Ok(fd) = openat2(
        rootfd.as_raw_fd(),
        &rel,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    ) {
        let st = sys::fstat(fd.as_raw_fd()).ctx(|| format!("fstat /{rel}"))?;
        let same = st.st_mode & libc::S_IFMT == kind
            && (kind == libc::S_IFIFO || st.st_rdev == libc::makedev(maj, min));
        if same {
            return Ok(());
        }
        bail!(
            "linux.devices {}: a different file already exists there in the rootfs",
            d.path().display()
        );
    }
    make_device(
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
    let pfd = mkdir_all_in_root(rootfd, parent)?;
    let cname = sys::cstr(name).ctx(|| "bad device name")?;
    if c.userns {
        let target = ensure_target(rootfd, rel, false)?;
        let host = format!("/{rel}");
        return sys::mount(Some(&host), &fd_path(&target), None, libc::MS_BIND, None)
            .ctx(|| format!("bind-mounting device {host}"));
    }
    // SAFETY: valid fd and C string.
    unsafe { libc::unlinkat(pfd.as_raw_fd(), cname.as_ptr(), 0) };
    // SAFETY: valid fd and C string.
    let r = unsafe {
        libc::mknodat(
            pfd.as_raw_fd(),
            cname.as_ptr(),
            kind | mode,
            libc::makedev(maj, min),
        )
    };
    if r != 0 {
        return Err(sys::last()).ctx(|| format!("mknod /{rel}"));
    }
    // SAFETY: valid fd and C string.
    let r = unsafe {
        libc::fchownat(
            pfd.as_raw_fd(),
            cname.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(sys::last()).ctx(|| format!("chown /{rel}"));
    }
    Ok(())
}

/// Switches the root: pivot_root (detaching the old root) or, with `no_pivot`, MS_MOVE + chroot.
pub fn switch_root(root: &str, no_pivot: bool) -> Result<()> {
    let r = sys::cstr(root).ctx(|| "bad rootfs path")?;
    // SAFETY: valid C string.
    sys::cvt(unsafe { libc::chdir(r.as_ptr()) }).ctx(|| format!("chdir {root}"))?;
    if no_pivot {
        sys::mount(Some(root), "/", None, libc::MS_MOVE, None).ctx(|| "moving the rootfs to /")?;
        let dot = sys::cstr(".").expect("no NUL");
        // SAFETY: valid C string.
        sys::cvt(unsafe { libc::chroot(dot.as_ptr()) }).ctx(|| "chroot")?;
    } else {
        let old = sys::open("/", libc::O_DIRECTORY | libc::O_RDONLY, 0).ctx(|| "opening /")?;
        let dot = sys::cstr(".").expect("no NUL");
        // SAFETY: valid C strings.
        sys::cvt(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as i32 })
            .ctx(|| format!("pivot_root into {root} (use --no-pivot on a ramfs root)"))?;
        // SAFETY: valid fd.
        sys::cvt(unsafe { libc::fchdir(old.as_raw_fd()) }).ctx(|| "fchdir to the old root")?;
        sys::mount(None, ".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .ctx(|| "making the old root a slave")?;
        sys::umount2(".", libc::MNT_DETACH).ctx(|| "detaching the old root")?;
    }
    let slash = sys::cstr("/").expect("no NUL");
    // SAFETY: valid C string.
    sys::cvt(unsafe { libc::chdir(slash.as_ptr()) }).ctx(|| "chdir /")?;
    Ok(())
}

/// After the root switch: masked paths, read-only paths, read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let rootfd = sys::open("/", libc::O_PATH | libc::O_DIRECTORY, 0).ctx(|| "opening /")?;
    if let Some(l) = spec.linux() {
        crate::debug!(
            "masking {} paths, {} read-only paths",
            l.masked_paths().as_ref().map_or(0, Vec::len),
            l.readonly_paths().as_ref().map_or(0, Vec::len)
        );
        if let Some(masked) = l.masked_paths() {
            if !masked.is_empty() {
                let null = verified_dev_null()?;
                for p in masked {
                    mask_path(&rootfd, &null, p)?;
                }
            }
        }
        if let Some(ro) = l.readonly_paths() {
            for p in ro {
                readonly_path(&rootfd, p)?;
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
        sys::mount(None, "/", None, root_propagation(spec), None)
            .ctx(|| "applying linux.rootfsPropagation to the root")?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount("/", libc::MS_RDONLY)
            .map_err(|e| Error::Msg(format!("making the root read-only: {e}")))?;
    }
    Ok(())
}

/// Opens /dev/null without following symlinks and checks it is the real character device 1:3.
pub fn verified_dev_null() -> Result<OwnedFd> {
    let fd = openat2(
        libc::AT_FDCWD,
        "/dev/null",
        libc::O_PATH,
        0,
        sys::RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    )
    .ctx(|| "opening /dev/null in the container (it must be a device, not a symlink)")?;
    let st = sys::fstat(fd.as_raw_fd()).ctx(|| "fstat /dev/null")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR
        || libc::major(st.st_rdev) != 1
        || libc::minor(st.st_rdev) != 3
    {
        bail!("/dev/null in the container is not the null device (char 1:3): refusing to use it for maskedPaths");
    }
    Ok(fd)
}

fn mask_path(rootfd: &OwnedFd, null: &OwnedFd, p: &str) -> Result<()> {
    let rel = clean_rel(Path::new(p));
    let fd = match open_in_root(rootfd, &rel) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("opening masked path {p}")),
    };
    let st = sys::fstat(fd.as_raw_fd()).ctx(|| format!("fstat {p}"))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        sys::mount(
            Some("tmpfs"),
            &fd_path(&fd),
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        )
        .ctx(|| format!("masking {p} with a read-only tmpfs"))
    } else {
        sys::mount(
            Some(&fd_path(null)),
            &fd_path(&fd),
            None,
            libc::MS_BIND,
            None,
        )
        .ctx(|| format!("masking {p} with /dev/null"))
    }
}

fn readonly_path(rootfd: &OwnedFd, p: &str) -> Result<()> {
    let rel = clean_rel(Path::new(p));
    let fd = match open_in_root(rootfd, &rel) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("opening read-only path {p}")),
    };
    sys::mount(
        Some(&fd_path(&fd)),
        &fd_path(&fd),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx(|| format!("bind-mounting read-only path {p}"))?;
    let fd = open_in_root(rootfd, &rel).ctx(|| format!("reopening {p}"))?;
    remount(
        &fd_path(&fd),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )
    .map_err(|e| Error::Msg(format!("making {p} read-only: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(
            &[
                "rbind", "ro", "nosuid", "rslave", "size=1m", "mode=700", "rw", "rro",
            ]
            .map(String::from),
        );
        assert!(o.bind);
        assert_eq!(o.flags & libc::MS_RDONLY, 0, "rw after ro clears it");
        assert_ne!(o.flags & libc::MS_NOSUID, 0);
        assert_ne!(o.flags & libc::MS_REC, 0);
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.data, vec!["size=1m", "mode=700"]);
        assert_eq!(o.rec_attr_set, 1);
    }

    #[test]
    fn recursive_options_set_and_clear_mount_attributes() {
        let o =
            parse_options(&["rro", "rnoatime", "rrw", "rnosuid", "rstrictatime"].map(String::from));
        assert_eq!(o.rec_attr_set, attr::NOSUID | attr::STRICTATIME);
        assert_eq!(o.rec_attr_clr, attr::RDONLY | attr::ATIME_MASK);
        assert!(o.data.is_empty(), "{:?}", o.data);
        let o = parse_options(&["nosymfollow", "iversion", "noiversion"].map(String::from));
        assert_eq!(o.flags, libc::MS_NOSYMFOLLOW);
    }

    #[test]
    fn paths_are_cleaned_lexically_inside_the_root() {
        assert_eq!(clean_rel(Path::new("/a/../../b/./c")), "b/c");
        assert_eq!(clean_rel(Path::new("/")), "");
        assert_eq!(clean_rel(Path::new("../../etc")), "etc");
    }
}

//! A recording [`Syscall`] for the unit tests: a small model of the rootfs (directories, files,
//! devices, symlinks, what is mounted where) that answers the set-up's calls as the kernel
//! would, and writes each call down as one line, with `/proc/self/fd/N` turned back into the
//! path the fd stands for. The descriptors it hands out are real (`/dev/null` opened), so they
//! can be dropped like the kernel's.

use super::syscall::{BoxError, Syscall};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// A file in the model of the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A device or fifo: `S_IF*` kind and device number.
    Dev(libc::mode_t, libc::dev_t),
    /// A symlink and its target.
    Link(String),
}

/// Where a descriptor (or a path argument) points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum At {
    /// A path in the rootfs, relative to its top ("" is the top).
    Root(String),
    /// A path of the host outside the rootfs.
    Host(String),
}

struct State {
    root: String,
    nodes: BTreeMap<String, Node>,
    fstype: HashMap<String, String>,
    host: BTreeMap<String, bool>,
    texts: HashMap<String, String>,
    fds: HashMap<RawFd, At>,
    cwd: At,
    pivoted: bool,
    fail_mount: Option<(String, i32)>,
    setattr_errno: Option<i32>,
    mount_ids: HashMap<String, u64>,
    mount_flags: HashMap<String, libc::c_ulong>,
    calls: Vec<String>,
}

/// The recording mock.
pub struct Mock(RefCell<State>);

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn parent(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::EEXIST) => "EEXIST".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ELOOP) => "ELOOP".into(),
        Some(libc::ENOTDIR) => "ENOTDIR".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        _ => e.to_string(),
    }
}

/// MS_* flags by name, in a fixed order.
pub fn flag_names(flags: libc::c_ulong) -> String {
    const NAMES: [(libc::c_ulong, &str); 22] = [
        (libc::MS_RDONLY, "RDONLY"),
        (libc::MS_NOSUID, "NOSUID"),
        (libc::MS_NODEV, "NODEV"),
        (libc::MS_NOEXEC, "NOEXEC"),
        (libc::MS_SYNCHRONOUS, "SYNCHRONOUS"),
        (libc::MS_REMOUNT, "REMOUNT"),
        (libc::MS_MANDLOCK, "MANDLOCK"),
        (libc::MS_DIRSYNC, "DIRSYNC"),
        (libc::MS_NOSYMFOLLOW, "NOSYMFOLLOW"),
        (libc::MS_NOATIME, "NOATIME"),
        (libc::MS_NODIRATIME, "NODIRATIME"),
        (libc::MS_BIND, "BIND"),
        (libc::MS_MOVE, "MOVE"),
        (libc::MS_REC, "REC"),
        (libc::MS_SILENT, "SILENT"),
        (libc::MS_UNBINDABLE, "UNBINDABLE"),
        (libc::MS_PRIVATE, "PRIVATE"),
        (libc::MS_SLAVE, "SLAVE"),
        (libc::MS_SHARED, "SHARED"),
        (libc::MS_RELATIME, "RELATIME"),
        (libc::MS_STRICTATIME, "STRICTATIME"),
        (libc::MS_LAZYTIME, "LAZYTIME"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "0".into()
    } else {
        names.join("|")
    }
}

impl Mock {
    /// A rootfs at host path `root` holding only its top directory.
    pub fn new(root: &str) -> Mock {
        let mut nodes = BTreeMap::new();
        nodes.insert(String::new(), Node::Dir);
        Mock(RefCell::new(State {
            root: root.to_string(),
            nodes,
            fstype: HashMap::new(),
            host: BTreeMap::new(),
            texts: HashMap::new(),
            fds: HashMap::new(),
            cwd: At::Host("/".into()),
            pivoted: false,
            fail_mount: None,
            setattr_errno: None,
            mount_ids: HashMap::new(),
            mount_flags: HashMap::new(),
            calls: Vec::new(),
        }))
    }

    /// Adds `rel` (and its missing parents as directories) to the rootfs.
    pub fn with(self, rel: &str, node: Node) -> Mock {
        {
            let mut st = self.0.borrow_mut();
            let mut cur = String::new();
            for part in parent(rel).split('/').filter(|p| !p.is_empty()) {
                cur = join(&cur, part);
                st.nodes.entry(cur.clone()).or_insert(Node::Dir);
            }
            st.nodes.insert(rel.to_string(), node);
        }
        self
    }

    /// Directories of the rootfs.
    pub fn dirs(mut self, rels: &[&str]) -> Mock {
        for r in rels {
            self = self.with(r, Node::Dir);
        }
        self
    }

    /// A host path outside the rootfs (a bind source, /proc/kcore), a directory or not.
    pub fn host(self, path: &str, dir: bool) -> Mock {
        self.0.borrow_mut().host.insert(path.to_string(), dir);
        self
    }

    /// The contents `read_to_string` gives for `path`.
    pub fn text(self, path: &str, text: &str) -> Mock {
        self.0
            .borrow_mut()
            .texts
            .insert(path.to_string(), text.to_string());
        self
    }

    /// Mounts of filesystem type `fstype` fail with `errno`.
    pub fn fail_mount(self, fstype: &str, errno: i32) -> Mock {
        self.0.borrow_mut().fail_mount = Some((fstype.to_string(), errno));
        self
    }

    /// mount_setattr fails with `errno` (ENOSYS: a kernel before 5.12).
    pub fn fail_setattr(self, errno: i32) -> Mock {
        self.0.borrow_mut().setattr_errno = Some(errno);
        self
    }

    /// The mount at `rel` in the rootfs has id `id` (as mountinfo's first field).
    pub fn mount_id(self, rel: &str, id: u64) -> Mock {
        self.0.borrow_mut().mount_ids.insert(rel.to_string(), id);
        self
    }

    /// The mount at `rel` has the (locked) MS_* flags `flags`, as statvfs reports them.
    pub fn mount_flags(self, rel: &str, flags: libc::c_ulong) -> Mock {
        self.0
            .borrow_mut()
            .mount_flags
            .insert(rel.to_string(), flags);
        self
    }

    /// The root has been switched (for the steps after pivot_root).
    pub fn pivoted(self) -> Mock {
        {
            let mut st = self.0.borrow_mut();
            st.pivoted = true;
            st.cwd = At::Root(String::new());
        }
        self
    }

    /// The calls made so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.0.borrow().calls.clone()
    }

    /// The calls whose line starts with one of `prefixes`.
    pub fn calls_of(&self, prefixes: &[&str]) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| prefixes.iter().any(|p| c.starts_with(p)))
            .collect()
    }

    /// What is at `rel` in the rootfs now.
    pub fn node(&self, rel: &str) -> Option<Node> {
        self.0.borrow().nodes.get(rel).cloned()
    }

    fn hand(&self, at: At) -> OwnedFd {
        let fd: OwnedFd = std::fs::File::open("/dev/null").expect("/dev/null").into();
        self.0.borrow_mut().fds.insert(fd.as_raw_fd(), at);
        fd
    }

    fn at_fd(&self, fd: RawFd) -> At {
        self.0
            .borrow()
            .fds
            .get(&fd)
            .cloned()
            .unwrap_or_else(|| panic!("fd {fd} was not handed out by the mock"))
    }

    /// Where a path argument points: `/proc/self/fd/N`, the rootfs's host path, or a plain
    /// path (the host's before the root switch, the container's after it).
    fn at_path(&self, path: &str) -> At {
        if let Some(n) = path.strip_prefix("/proc/self/fd/") {
            if let Ok(fd) = n.parse() {
                return self.at_fd(fd);
            }
        }
        let st = self.0.borrow();
        if path == "." {
            return st.cwd.clone();
        }
        if st.pivoted {
            return At::Root(super::clean_rel(std::path::Path::new(path)));
        }
        if path == st.root {
            return At::Root(String::new());
        }
        match path.strip_prefix(&format!("{}/", st.root)) {
            Some(rel) => At::Root(rel.to_string()),
            None => At::Host(path.to_string()),
        }
    }

    fn show(&self, at: &At) -> String {
        let st = self.0.borrow();
        match at {
            At::Root(rel) if st.pivoted => format!("/{rel}"),
            At::Root(rel) if rel.is_empty() => st.root.clone(),
            At::Root(rel) => format!("{}/{rel}", st.root),
            At::Host(p) if st.pivoted => format!("(old root){p}"),
            At::Host(p) => p.clone(),
        }
    }

    fn show_path(&self, path: &str) -> String {
        let at = self.at_path(path);
        self.show(&at)
    }

    fn record<T>(&self, line: String, r: io::Result<T>) -> io::Result<T> {
        let line = match &r {
            Ok(_) => line,
            Err(e) => format!("{line} = {}", errno_name(e)),
        };
        self.0.borrow_mut().calls.push(line);
        r
    }

    /// The rootfs path of the entry `name` in directory `dir`.
    fn child(&self, dir: RawFd, name: &CStr) -> String {
        match self.at_fd(dir) {
            At::Root(p) => join(&p, name.to_str().expect("utf-8")),
            At::Host(p) => panic!("a *at call in the host directory {p}"),
        }
    }

    /// Resolves `path` from `base` inside the root, as openat2(RESOLVE_IN_ROOT) does.
    fn resolve(
        &self,
        base: &str,
        path: &str,
        nofollow: bool,
        no_symlinks: bool,
    ) -> io::Result<String> {
        let st = self.0.borrow();
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(String::from)
            .collect();
        let mut cur = if path.starts_with('/') {
            String::new()
        } else {
            base.to_string()
        };
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    cur = parent(&cur).to_string();
                    continue;
                }
                _ => {}
            }
            let next = join(&cur, &c);
            match st.nodes.get(&next) {
                None => return Err(err(libc::ENOENT)),
                Some(Node::Link(_)) if no_symlinks => return Err(err(libc::ELOOP)),
                Some(Node::Link(_)) if nofollow && todo.is_empty() => cur = next,
                Some(Node::Link(t)) => {
                    links += 1;
                    if links > 40 {
                        return Err(err(libc::ELOOP));
                    }
                    if t.starts_with('/') {
                        cur = String::new();
                    }
                    todo.extend(
                        t.split('/')
                            .filter(|c| !c.is_empty())
                            .rev()
                            .map(String::from),
                    );
                }
                Some(Node::Dir) => cur = next,
                Some(_) if !todo.is_empty() => return Err(err(libc::ENOTDIR)),
                Some(_) => cur = next,
            }
        }
        Ok(cur)
    }

    /// A new filesystem of type `fstype` on `rel`: what was there is covered, and proc, sysfs
    /// and devpts come with the entries the set-up uses.
    fn fresh_fs(&self, rel: &str, fstype: &str) {
        let mut st = self.0.borrow_mut();
        let prefix = format!("{rel}/");
        st.nodes.retain(|k, _| !k.starts_with(&prefix));
        st.fstype.insert(rel.to_string(), fstype.to_string());
        let entries: &[(&str, Node)] = match fstype {
            "proc" => &[
                ("sys", Node::Dir),
                ("kcore", Node::File),
                ("acpi", Node::Dir),
            ],
            "sysfs" => &[
                ("fs", Node::Dir),
                ("fs/cgroup", Node::Dir),
                ("firmware", Node::Dir),
            ],
            "devpts" => &[("ptmx", Node::Dev(libc::S_IFCHR, 0x0502))],
            _ => &[],
        };
        for (name, node) in entries {
            st.nodes.insert(join(rel, name), node.clone());
        }
    }

    fn create(&self, dir: RawFd, name: &CStr, node: Node) -> io::Result<String> {
        let rel = self.child(dir, name);
        let mut st = self.0.borrow_mut();
        if st.nodes.contains_key(&rel) {
            return Err(err(libc::EEXIST));
        }
        if st.nodes.get(parent(&rel)) != Some(&Node::Dir) {
            return Err(err(libc::ENOENT));
        }
        st.nodes.insert(rel.clone(), node);
        Ok(rel)
    }
}

impl Syscall for Mock {
    fn mount(
        &self,
        src: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()> {
        let at = self.at_path(target);
        let line = format!(
            "mount({}, {}, {}, {}, {})",
            src.map_or("-".into(), |s| if s.starts_with("/proc/self/fd/") {
                self.show_path(s)
            } else {
                s.to_string()
            }),
            self.show(&at),
            fstype.unwrap_or("-"),
            flag_names(flags),
            data.filter(|d| !d.is_empty()).unwrap_or("-"),
        );
        let fail = self.0.borrow().fail_mount.clone();
        let r = match (fail, fstype) {
            (Some((t, errno)), Some(f)) if t == f => Err(err(errno)),
            _ => Ok(()),
        };
        if r.is_ok() && flags & (libc::MS_REMOUNT | libc::MS_BIND | libc::MS_MOVE) == 0 {
            if let (Some(t), At::Root(rel)) = (fstype, &at) {
                self.fresh_fs(rel, t);
            }
        }
        self.record(line, r)
    }

    fn umount2(&self, target: &str, flags: libc::c_int) -> io::Result<()> {
        let detach = if flags & libc::MNT_DETACH != 0 {
            "DETACH"
        } else {
            "0"
        };
        let line = format!("umount2({}, {detach})", self.show_path(target));
        self.record(line, Ok(()))
    }

    fn mount_setattr(&self, fd: RawFd, recursive: bool, set: u64, clr: u64) -> io::Result<()> {
        let at = self.at_fd(fd);
        let line = format!(
            "mount_setattr({}, {}, set={set:#x}, clr={clr:#x})",
            self.show(&at),
            if recursive { "recursive" } else { "one" }
        );
        let r = match self.0.borrow().setattr_errno {
            Some(errno) => Err(err(errno)),
            None => Ok(()),
        };
        self.record(line, r)
    }

    fn mount_id(&self, fd: RawFd) -> io::Result<u64> {
        match self.at_fd(fd) {
            At::Root(rel) => self.0.borrow().mount_ids.get(&rel).copied(),
            At::Host(_) => None,
        }
        .ok_or_else(|| err(libc::EINVAL))
    }

    fn attach_tree(&self, _tree: RawFd, target: &OwnedFd) -> Result<(), BoxError> {
        let at = self.at_fd(target.as_raw_fd());
        let line = format!("move_mount(idmapped tree, {})", self.show(&at));
        Ok(self.record(line, Ok(()))?)
    }

    fn open(&self, path: &str, _flags: libc::c_int, _mode: u32) -> io::Result<OwnedFd> {
        let at = self.at_path(path);
        Ok(self.hand(at))
    }

    fn openat2(
        &self,
        dirfd: RawFd,
        path: &str,
        flags: libc::c_int,
        _mode: u32,
        resolve: u64,
    ) -> io::Result<OwnedFd> {
        let base = if dirfd == libc::AT_FDCWD {
            assert!(
                self.0.borrow().pivoted,
                "openat2 from the cwd before pivot_root"
            );
            String::new()
        } else {
            match self.at_fd(dirfd) {
                At::Root(p) => p,
                At::Host(p) => panic!("openat2 below the host directory {p}"),
            }
        };
        assert!(
            dirfd == libc::AT_FDCWD || resolve & crate::sys::RESOLVE_IN_ROOT != 0,
            "every open below the rootfs stays inside it"
        );
        let rel = self.resolve(
            &base,
            path,
            flags & libc::O_NOFOLLOW != 0,
            resolve & crate::sys::RESOLVE_NO_SYMLINKS != 0,
        )?;
        Ok(self.hand(At::Root(rel)))
    }

    fn mkdirat(&self, dir: RawFd, name: &CStr, _mode: libc::mode_t) -> io::Result<()> {
        let shown = self.show(&At::Root(self.child(dir, name)));
        let r = self.create(dir, name, Node::Dir).map(drop);
        self.record(format!("mkdir({shown})"), r)
    }

    fn mknodat(
        &self,
        dir: RawFd,
        name: &CStr,
        mode: libc::mode_t,
        dev: libc::dev_t,
    ) -> io::Result<()> {
        let shown = self.show(&At::Root(self.child(dir, name)));
        let kind = mode & libc::S_IFMT;
        let (node, what) = match kind {
            libc::S_IFREG => (Node::File, "file".to_string()),
            libc::S_IFCHR => (
                Node::Dev(kind, dev),
                format!("char {}:{}", libc::major(dev), libc::minor(dev)),
            ),
            libc::S_IFBLK => (
                Node::Dev(kind, dev),
                format!("block {}:{}", libc::major(dev), libc::minor(dev)),
            ),
            _ => (Node::Dev(kind, dev), "fifo".to_string()),
        };
        let r = self.create(dir, name, node).map(drop);
        let line = format!("mknod({shown}, {what}, {:o})", mode & 0o7777);
        self.record(line, r)
    }

    fn unlinkat(&self, dir: RawFd, name: &CStr, _flags: libc::c_int) -> io::Result<()> {
        let rel = self.child(dir, name);
        let r = match self.0.borrow_mut().nodes.remove(&rel) {
            Some(_) => Ok(()),
            None => Err(err(libc::ENOENT)),
        };
        let line = format!("unlink({})", self.show(&At::Root(rel)));
        self.record(line, r)
    }

    fn symlinkat(&self, target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
        let target = target.to_str().expect("utf-8").to_string();
        let shown = self.show(&At::Root(self.child(dir, name)));
        let r = self.create(dir, name, Node::Link(target.clone())).map(drop);
        self.record(format!("symlink({shown} -> {target})"), r)
    }

    fn fchownat(
        &self,
        dir: RawFd,
        name: &CStr,
        uid: libc::uid_t,
        gid: libc::gid_t,
        _flags: libc::c_int,
    ) -> io::Result<()> {
        let shown = self.show(&At::Root(self.child(dir, name)));
        self.record(format!("chown({shown}, {uid}:{gid})"), Ok(()))
    }

    fn readlinkat(&self, dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
        match self.0.borrow().nodes.get(&self.child(dir, name)) {
            Some(Node::Link(t)) => Ok(t.clone().into_bytes()),
            Some(_) => Err(err(libc::EINVAL)),
            None => Err(err(libc::ENOENT)),
        }
    }

    fn fstat(&self, fd: RawFd) -> io::Result<libc::stat> {
        // SAFETY: an all-zero stat is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let node = match self.at_fd(fd) {
            At::Root(rel) => self.0.borrow().nodes.get(&rel).cloned(),
            At::Host(_) => Some(Node::Dir),
        };
        let (mode, rdev) = match node.ok_or_else(|| err(libc::ENOENT))? {
            Node::Dir => (libc::S_IFDIR, 0),
            Node::File => (libc::S_IFREG, 0),
            Node::Dev(kind, dev) => (kind, dev),
            Node::Link(_) => (libc::S_IFLNK, 0),
        };
        st.st_mode = mode | 0o755;
        st.st_rdev = rdev;
        Ok(st)
    }

    fn fstatfs_type(&self, fd: RawFd) -> io::Result<i64> {
        let At::Root(rel) = self.at_fd(fd) else {
            return Ok(0xEF53);
        };
        Ok(match self.0.borrow().fstype.get(&rel).map(String::as_str) {
            Some("proc") => super::PROC_SUPER_MAGIC,
            Some("sysfs") => super::SYSFS_MAGIC,
            Some("devpts") => super::DEVPTS_SUPER_MAGIC,
            Some("tmpfs") => 0x0102_1994,
            _ => 0xEF53,
        })
    }

    fn mount_flags_of(&self, path: &str) -> io::Result<libc::c_ulong> {
        Ok(match self.at_path(path) {
            At::Root(rel) => self.0.borrow().mount_flags.get(&rel).copied().unwrap_or(0),
            At::Host(_) => 0,
        })
    }

    fn open_dir(&self, fd: &OwnedFd) -> io::Result<OwnedFd> {
        let at = self.at_fd(fd.as_raw_fd());
        let line = format!("open_dir({})", self.show(&at));
        self.record(line, Ok(()))?;
        Ok(self.hand(at))
    }

    fn copy_dir(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<(), BoxError> {
        let (from, to) = (self.at_fd(from.as_raw_fd()), self.at_fd(to.as_raw_fd()));
        let line = format!("copyup({} -> {})", self.show(&from), self.show(&to));
        Ok(self.record(line, Ok(()))?)
    }

    fn read_to_string(&self, path: &str) -> io::Result<String> {
        self.0
            .borrow()
            .texts
            .get(path)
            .cloned()
            .ok_or_else(|| err(libc::ENOENT))
    }

    fn is_dir(&self, path: &str) -> io::Result<bool> {
        self.0
            .borrow()
            .host
            .get(path)
            .copied()
            .ok_or_else(|| err(libc::ENOENT))
    }

    fn exists(&self, path: &str) -> bool {
        self.0.borrow().host.contains_key(path)
    }

    fn chdir(&self, path: &CStr) -> io::Result<()> {
        let at = self.at_path(path.to_str().expect("utf-8"));
        let line = format!("chdir({})", self.show(&at));
        self.0.borrow_mut().cwd = at;
        self.record(line, Ok(()))
    }

    fn fchdir(&self, fd: RawFd) -> io::Result<()> {
        let at = self.at_fd(fd);
        self.0.borrow_mut().cwd = at.clone();
        let line = format!("fchdir({})", self.show(&at));
        self.record(line, Ok(()))
    }

    fn chroot(&self, path: &CStr) -> io::Result<()> {
        let line = format!("chroot({})", self.show_path(path.to_str().expect("utf-8")));
        {
            let mut st = self.0.borrow_mut();
            st.pivoted = true;
            st.cwd = At::Root(String::new());
        }
        self.record(line, Ok(()))
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> io::Result<()> {
        let line = format!(
            "pivot_root({}, {})",
            self.show_path(new_root.to_str().expect("utf-8")),
            self.show_path(put_old.to_str().expect("utf-8"))
        );
        self.0.borrow_mut().pivoted = true;
        self.record(line, Ok(()))
    }
}

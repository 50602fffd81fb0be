//! The cgroup manager (cgroupfs driver): cgroup v1, hybrid (v1 controllers plus a cgroup2
//! mount, usually `/sys/fs/cgroup/unified`) and pure cgroup v2.
//!
//! Path rules follow runc's cgroupfs driver: an absolute `cgroupsPath` is used under the root
//! of every hierarchy, a relative one is placed under the caller's own cgroup (read from
//! `/proc/self/cgroup`), and without a `cgroupsPath` the container id is used as a relative
//! path. `slice:prefix:name` paths belong to the systemd driver, which berth does not have.

mod common;
pub mod devices;
mod error;
mod fs;
pub mod mountinfo;
pub mod stats;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use common::{Dirs, Layout};
pub use error::CgroupError;
pub use stats::Stats;

use mountinfo::{parse_mountinfo, parse_proc_cgroup, CgroupMount, V1_CONTROLLERS};

/// Reads `/proc/self/mountinfo` and tells the layout.
pub fn detect() -> Result<Layout, CgroupError> {
    let text = fs::read(Path::new("/proc/self/mountinfo"))?;
    detect_from_mountinfo(&text)
}

/// The layout a mountinfo text describes.
pub fn detect_from_mountinfo(text: &str) -> Result<Layout, CgroupError> {
    layout_of(&parse_mountinfo(text)).ok_or(CgroupError::NotMounted)
}

fn layout_of(mounts: &[CgroupMount]) -> Option<Layout> {
    let v1 = mounts.iter().any(|m| !m.v2 && !m.controllers.is_empty());
    let v2_root = mounts
        .iter()
        .any(|m| m.v2 && m.mount_point == Path::new("/sys/fs/cgroup"));
    let v2 = mounts.iter().any(|m| m.v2);
    if v2_root || (v2 && !v1) {
        Some(Layout::V2)
    } else if v1 && v2 {
        Some(Layout::Hybrid)
    } else if v1 {
        Some(Layout::V1)
    } else {
        None
    }
}

/// One hierarchy the container has a directory in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Hierarchy {
    /// Where the hierarchy is mounted.
    mount: PathBuf,
    /// The container's directory in it.
    dir: PathBuf,
    /// v1 controllers (empty for cgroup2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    controllers: Vec<String>,
}

/// The cgroups of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manager {
    layout: Layout,
    #[serde(default)]
    v1: Vec<Hierarchy>,
    #[serde(default)]
    unified: Option<Hierarchy>,
}

/// Joins `p` under `base` even when `p` is absolute.
fn join_under(base: &Path, p: &str) -> PathBuf {
    let p = p.trim_start_matches('/');
    if p.is_empty() {
        base.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The container's path relative to a hierarchy's root: (is_absolute, cleaned path).
fn inner_path(cgroups_path: Option<&str>, id: &str) -> Result<(bool, String), CgroupError> {
    let raw = match cgroups_path {
        Some(p) if !p.is_empty() => p,
        _ => id,
    };
    if raw.contains(':') {
        return Err(CgroupError::SystemdPath(raw.to_string()));
    }
    let abs = raw.starts_with('/');
    let clean = fs::clean_path(raw);
    if clean.trim_start_matches('/').is_empty() {
        return Err(CgroupError::BadPath(
            raw.to_string(),
            "it names the root cgroup; give the container a cgroup of its own",
        ));
    }
    Ok((abs, clean))
}

/// Strips the mount's root from the caller's path in that hierarchy (a cgroup namespace or a
/// bind-mounted subtree shows only part of the hierarchy).
fn own_relative(own: &str, mount_root: &str) -> String {
    if mount_root == "/" {
        return own.to_string();
    }
    match own.strip_prefix(mount_root) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_string(),
        _ => own.to_string(),
    }
}

impl Manager {
    /// The cgroups for a container, from `linux.cgroupsPath` (None: the container id,
    /// relative to the caller's cgroup, as runc).
    pub fn new(cgroups_path: Option<&str>, container_id: &str) -> Result<Manager, CgroupError> {
        let mountinfo = fs::read(Path::new("/proc/self/mountinfo"))?;
        let own = fs::read(Path::new("/proc/self/cgroup"))?;
        Self::with_sources(Path::new("/"), &mountinfo, &own, cgroups_path, container_id)
    }

    /// Like [`Manager::new`] but from given mountinfo and `/proc/self/cgroup` texts, with every
    /// mount point placed under `root` (for tests against a fake cgroup tree).
    pub fn with_sources(
        root: &Path,
        mountinfo: &str,
        self_cgroup: &str,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Manager, CgroupError> {
        let mounts = parse_mountinfo(mountinfo);
        let layout = layout_of(&mounts).ok_or(CgroupError::NotMounted)?;
        let (abs, inner) = inner_path(cgroups_path, container_id)?;
        let own = parse_proc_cgroup(self_cgroup);
        let place = |m: &CgroupMount, key: &str| -> Hierarchy {
            let mount = join_under(root, &m.mount_point.to_string_lossy());
            let dir = if abs {
                join_under(&mount, &inner)
            } else {
                let mine = own.get(key).map(String::as_str).unwrap_or("/");
                join_under(&join_under(&mount, &own_relative(mine, &m.root)), &inner)
            };
            Hierarchy {
                mount,
                dir,
                controllers: m.controllers.clone(),
            }
        };

        let mut v1 = Vec::new();
        if layout != Layout::V2 {
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            for m in mounts.iter().filter(|m| !m.v2) {
                let wanted: Vec<&str> = m
                    .controllers
                    .iter()
                    .map(String::as_str)
                    .filter(|c| V1_CONTROLLERS.contains(c))
                    .collect();
                if wanted.is_empty() || wanted.iter().any(|c| seen.contains(c)) {
                    continue;
                }
                seen.extend(wanted.iter().copied());
                v1.push(place(m, wanted[0]));
            }
        }
        let unified = if layout == Layout::V1 {
            None
        } else {
            let pick = mounts
                .iter()
                .filter(|m| m.v2)
                .find(|m| {
                    m.mount_point
                        == Path::new(if layout == Layout::V2 {
                            "/sys/fs/cgroup"
                        } else {
                            "/sys/fs/cgroup/unified"
                        })
                })
                .or_else(|| mounts.iter().find(|m| m.v2));
            pick.map(|m| place(m, ""))
        };
        Ok(Manager {
            layout,
            v1,
            unified,
        })
    }

    /// The host's layout this manager was made for.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The container's directory for a v1 controller (`memory`, `cpu`, `name=systemd`, ...).
    pub fn v1_path(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.dir.as_path())
    }

    /// The container's directory in the cgroup2 hierarchy (pure v2, or hybrid's unified mount).
    pub fn unified_path(&self) -> Option<&Path> {
        self.unified.as_ref().map(|h| h.dir.as_path())
    }

    /// (mount point, container directory) of every hierarchy.
    pub fn mount_dirs(&self) -> Vec<(PathBuf, PathBuf)> {
        self.v1
            .iter()
            .chain(self.unified.iter())
            .map(|h| (h.mount.clone(), h.dir.clone()))
            .collect()
    }

    /// Every directory of the container, one per hierarchy.
    pub fn dirs(&self) -> Vec<&Path> {
        self.v1
            .iter()
            .chain(self.unified.iter())
            .map(|h| h.dir.as_path())
            .collect()
    }

    /// Creates the container's directory in every hierarchy (missing parents too). v1 cpuset
    /// parents get `cpuset.cpus`/`cpuset.mems` copied down; v2 parents get the available
    /// controllers enabled in `cgroup.subtree_control`.
    pub fn create(&self) -> Result<(), CgroupError> {
        for h in &self.v1 {
            if h.controllers.iter().any(|c| c == "cpuset") {
                v1::create_cpuset(&h.mount, &h.dir)?;
            } else {
                std::fs::create_dir_all(&h.dir).map_err(|source| CgroupError::Create {
                    path: h.dir.clone(),
                    source,
                })?;
            }
        }
        if let Some(u) = &self.unified {
            v2::create(&u.mount, &u.dir)?;
        }
        Ok(())
    }

    /// Moves a process into the container's cgroups (all its threads follow).
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        self.add_pid_to(pid, true, true)
    }

    /// Moves a process into the container's v1 hierarchies and/or its cgroup2 directory.
    pub fn add_pid_to(&self, pid: i32, v1: bool, unified: bool) -> Result<(), CgroupError> {
        let value = pid.to_string();
        let v1_dirs = self.v1.iter().filter(|_| v1);
        for h in v1_dirs.chain(self.unified.iter().filter(|_| unified)) {
            fs::write(&h.dir.join("cgroup.procs"), &value)?;
        }
        Ok(())
    }

    /// The container's directory in each v1 hierarchy.
    pub fn v1_dirs(&self) -> Vec<PathBuf> {
        self.v1.iter().map(|h| h.dir.clone()).collect()
    }

    /// Applies `linux.resources` (also used by `update`). Parts left out are left unchanged;
    /// in particular the device rules are only touched when `devices` is given.
    pub fn apply(&self, r: &oci_spec::runtime::LinuxResources) -> Result<(), CgroupError> {
        match self.layout {
            Layout::V2 => v2::apply(self, r),
            Layout::V1 | Layout::Hybrid => v1::apply(self, r),
        }
    }

    fn freezer(&self) -> Option<(bool, &Path)> {
        if let Some(d) = self.v1_path("freezer") {
            return Some((true, d));
        }
        self.unified_path().map(|d| (false, d))
    }

    /// Freezes every process of the container and waits until the kernel says it is frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer() {
            Some((true, d)) => v1::freeze(d, true),
            Some((false, d)) => v2::freeze(d, true),
            None => Err(CgroupError::NoController {
                controller: "freezer",
                what: "pausing a container",
            }),
        }
    }

    /// Thaws the container.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer() {
            Some((true, d)) => v1::freeze(d, false),
            Some((false, d)) => v2::freeze(d, false),
            None => Err(CgroupError::NoController {
                controller: "freezer",
                what: "resuming a container",
            }),
        }
    }

    /// Whether the container's cgroup is frozen.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        match self.freezer() {
            Some((true, d)) => Ok(fs::read(&d.join("freezer.state"))? == "FROZEN"),
            Some((false, d)) => Ok(fs::read_keyed(&d.join("cgroup.events"))?
                .get("frozen")
                .copied()
                == Some(1)),
            None => Ok(false),
        }
    }

    /// Every process in the container's cgroups, including nested cgroups, sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.pids_in(&self.dirs())
    }

    /// Whether any process is left in the container's cgroup (errors count as yes). Looks at one
    /// hierarchy: every process of the container is in all of them.
    pub fn populated(&self) -> bool {
        let dirs = self.dirs();
        self.pids_in(&dirs[..dirs.len().min(1)])
            .map(|p| !p.is_empty())
            .unwrap_or(true)
    }

    fn pids_in(&self, dirs: &[&Path]) -> Result<Vec<i32>, CgroupError> {
        let mut all = BTreeSet::new();
        for dir in dirs {
            for d in walk_dirs(dir)? {
                let procs = match fs::read_opt(&d.join("cgroup.procs"))? {
                    Some(p) => p,
                    None => continue,
                };
                all.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Sends `sig` to every process of the container: with SIGKILL and `cgroup.kill` available
    /// the kernel does it; otherwise the cgroup is frozen, every process signalled, and thawed,
    /// so that nothing can fork past the signal.
    pub fn kill_all(&self, sig: i32) -> Result<(), CgroupError> {
        if sig == libc::SIGKILL {
            if let Some(u) = self.unified_path() {
                let kill = u.join("cgroup.kill");
                if kill.exists() && fs::write(&kill, "1").is_ok() {
                    return Ok(());
                }
            }
        }
        let frozen = match self.freeze() {
            Ok(()) => true,
            Err(e) => {
                crate::warning!("kill --all: cannot freeze the container first: {e}");
                false
            }
        };
        let res = self.pids().map(|pids| {
            for pid in pids {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, sig) };
            }
        });
        if frozen {
            self.thaw()?;
        }
        res
    }

    /// Resource usage, shaped like the `data` of runc's `events --stats`.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match self.layout {
            Layout::V2 => stats::v2(self),
            _ => stats::v1(self),
        }
    }

    /// Whether the kernel's OOM killer has killed a process in the container.
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        if self.layout != Layout::V2 {
            if let Some(d) = self.v1_path("memory") {
                let m = fs::read_keyed(&d.join("memory.oom_control"))?;
                return Ok(m.get("oom_kill").copied().unwrap_or(0) > 0);
            }
            return Ok(false);
        }
        match self.unified_path() {
            Some(d) => {
                let m = fs::read_keyed(&d.join("memory.events"))?;
                Ok(m.get("oom_kill").copied().unwrap_or(0) > 0)
            }
            None => Ok(false),
        }
    }

    /// Removes every directory of the container, nested cgroups first, retrying while the
    /// kernel still reports them busy (processes exiting). Missing directories are fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for dir in self.dirs() {
            // Usually a leaf without processes: one rmdir.
            match std::fs::remove_dir(dir) {
                Ok(()) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(_) => {}
            }
            let tree = match walk_dirs(dir) {
                Ok(t) => t,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            for d in tree.iter().rev() {
                if let Err(e) = rmdir_retry(d) {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// What the runtime keeps in its state to find these cgroups again.
    pub fn to_saved(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The manager saved by [`Manager::to_saved`].
    pub fn from_saved(v: &serde_json::Value) -> Result<Manager, CgroupError> {
        serde_json::from_value(v.clone()).map_err(|e| CgroupError::Saved(e.to_string()))
    }

    /// The container's cgroup2 directory (pure v2, or hybrid's unified hierarchy, which is
    /// the kernel's default hierarchy too) opened `O_PATH|O_DIRECTORY` for
    /// `clone3(CLONE_INTO_CGROUP)`; `None` on pure v1 (or when it cannot be opened).
    pub fn v2_dir_fd(&self) -> Option<OwnedFd> {
        let dir = self.unified_path()?;
        rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()
    }
}

impl Dirs for Manager {
    fn layout(&self) -> Layout {
        Manager::layout(self)
    }
    fn v1_path(&self, controller: &str) -> Option<&Path> {
        Manager::v1_path(self, controller)
    }
    fn unified_path(&self) -> Option<&Path> {
        Manager::unified_path(self)
    }
}

/// Moves the calling thread into each of `dirs` by writing `0` to their `tasks` files. The
/// caller must be single-threaded (then the whole process moves). Unlike a pid written to
/// `cgroup.procs`, a thread moving itself does not take the kernel's global threadgroup
/// lock, whose write side waits for an RCU grace period (~10 ms on an idle host): this is
/// how a container's init joins its v1 cgroups without that wait.
pub fn join_self(dirs: &[std::path::PathBuf]) -> Result<(), CgroupError> {
    for d in dirs {
        fs::write(&d.join("tasks"), "0")?;
    }
    Ok(())
}

/// `dir` and every directory below it, parents before children. Missing `dir`: empty.
fn walk_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    out.push(dir.to_path_buf());
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        i += 1;
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(source) => return Err(CgroupError::Read { path: d, source }),
        };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

fn rmdir_retry(d: &Path) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(5);
    loop {
        match std::fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && start.elapsed() < Duration::from_secs(2) =>
            {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: d.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;

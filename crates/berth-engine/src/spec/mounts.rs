//! `mounts`: the kernel filesystems and `/dev`, the generated /etc files, then volumes,
//! binds and tmpfs (parents before children).
//!
//! A read-only bind or volume is read-only in every submount too, as in Docker v25: its
//! options are `rbind` and `ro` plus the runtime-spec's `rro` (`mount_setattr` with
//! `AT_RECURSIVE`), unless `--mount`'s `bind-recursive` says otherwise ([`BindRecursion`]).

use super::{Inputs, SpecError};
use oci_spec::runtime::{Mount, Spec};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a user mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host path bound in (`-v /src:/dst`, `--mount type=bind`).
    #[default]
    Bind,
    /// A named or anonymous volume: a bind of its `_data` directory.
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
}

impl MountKind {
    /// Docker's name of the type (`bind`, `volume`, `tmpfs`).
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// How a bind treats the mounts below its source (`--mount ...,bind-recursive=`), with
/// Docker's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindRecursion {
    /// Submounts are bound too and, when the mount is read-only, read-only too (the default
    /// since Docker v25; berth's runtime falls back to remounting each submount where the
    /// kernel lacks `mount_setattr`).
    #[default]
    Enabled,
    /// Submounts are left out (a plain, non-recursive bind).
    Disabled,
    /// Submounts are bound but stay writable when the mount is read-only (Docker v24 and
    /// before).
    Writable,
    /// Submounts are bound and read-only: the mount must be read-only and `rprivate`.
    Readonly,
}

impl BindRecursion {
    /// Every value, by its name.
    pub const ALL: [(&'static str, BindRecursion); 4] = [
        ("enabled", BindRecursion::Enabled),
        ("disabled", BindRecursion::Disabled),
        ("writable", BindRecursion::Writable),
        ("readonly", BindRecursion::Readonly),
    ];
}

/// A bind's mount propagation (`-v ...:rslave`, `--mount ...,bind-propagation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// `private`.
    Private,
    /// `rprivate`, the default.
    #[default]
    Rprivate,
    /// `shared`.
    Shared,
    /// `rshared`.
    Rshared,
    /// `slave`.
    Slave,
    /// `rslave`.
    Rslave,
}

impl Propagation {
    /// Every value, by its name (the mount option's).
    pub const ALL: [(&'static str, Propagation); 6] = [
        ("private", Propagation::Private),
        ("rprivate", Propagation::Rprivate),
        ("shared", Propagation::Shared),
        ("rshared", Propagation::Rshared),
        ("slave", Propagation::Slave),
        ("rslave", Propagation::Rslave),
    ];

    /// The mount option.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("rprivate", |(n, _)| n)
    }
}

/// A mount whose source is resolved on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResolvedMount {
    /// Bind, volume or tmpfs.
    pub kind: MountKind,
    /// Host path (bind, volume) or "tmpfs".
    pub source: String,
    /// Where it is mounted in the container.
    pub destination: String,
    /// Read-only (for binds and volumes, in every submount unless `recursion` says not).
    pub read_only: bool,
    /// Volume name for volumes.
    pub name: Option<String>,
    /// The tmpfs's options (size, mode, flags), checked.
    pub options: Vec<String>,
    /// An anonymous volume (removed with `rm -v` / `--rm`).
    pub anonymous: bool,
    /// Binds and volumes: what happens to the source's submounts.
    #[serde(default)]
    pub recursion: BindRecursion,
    /// Binds and volumes: the mount's propagation.
    #[serde(default)]
    pub propagation: Propagation,
}

impl ResolvedMount {
    /// The runtime-spec options of a bind or volume: `rbind` (or `bind` when submounts are
    /// left out), the propagation, and `rw`, or `ro` with `rro` when submounts are read-only
    /// too.
    pub fn bind_options(&self) -> Vec<&'static str> {
        let mut o = vec![
            if self.recursion == BindRecursion::Disabled {
                "bind"
            } else {
                "rbind"
            },
            self.propagation.as_str(),
        ];
        if !self.read_only {
            o.push("rw");
            return o;
        }
        o.push("ro");
        if matches!(
            self.recursion,
            BindRecursion::Enabled | BindRecursion::Readonly
        ) {
            o.push("rro");
        }
        o
    }
}

/// `/dev/shm`'s size without `--shm-size`: 64 MiB, as Docker.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// Sets `mounts`, one group after another.
pub fn with_mounts(spec: &mut Spec, i: &Inputs) -> Result<(), SpecError> {
    let mut mounts = Vec::new();
    for step in [with_system, with_etc_files, with_user_mounts] {
        step(&mut mounts, i)?;
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// One mount entry.
pub fn mount(dest: &str, typ: &str, src: impl AsRef<Path>, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.into())
        .set_typ(Some(typ.into()))
        .set_source(Some(src.as_ref().to_path_buf()))
        .set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

/// `/proc`, `/dev`, `/dev/pts`, `/sys` (read-only unless `--privileged`), the cgroup
/// filesystem, `/dev/mqueue` and `/dev/shm` (`--shm-size`).
fn with_system(mounts: &mut Vec<Mount>, i: &Inputs) -> Result<(), SpecError> {
    let opts = i.opts;
    let rw = if opts.privileged { "rw" } else { "ro" };
    let shm = opts.shm_size.as_ref().map_or(DEFAULT_SHM_SIZE, |s| s.0);
    let shm_opt = format!("size={shm}");
    mounts.extend([
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", rw]),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", rw],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_opt],
        ),
    ]);
    Ok(())
}

/// `/etc/resolv.conf`, `/etc/hostname` and `/etc/hosts` from the container's directory,
/// unless a volume or bind covers them; read-only with `--read-only`.
fn with_etc_files(mounts: &mut Vec<Mount>, i: &Inputs) -> Result<(), SpecError> {
    for f in ["resolv.conf", "hostname", "hosts"] {
        let dest = format!("/etc/{f}");
        if i.ctx.mounts.iter().any(|m| m.destination == dest) {
            continue;
        }
        let mut o = vec!["rbind", "rprivate", "nosuid", "nodev", "noexec"];
        if i.opts.read_only {
            o.push("ro");
        }
        mounts.push(mount(&dest, "bind", i.ctx.container_dir.join(f), &o));
    }
    Ok(())
}

/// Volumes, binds and tmpfs, shallower destinations first so that a parent never covers
/// a child.
fn with_user_mounts(mounts: &mut Vec<Mount>, i: &Inputs) -> Result<(), SpecError> {
    let mut user: Vec<&ResolvedMount> = i.ctx.mounts.iter().collect();
    user.sort_by_key(|m| m.destination.matches('/').count());
    for m in user {
        if m.kind == MountKind::Tmpfs {
            let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
            o.extend(m.options.iter().map(String::as_str));
            if m.read_only {
                o.push("ro");
            }
            mounts.push(mount(&m.destination, "tmpfs", "tmpfs", &o));
        } else {
            mounts.push(mount(&m.destination, "bind", &m.source, &m.bind_options()));
        }
    }
    Ok(())
}

//! `mounts`: the kernel filesystems and `/dev`, the generated /etc files, then volumes,
//! binds and tmpfs (parents before children).

use super::{Inputs, SpecError};
use oci_spec::runtime::{Mount, Spec};
use std::path::Path;

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
    let mut user: Vec<&crate::spec::ResolvedMount> = i.ctx.mounts.iter().collect();
    user.sort_by_key(|m| m.destination.matches('/').count());
    for m in user {
        if m.kind == "tmpfs" {
            let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
            o.extend(m.options.iter().map(String::as_str));
            if m.read_only {
                o.push("ro");
            }
            mounts.push(mount(&m.destination, "tmpfs", "tmpfs", &o));
        } else {
            let o = ["rbind", "rprivate", if m.read_only { "ro" } else { "rw" }];
            mounts.push(mount(&m.destination, "bind", &m.source, &o));
        }
    }
    Ok(())
}

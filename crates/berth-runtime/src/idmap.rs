//! Idmapped bind mounts (`idmap`/`ridmap` mount options): the runtime, still fully privileged,
//! clones the source tree (`open_tree`), attaches a user namespace carrying the mount's id
//! mappings (`mount_setattr(MOUNT_ATTR_IDMAP)`), and the init moves the detached tree onto its
//! target inside the container (`move_mount`).

use crate::sys;
use crate::sys::{SysCtx, SysError};
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// An idmapped mount that cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// No mappings for the mount.
    #[error("mount {} uses idmap but neither it nor linux has uidMappings and gidMappings", .0.display())]
    NoMappings(PathBuf),
    /// No source for the mount.
    #[error("idmapped mount {} has no source", .0.display())]
    NoSource(PathBuf),
}

type Result<T, E = IdmapError> = std::result::Result<T, E>;

const OPEN_TREE_CLONE: u32 = 1;
const AT_RECURSIVE: u32 = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

/// A prepared idmapped tree for the mount at index `.0` of `spec.mounts`.
pub type Tree = (usize, OwnedFd);

fn is_idmap(m: &Mount) -> Option<bool> {
    let opts = m.options().as_deref().unwrap_or(&[]);
    if opts.iter().any(|o| o == "ridmap") {
        Some(true)
    } else if opts.iter().any(|o| o == "idmap") {
        Some(false)
    } else {
        None
    }
}

fn map_text(m: &[LinuxIdMapping]) -> String {
    m.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A user namespace with the given mappings, as an fd (held by a short-lived child).
fn userns_fd(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<OwnedFd, SysError> {
    let pid = sys::clone3(libc::CLONE_NEWUSER as u64, None)
        .sys(|| "creating a user namespace for an idmapped mount")?;
    if pid == 0 {
        loop {
            // SAFETY: waiting to be killed.
            unsafe { libc::pause() };
        }
    }
    let r = (|| {
        sys::write_file(&format!("/proc/{pid}/uid_map"), map_text(uids).as_bytes())
            .sys(|| "writing the idmapped mount's uid map")?;
        sys::write_file(&format!("/proc/{pid}/gid_map"), map_text(gids).as_bytes())
            .sys(|| "writing the idmapped mount's gid map")?;
        sys::open(&format!("/proc/{pid}/ns/user"), libc::O_RDONLY, 0)
            .sys(|| "opening the idmapped mount's user namespace")
    })();
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    r
}

/// Prepares every idmapped bind mount of the spec (call before cloning the init).
pub fn prepare(spec: &Spec) -> Result<Vec<Tree>> {
    let mut out = Vec::new();
    let linux = spec.linux().as_ref();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let Some(recursive) = is_idmap(m) else {
            continue;
        };
        let uids = m
            .uid_mappings()
            .clone()
            .or_else(|| linux.and_then(|l| l.uid_mappings().clone()))
            .unwrap_or_default();
        let gids = m
            .gid_mappings()
            .clone()
            .or_else(|| linux.and_then(|l| l.gid_mappings().clone()))
            .unwrap_or_default();
        if uids.is_empty() || gids.is_empty() {
            return Err(IdmapError::NoMappings(m.destination().clone()));
        }
        let Some(src) = m.source().as_ref().and_then(|s| s.to_str()) else {
            return Err(IdmapError::NoSource(m.destination().clone()));
        };
        let ns = userns_fd(&uids, &gids)?;
        let csrc = sys::cstr(src).sys(|| "bad source path")?;
        let rec = if recursive { AT_RECURSIVE } else { 0 };
        // SAFETY: valid C string; returns a new fd we own.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                csrc.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | rec,
            )
        };
        if fd < 0 {
            return Err(SysError::last(format!("open_tree {src} for an idmapped mount")).into());
        }
        // SAFETY: the fd is new and ours.
        let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        sys::mount_setattr(
            tree.as_raw_fd(),
            recursive,
            MOUNT_ATTR_IDMAP,
            0,
            Some(ns.as_raw_fd()),
        )
        .sys(|| format!("idmapping {src} (does its filesystem support idmapped mounts?)"))?;
        out.push((i, tree));
    }
    Ok(out)
}

/// In the init: moves a prepared tree onto `target`.
pub fn attach(tree: RawFd, target: &OwnedFd) -> Result<(), SysError> {
    let empty = sys::cstr("").expect("no NUL");
    // SAFETY: valid fds and C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(SysError::last("attaching an idmapped mount (move_mount)"));
    }
    Ok(())
}

//! The container's root: an overlay of the image's layer directories
//! (read-only lowerdirs, shared) with a private upper and work dir.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("mounting the overlay at {target}: {source}")]
    Mount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting {target}: {source}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Mounts `lower` (lowest first, as the image lists them) + `upper`/`work` at
/// `target`. Long lowerdir lists go through the new mount API (`lowerdir+`,
/// one layer per call) so the page-size limit on mount options never bites.
pub fn mount(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), OverlayError> {
    let err = |source: std::io::Error| OverlayError::Mount {
        target: target.to_path_buf(),
        source,
    };
    let top_first: Vec<String> = lower
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        top_first.join(":"),
        upper.display(),
        work.display()
    );
    if opts.len() < 4000 && !lower.is_empty() {
        let data = std::ffi::CString::new(opts).map_err(|e| err(std::io::Error::other(e)))?;
        return rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| err(e.into()));
    }
    use rustix::mount::{fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount};
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| err(e.into()))?;
    for l in &top_first {
        fsconfig_set_string(&fs, "lowerdir+", l.as_str()).map_err(|e| err(e.into()))?;
    }
    fsconfig_set_string(&fs, "upperdir", upper).map_err(|e| err(e.into()))?;
    fsconfig_set_string(&fs, "workdir", work).map_err(|e| err(e.into()))?;
    fsconfig_create(&fs).map_err(|e| err(e.into()))?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| err(e.into()))?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| err(e.into()))
}

/// True when something is mounted exactly at `target`.
pub fn is_mounted(target: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let t = target.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == t))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts `target` if mounted (lazily when busy).
pub fn unmount(target: &Path) -> Result<(), OverlayError> {
    use rustix::mount::{unmount, UnmountFlags};
    while is_mounted(target) {
        if let Err(e) = unmount(target, UnmountFlags::empty()) {
            if e == rustix::io::Errno::INVAL {
                break;
            }
            unmount(target, UnmountFlags::DETACH).map_err(|e| OverlayError::Unmount {
                target: target.to_path_buf(),
                source: e.into(),
            })?;
        }
    }
    Ok(())
}

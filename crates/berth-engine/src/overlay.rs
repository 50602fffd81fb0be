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
///
/// `volatile` (for `--rm` containers, as podman does) skips the syncs of the
/// upper dir: its contents are thrown away when the container exits, and the
/// unmount no longer waits for them to reach the disk.
pub fn mount(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
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
        "lowerdir={},upperdir={},workdir={}{}",
        top_first.join(":"),
        upper.display(),
        work.display(),
        if volatile { ",volatile" } else { "" }
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
    if volatile {
        rustix::mount::fsconfig_set_flag(&fs, "volatile").map_err(|e| err(e.into()))?;
    }
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

/// True when something is mounted exactly at `target`: its mount differs from
/// its parent directory's (statx's mount id; no mount table to read and parse).
pub fn is_mounted(target: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxFlags};
    let parent = target.parent().unwrap_or(Path::new("/"));
    let id = |p: &Path| {
        statx(
            rustix::fs::CWD,
            p,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::MNT_ID,
        )
        .ok()
        .filter(|s| s.stx_mask & StatxFlags::MNT_ID.bits() != 0)
        .map(|s| s.stx_mnt_id)
    };
    match (id(target), id(parent)) {
        (Some(t), Some(p)) => t != p,
        _ => false,
    }
}

/// Unmounts `target` and anything stacked on it (lazily when busy).
pub fn unmount(target: &Path) -> Result<(), OverlayError> {
    use rustix::io::Errno;
    use rustix::mount::{unmount, UnmountFlags};
    let err = |e: Errno| OverlayError::Unmount {
        target: target.to_path_buf(),
        source: e.into(),
    };
    // Each successful call removes the top mount; EINVAL means nothing is left.
    for _ in 0..64 {
        match unmount(target, UnmountFlags::empty()) {
            Ok(()) => {}
            Err(Errno::INVAL) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::BUSY) => unmount(target, UnmountFlags::DETACH).map_err(err)?,
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More layers than fit in one page of mount options: the new mount API's
    /// `lowerdir+` takes them one by one. The upper layer wins; lowers stay untouched.
    #[test]
    fn many_long_layers_mount() {
        let t = tempfile::tempdir().unwrap();
        let mut lower = Vec::new();
        for i in 0..120 {
            let d = t.path().join(format!("layer-{i:03}-{}", "x".repeat(60)));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
            std::fs::write(d.join("top"), i.to_string()).unwrap();
            lower.push(d);
        }
        let opts_len: usize = lower.iter().map(|p| p.as_os_str().len() + 1).sum();
        assert!(opts_len > 4096);
        let (up, work, target) = (t.path().join("u"), t.path().join("w"), t.path().join("m"));
        for d in [&up, &work, &target] {
            std::fs::create_dir(d).unwrap();
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = unmount(&self.0);
            }
        }
        mount(&lower, &up, &work, &target, false).unwrap();
        let guard = Unmount(target.clone());
        {
            assert!(is_mounted(&target));
            assert_eq!(std::fs::read_to_string(target.join("f0")).unwrap(), "0");
            assert_eq!(std::fs::read_to_string(target.join("f119")).unwrap(), "119");
            // The last image layer is the top one.
            assert_eq!(std::fs::read_to_string(target.join("top")).unwrap(), "119");
            std::fs::remove_file(target.join("f5")).unwrap();
            std::fs::write(target.join("top"), "changed").unwrap();
        }
        drop(guard);
        assert!(!is_mounted(&target));
        assert_eq!(std::fs::read_to_string(lower[5].join("f5")).unwrap(), "5");
        assert_eq!(
            std::fs::read_to_string(lower[119].join("top")).unwrap(),
            "119"
        );
        assert_eq!(std::fs::read_to_string(up.join("top")).unwrap(), "changed");
    }
}

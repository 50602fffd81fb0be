//! overlayfs mounts, in one place for container roots and `berth image mount`: the option
//! string with every path escaped (`\`, `:` and `,` are overlay's separators), and the new
//! mount API (`fsopen`, one `lowerdir+` per layer) when the options would not fit in a page,
//! so the number of layers is never capped and no process-wide working directory is changed.

use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    unmount as umount2, FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags,
    UnmountFlags,
};
use std::io;
use std::path::{Path, PathBuf};

/// Option strings up to this length go through one `mount(2)`; the kernel takes one page.
const MAX_LEGACY_OPTIONS: usize = 4000;

/// An overlay to mount.
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    /// The layer directories, lowest first (the order images list them).
    pub lower: &'a [PathBuf],
    /// The writable `upperdir` and its `workdir`; without them the overlay is read-only and
    /// overlay wants at least two lower directories.
    pub upper: Option<(&'a Path, &'a Path)>,
    /// `volatile`: no syncs of the upper directory (its contents are thrown away).
    pub volatile: bool,
    /// Mount read-only.
    pub read_only: bool,
    /// Mount with `nodev`.
    pub nodev: bool,
}

/// `path` escaped for overlay's option string.
pub fn escape(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Overlay<'_> {
    /// The legacy `mount(2)` option string: uppermost lowerdir first, every path escaped.
    pub fn options(&self) -> String {
        let lower: Vec<String> = self.lower.iter().rev().map(|p| escape(p)).collect();
        let mut s = format!("lowerdir={}", lower.join(":"));
        if let Some((upper, work)) = self.upper {
            s.push_str(&format!(
                ",upperdir={},workdir={}",
                escape(upper),
                escape(work)
            ));
        }
        if self.volatile {
            s.push_str(",volatile");
        }
        s
    }

    /// Mounts the overlay at `target`.
    pub fn mount(&self, target: &Path) -> io::Result<()> {
        let opts = self.options();
        if opts.len() < MAX_LEGACY_OPTIONS && !self.lower.is_empty() {
            let mut flags = MountFlags::empty();
            if self.read_only {
                flags |= MountFlags::RDONLY;
            }
            if self.nodev {
                flags |= MountFlags::NODEV;
            }
            let data = std::ffi::CString::new(opts).map_err(io::Error::other)?;
            return rustix::mount::mount(
                "overlay",
                target,
                "overlay",
                flags,
                Some(data.as_c_str()),
            )
            .map_err(Into::into);
        }
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        // `lowerdir+` (kernel 6.8): one unescaped path per call, uppermost first.
        for l in self.lower.iter().rev() {
            fsconfig_set_string(&fs, "lowerdir+", l.as_path())?;
        }
        if let Some((upper, work)) = self.upper {
            fsconfig_set_string(&fs, "upperdir", upper)?;
            fsconfig_set_string(&fs, "workdir", work)?;
        }
        if self.volatile {
            fsconfig_set_flag(&fs, "volatile")?;
        }
        fsconfig_create(&fs)?;
        let mut attrs = MountAttrFlags::empty();
        if self.read_only {
            attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
        }
        if self.nodev {
            attrs |= MountAttrFlags::MOUNT_ATTR_NODEV;
        }
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
        move_mount(
            &mnt,
            "",
            rustix::fs::CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(Into::into)
    }
}

/// True when something is mounted exactly at `target`: its mount differs from its parent
/// directory's (statx's mount id; no mount table to read and parse).
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

/// Unmounts `target` and anything stacked on it (lazily when busy). Nothing mounted there is
/// not an error.
pub fn unmount(target: &Path) -> io::Result<()> {
    use rustix::io::Errno;
    // Each successful call removes the top mount; EINVAL means nothing is left.
    for _ in 0..64 {
        match umount2(target, UnmountFlags::empty()) {
            Ok(()) => {}
            Err(Errno::INVAL) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::BUSY) => umount2(target, UnmountFlags::DETACH)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_in_paths_are_escaped() {
        let lower = [PathBuf::from("/l/a:b"), PathBuf::from("/l/c,d")];
        let o = Overlay {
            lower: &lower,
            upper: Some((Path::new("/u\\p"), Path::new("/w"))),
            volatile: true,
            read_only: false,
            nodev: false,
        };
        assert_eq!(
            o.options(),
            r"lowerdir=/l/c\,d:/l/a\:b,upperdir=/u\\p,workdir=/w,volatile"
        );
    }

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = unmount(&self.0);
        }
    }

    /// More layers than fit in one page of mount options: the new mount API's `lowerdir+`
    /// takes them one by one. The upper layer wins; lowers stay untouched.
    #[test]
    fn many_long_layers_mount() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let mut lower = Vec::new();
        for i in 0..120 {
            let d = t.path().join(format!("layer-{i:03}-{}", "x".repeat(60)));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
            std::fs::write(d.join("top"), i.to_string()).unwrap();
            lower.push(d);
        }
        let (up, work, target) = (t.path().join("u"), t.path().join("w"), t.path().join("m"));
        for d in [&up, &work, &target] {
            std::fs::create_dir(d).unwrap();
        }
        let o = Overlay {
            lower: &lower,
            upper: Some((&up, &work)),
            volatile: false,
            read_only: false,
            nodev: false,
        };
        assert!(o.options().len() > MAX_LEGACY_OPTIONS);
        o.mount(&target).unwrap();
        let guard = Unmount(target.clone());
        assert!(is_mounted(&target));
        assert_eq!(std::fs::read_to_string(target.join("f0")).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(target.join("f119")).unwrap(), "119");
        // The last image layer is the top one.
        assert_eq!(std::fs::read_to_string(target.join("top")).unwrap(), "119");
        std::fs::remove_file(target.join("f5")).unwrap();
        std::fs::write(target.join("top"), "changed").unwrap();
        drop(guard);
        assert!(!is_mounted(&target));
        assert_eq!(std::fs::read_to_string(lower[5].join("f5")).unwrap(), "5");
        assert_eq!(
            std::fs::read_to_string(lower[119].join("top")).unwrap(),
            "119"
        );
        assert_eq!(std::fs::read_to_string(up.join("top")).unwrap(), "changed");
    }

    /// Paths holding overlay's separators mount, read-only, through both mount paths.
    #[test]
    fn read_only_overlay_of_paths_with_separators() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        for many in [false, true] {
            let t = tempfile::tempdir().unwrap();
            let n = if many { 60 } else { 2 };
            let lower: Vec<PathBuf> = (0..n)
                .map(|i| {
                    let d = t.path().join(format!("l{i}:a,b\\c{}", "y".repeat(60)));
                    std::fs::create_dir(&d).unwrap();
                    std::fs::write(d.join(format!("f{i}")), "x").unwrap();
                    d
                })
                .collect();
            let target = t.path().join("m");
            std::fs::create_dir(&target).unwrap();
            let o = Overlay {
                lower: &lower,
                upper: None,
                volatile: false,
                read_only: true,
                nodev: true,
            };
            assert_eq!(o.options().len() > MAX_LEGACY_OPTIONS, many);
            o.mount(&target).unwrap();
            let _g = Unmount(target.clone());
            assert!(target.join("f0").exists());
            assert!(target.join(format!("f{}", n - 1)).exists());
            assert!(std::fs::write(target.join("new"), "x").is_err());
        }
    }
}

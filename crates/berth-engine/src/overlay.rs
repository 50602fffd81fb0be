//! The container's root: an overlay of the image's layer directories
//! (read-only lowerdirs, shared) with a private upper and work dir.

use berth_sys::overlay::Overlay;
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
/// `target` through [`berth_sys::overlay`]: every path escaped in the option string, and
/// long lowerdir lists through the new mount API (`lowerdir+`, one layer per call) so the
/// page-size limit on mount options never bites.
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
    Overlay {
        lower,
        upper: Some((upper, work)),
        volatile,
        read_only: false,
        nodev: false,
    }
    .mount(target)
    .map_err(|source| OverlayError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

/// True when something is mounted exactly at `target`.
pub fn is_mounted(target: &Path) -> bool {
    berth_sys::overlay::is_mounted(target)
}

/// Unmounts `target` and anything stacked on it (lazily when busy).
pub fn unmount(target: &Path) -> Result<(), OverlayError> {
    berth_sys::overlay::unmount(target).map_err(|source| OverlayError::Unmount {
        target: target.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = unmount(&self.0);
        }
    }

    /// A container's root under directories whose names hold overlay's separators (`:`,
    /// `,`), with a few layers (one `mount(2)`) and with more than fit in a page of options
    /// (the new mount API): the upper layer wins, writes go to the upper dir, the lowers stay
    /// untouched, and the unmount leaves nothing mounted.
    #[test]
    fn container_roots_mount_with_any_paths_and_layer_counts() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        for n in [2usize, 120] {
            let t = tempfile::tempdir().unwrap();
            let base = t.path().join("root:a,b");
            let mut lower = Vec::new();
            for i in 0..n {
                let d = base.join(format!("layer-{i:03}:{}", "x".repeat(60)));
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
                std::fs::write(d.join("top"), i.to_string()).unwrap();
                lower.push(d);
            }
            let c = base.join("containers/c,1");
            let (up, work, target) = (c.join("upper"), c.join("work"), c.join("rootfs"));
            for d in [&up, &work, &target] {
                std::fs::create_dir_all(d).unwrap();
            }
            mount(&lower, &up, &work, &target, n > 2).unwrap();
            let guard = Unmount(target.clone());
            assert!(is_mounted(&target));
            let last = n - 1;
            assert_eq!(std::fs::read_to_string(target.join("f0")).unwrap(), "0");
            assert_eq!(
                std::fs::read_to_string(target.join(format!("f{last}"))).unwrap(),
                last.to_string()
            );
            // The last image layer is the top one.
            assert_eq!(
                std::fs::read_to_string(target.join("top")).unwrap(),
                last.to_string()
            );
            std::fs::remove_file(target.join("f0")).unwrap();
            std::fs::write(target.join("top"), "changed").unwrap();
            drop(guard);
            assert!(!is_mounted(&target));
            unmount(&target).unwrap();
            assert_eq!(std::fs::read_to_string(lower[0].join("f0")).unwrap(), "0");
            assert_eq!(
                std::fs::read_to_string(lower[last].join("top")).unwrap(),
                last.to_string()
            );
            assert_eq!(std::fs::read_to_string(up.join("top")).unwrap(), "changed");
        }
    }
}

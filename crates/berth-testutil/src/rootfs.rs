//! A busybox root filesystem built from the host's static busybox.

use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// Where the static busybox binary lives on Debian (`busybox-static`).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// The `/etc/passwd` written into the rootfs.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
berth:x:1000:1000:berth:/home/berth:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

/// The `/etc/group` written into the rootfs.
pub const GROUP: &str = "root:x:0:\nberth:x:1000:\nnogroup:x:65534:\n";

/// The applet names the host busybox offers (`busybox --list`).
pub fn busybox_applets() -> Result<Vec<String>> {
    let out = Command::new(HOST_BUSYBOX)
        .arg("--list")
        .output()
        .with_context(|| format!("running {HOST_BUSYBOX} --list (install busybox-static)"))?;
    if !out.status.success() {
        bail!("{HOST_BUSYBOX} --list failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout).context("busybox --list output is not UTF-8")?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/') && *l != "busybox")
        .map(String::from)
        .collect())
}

/// Populate `dir` (empty or absent) as a busybox root filesystem:
/// `bin/busybox` plus a symlink `bin/APPLET -> busybox` for every applet, empty
/// `sbin`, `usr/bin`, `usr/sbin`, `/etc/passwd` (root, berth 1000:1000, nobody
/// 65534), `/etc/group`, and empty `proc sys dev tmp(1777) root(0700) home var`.
pub fn busybox_rootfs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if fs::read_dir(dir)?.next().is_some() {
        bail!("busybox_rootfs: {} is not empty", dir.display());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    let dirs: &[(&str, u32)] = &[
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("home/berth", 0o755),
        ("var", 0o755),
    ];
    for (d, mode) in dirs {
        let p = dir.join(d);
        fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
    }
    std::os::unix::fs::chown(dir.join("home/berth"), Some(1000), Some(1000))?;
    let bb = dir.join("bin/busybox");
    fs::copy(HOST_BUSYBOX, &bb)
        .with_context(|| format!("copying {HOST_BUSYBOX} (install busybox-static)"))?;
    fs::set_permissions(&bb, fs::Permissions::from_mode(0o755))?;
    for applet in busybox_applets()? {
        let link = dir.join("bin").join(&applet);
        symlink("busybox", &link).with_context(|| format!("symlinking {}", link.display()))?;
    }
    write_mode(&dir.join("etc/passwd"), PASSWD.as_bytes(), 0o644)?;
    write_mode(&dir.join("etc/group"), GROUP.as_bytes(), 0o644)?;
    write_mode(&dir.join("etc/hostname"), b"berth\n", 0o644)?;
    Ok(())
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn rootfs_has_busybox_applets_and_users() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        busybox_rootfs(&root).unwrap();
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert!(fs::symlink_metadata(root.join("bin/ls"))
            .unwrap()
            .is_symlink());
        let applets = busybox_applets().unwrap();
        assert!(applets.len() > 100, "only {} applets", applets.len());
        for a in &applets {
            assert!(
                root.join("bin").join(a).symlink_metadata().is_ok(),
                "missing {a}"
            );
        }
        let tmpmode = fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777;
        assert_eq!(tmpmode, 0o1777);
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.contains("berth:x:1000:1000:"));
        assert!(passwd.contains(":65534:65534:"));
        for d in [
            "proc", "sys", "dev", "root", "home", "sbin", "usr/bin", "usr/sbin",
        ] {
            assert!(root.join(d).is_dir(), "{d} missing");
        }
        // The copied busybox really runs.
        let out = Command::new(root.join("bin/busybox"))
            .args(["echo", "hi"])
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    fn rootfs_refuses_non_empty_dir() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("x"), b"").unwrap();
        assert!(busybox_rootfs(tmp.path()).is_err());
    }
}

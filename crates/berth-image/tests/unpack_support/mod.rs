//! Shared helpers for the unpacker's integration tests (`unpack_*.rs`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_image::unpack::{unpack_layer, UnpackError, UnpackOptions, UnpackStats};

/// A layer directory two levels down in a temp dir that also holds a `host` tree:
/// `outer/host/...` (files, a dir, a symlink) and `outer/mid/layer` (the unpack target), so that
/// `layer/../..` is `outer` and every escape lands somewhere the snapshot sees.
pub struct Sandbox {
    pub outer: tempfile::TempDir,
    pub layer: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let outer = tempfile::Builder::new()
            .prefix("berth-unpack-")
            .tempdir()
            .expect("temp dir");
        let o = outer.path();
        fs::create_dir_all(o.join("host/dir")).unwrap();
        fs::write(o.join("host/file"), b"host secret\n").unwrap();
        fs::write(o.join("host/dir/inner"), b"inner\n").unwrap();
        std::os::unix::fs::symlink("file", o.join("host/link")).unwrap();
        set_mode(&o.join("host/file"), 0o600);
        set_mode(&o.join("host/dir"), 0o750);
        fs::create_dir_all(o.join("mid/layer")).unwrap();
        fs::write(o.join("mid/sibling"), b"sibling\n").unwrap();
        let layer = o.join("mid/layer");
        Sandbox { outer, layer }
    }

    pub fn host(&self) -> PathBuf {
        self.outer.path().join("host")
    }

    /// Everything in the sandbox outside the layer directory, plus /etc/passwd.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        walk(self.outer.path(), self.outer.path(), &self.layer, &mut m);
        m.insert("/etc/passwd".into(), describe(Path::new("/etc/passwd")));
        m
    }

    pub fn unpack(&self, tar: &[u8]) -> Result<UnpackStats, UnpackError> {
        unpack_layer(tar, &self.layer, &opts())
    }

    /// Unpacks `tar`, asserting the host side is untouched; returns the result.
    pub fn unpack_checked(&self, tar: &[u8]) -> Result<UnpackStats, UnpackError> {
        let before = self.snapshot();
        let r = self.unpack(tar);
        let after = self.snapshot();
        assert_eq!(
            before, after,
            "the unpack changed something outside the layer: {r:?}"
        );
        r
    }
}

pub fn opts() -> UnpackOptions {
    UnpackOptions {
        keep_ownership: rustix::process::geteuid().is_root(),
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn walk(root: &Path, dir: &Path, skip: &Path, m: &mut BTreeMap<String, String>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    m.insert(
        dir.strip_prefix(root).unwrap().display().to_string(),
        describe(dir),
    );
    for p in names {
        if p == skip {
            continue;
        }
        let md = fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            walk(root, &p, skip, m);
        } else {
            m.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                describe(&p),
            );
        }
    }
}

/// Type, mode, owner, times, link count and content (or link target) of one path.
pub fn describe(p: &Path) -> String {
    let md = fs::symlink_metadata(p).unwrap();
    let body = if md.file_type().is_symlink() {
        format!("-> {}", fs::read_link(p).unwrap().display())
    } else if md.is_file() {
        let data = fs::read(p).unwrap();
        format!("{:x}", fnv(&data))
    } else {
        String::new()
    };
    let xattrs = list_xattrs(p);
    format!(
        "mode {:o} uid {} gid {} nlink {} mtime {}.{} ctime {}.{} size {} {body} {xattrs:?}",
        md.mode(),
        md.uid(),
        md.gid(),
        md.nlink(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec(),
        md.size()
    )
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// All xattrs (name -> value) of `p`, not following a symlink.
pub fn list_xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    berth_testutil::tree::read_xattrs(p).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Asserts `r` failed and its message names `entry`.
pub fn assert_err_names(r: Result<UnpackStats, UnpackError>, entry: &str) -> UnpackError {
    match r {
        Ok(s) => panic!("unpack succeeded ({s:?}) but entry {entry:?} should have been refused"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(entry), "error {msg:?} does not name {entry:?}");
            assert!(e.entry().is_some(), "{e:?} carries no entry name");
            e
        }
    }
}

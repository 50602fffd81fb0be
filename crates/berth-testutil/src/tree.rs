//! Snapshots of a directory tree (every attribute an image unpacker must
//! keep) and a readable diff between two snapshots, plus `umoci unpack` as an
//! independent reference implementation.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The type of a tree entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// One entry of a [`tree_snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the snapshot root, `/`-separated, no leading `./`.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 07777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size of regular files; 0 for everything else.
    pub size: u64,
    /// Hex sha256 of a regular file's content.
    pub sha256: Option<String>,
    /// Symlink target.
    pub link_target: Option<String>,
    /// (major, minor) of character and block devices.
    pub rdev: Option<(u32, u32)>,
    /// All extended attributes, any namespace (`trusted.*` needs root).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Modification time, seconds.
    pub mtime: i64,
    /// For regular files sharing an inode with another entry of the tree:
    /// the first (sorted) path of that group.
    pub hardlink_group: Option<String>,
}

impl fmt::Display for TreeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} {:04o} {}:{} size={} mtime={}",
            self.path, self.kind, self.mode, self.uid, self.gid, self.size, self.mtime
        )?;
        if let Some(t) = &self.link_target {
            write!(f, " -> {t}")?;
        }
        if let Some((ma, mi)) = self.rdev {
            write!(f, " dev={ma},{mi}")?;
        }
        if let Some(g) = &self.hardlink_group {
            write!(f, " link-group={g}")?;
        }
        for (k, v) in &self.xattrs {
            write!(f, " {k}={}", String::from_utf8_lossy(v))?;
        }
        Ok(())
    }
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path contains NUL")
}

/// All extended attributes of `path` (not following symlinks).
pub fn read_xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let c = cpath(path)?;
    let mut out = BTreeMap::new();
    // SAFETY: c is a valid C string; a null buffer with size 0 queries the size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(out);
        }
        return Err(e).with_context(|| format!("listing xattrs of {}", path.display()));
    }
    let mut names = vec![0u8; n as usize + 256];
    // SAFETY: names is writable for names.len() bytes.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("listing xattrs of {}", path.display()));
    }
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
    {
        let cname = CString::new(name)?;
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is writable for buf.len() bytes; both strings are valid.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if len < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!(
                    "reading xattr {} of {}",
                    String::from_utf8_lossy(name),
                    path.display()
                )
            });
        }
        buf.truncate(len as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), buf);
    }
    Ok(out)
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Snapshot of every entry below `dir` (not `dir` itself), sorted by path.
/// Panics with a message naming the entry on I/O errors.
pub fn tree_snapshot(dir: &Path) -> Vec<TreeEntry> {
    try_tree_snapshot(dir).unwrap_or_else(|e| panic!("tree_snapshot({}): {e:#}", dir.display()))
}

/// [`tree_snapshot`] returning errors instead of panicking.
pub fn try_tree_snapshot(dir: &Path) -> Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    let mut inodes: HashMap<(u64, u64), u32> = HashMap::new();
    walk(dir, dir, &mut out, &mut inodes)?;
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    // Each inode seen more than once -> its first sorted path.
    let mut groups: HashMap<(u64, u64), String> = HashMap::new();
    for (e, key) in &out {
        if let Some(k) = key {
            if inodes.get(k).is_some_and(|n| *n > 1) {
                groups.entry(*k).or_insert_with(|| e.path.clone());
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(mut e, key)| {
            if let Some(k) = key {
                e.hardlink_group = groups.get(&k).cloned();
            }
            e
        })
        .collect())
}

type Walked = (TreeEntry, Option<(u64, u64)>);

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<Walked>,
    inodes: &mut HashMap<(u64, u64), u32>,
) -> Result<()> {
    for ent in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let ent = ent?;
        let path = ent.path();
        let md =
            fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
        let ft = md.file_type();
        let kind = if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_char_device() {
            EntryKind::Char
        } else if ft.is_block_device() {
            EntryKind::Block
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            EntryKind::Socket
        };
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut key = None;
        if kind == EntryKind::File {
            let k = (md.dev(), md.ino());
            *inodes.entry(k).or_default() += 1;
            key = Some(k);
        }
        let e = TreeEntry {
            path: rel,
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if kind == EntryKind::File { md.len() } else { 0 },
            sha256: if kind == EntryKind::File {
                Some(file_sha256(&path)?)
            } else {
                None
            },
            link_target: if kind == EntryKind::Symlink {
                Some(fs::read_link(&path)?.to_string_lossy().into_owned())
            } else {
                None
            },
            rdev: if matches!(kind, EntryKind::Char | EntryKind::Block) {
                Some((libc::major(md.rdev()), libc::minor(md.rdev())))
            } else {
                None
            },
            xattrs: read_xattrs(&path)?,
            mtime: md.mtime(),
            hardlink_group: None,
        };
        out.push((e, key));
        if kind == EntryKind::Dir {
            walk(root, &path, out, inodes)?;
        }
    }
    Ok(())
}

/// What [`diff_trees_with`] compares. `Default` compares everything.
#[derive(Clone, Debug, Default)]
pub struct DiffOpts {
    /// Don't compare mtimes at all.
    pub ignore_mtime: bool,
    /// Don't compare directory mtimes.
    pub ignore_dir_mtime: bool,
    /// Don't compare xattrs whose name starts with one of these.
    pub ignore_xattr_prefixes: Vec<String>,
    /// Don't compare hard-link grouping.
    pub ignore_hardlinks: bool,
    /// Skip paths (and everything below them) equal to one of these.
    pub ignore_paths: Vec<String>,
}

/// Human-readable differences between two snapshots (empty when equal).
pub fn diff_trees(a: &[TreeEntry], b: &[TreeEntry]) -> Vec<String> {
    diff_trees_with(a, b, &DiffOpts::default())
}

/// [`diff_trees`] with some attributes ignored.
pub fn diff_trees_with(a: &[TreeEntry], b: &[TreeEntry], opts: &DiffOpts) -> Vec<String> {
    let skip = |p: &str| {
        opts.ignore_paths
            .iter()
            .any(|i| p == i || p.starts_with(&format!("{}/", i.trim_end_matches('/'))))
    };
    let am: BTreeMap<&str, &TreeEntry> = a.iter().map(|e| (e.path.as_str(), e)).collect();
    let bm: BTreeMap<&str, &TreeEntry> = b.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = Vec::new();
    let mut paths: Vec<&str> = am.keys().chain(bm.keys()).copied().collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        if skip(p) {
            continue;
        }
        match (am.get(p), bm.get(p)) {
            (Some(x), None) => out.push(format!("only in a: {x}")),
            (None, Some(y)) => out.push(format!("only in b: {y}")),
            (Some(x), Some(y)) => diff_entry(x, y, opts, &mut out),
            (None, None) => unreachable!(),
        }
    }
    out
}

fn diff_entry(x: &TreeEntry, y: &TreeEntry, opts: &DiffOpts, out: &mut Vec<String>) {
    let p = &x.path;
    if x.kind != y.kind {
        out.push(format!("{p}: kind {:?} != {:?}", x.kind, y.kind));
        return;
    }
    if x.mode != y.mode {
        out.push(format!("{p}: mode {:04o} != {:04o}", x.mode, y.mode));
    }
    if (x.uid, x.gid) != (y.uid, y.gid) {
        out.push(format!(
            "{p}: owner {}:{} != {}:{}",
            x.uid, x.gid, y.uid, y.gid
        ));
    }
    if x.size != y.size {
        out.push(format!("{p}: size {} != {}", x.size, y.size));
    }
    if x.sha256 != y.sha256 {
        out.push(format!(
            "{p}: content sha256 {:?} != {:?}",
            x.sha256, y.sha256
        ));
    }
    if x.link_target != y.link_target {
        out.push(format!(
            "{p}: link target {:?} != {:?}",
            x.link_target, y.link_target
        ));
    }
    if x.rdev != y.rdev {
        out.push(format!("{p}: device {:?} != {:?}", x.rdev, y.rdev));
    }
    let keep = |k: &&String| {
        !opts
            .ignore_xattr_prefixes
            .iter()
            .any(|pre| k.starts_with(pre))
    };
    let xa: BTreeMap<_, _> = x.xattrs.iter().filter(|(k, _)| keep(k)).collect();
    let ya: BTreeMap<_, _> = y.xattrs.iter().filter(|(k, _)| keep(k)).collect();
    if xa != ya {
        let show = |m: &BTreeMap<&String, &Vec<u8>>| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
                .join(",")
        };
        out.push(format!("{p}: xattrs [{}] != [{}]", show(&xa), show(&ya)));
    }
    let dir_skip = opts.ignore_dir_mtime && x.kind == EntryKind::Dir;
    let cmp_mtime = !(opts.ignore_mtime || dir_skip);
    if cmp_mtime && x.mtime != y.mtime {
        out.push(format!("{p}: mtime {} != {}", x.mtime, y.mtime));
    }
    if !opts.ignore_hardlinks && x.hardlink_group != y.hardlink_group {
        out.push(format!(
            "{p}: hard-link group {:?} != {:?}",
            x.hardlink_group, y.hardlink_group
        ));
    }
}

/// Runs `umoci unpack --image LAYOUT:TAG DEST` (as root, so owners, devices
/// and xattrs are kept) and returns `DEST/rootfs`. `dest` must not exist.
/// umoci 0.4 cannot read zstd layers: compare those against the same content
/// in a gzip or uncompressed fixture.
pub fn umoci_unpack(layout: &Path, tag: &str, dest: &Path) -> Result<PathBuf> {
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest)
        .output()
        .context("running umoci (install umoci)")?;
    if !out.status.success() {
        bail!(
            "umoci unpack --image {}:{tag} {} failed: {}",
            layout.display(),
            dest.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(dest.join("rootfs"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn find<'a>(t: &'a [TreeEntry], p: &str) -> &'a TreeEntry {
        t.iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("{p} missing"))
    }

    #[test]
    fn umoci_unpack_of_multilayer_matches_its_description() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("ml");
        fixtures::multilayer_layout(&layout).unwrap();
        let rootfs = umoci_unpack(&layout, "latest", &tmp.path().join("u")).unwrap();
        let t = tree_snapshot(&rootfs);
        let paths: Vec<&str> = t.iter().map(|e| e.path.as_str()).collect();
        for gone in [
            "data/delete-me",
            "data/removed-dir",
            "opaque/old-a",
            "opaque/sub",
            "layer2/file",
        ] {
            assert!(!paths.contains(&gone), "{gone} should be gone");
        }
        assert!(!paths.iter().any(|p| p.contains(".wh.")));
        assert_eq!(find(&t, "bin/setuid").mode, 0o4755);
        assert_eq!(find(&t, "shared").mode, 0o2775);
        assert_eq!(find(&t, "shared").gid, 1000);
        assert_eq!(find(&t, "sticky").mode, 0o1777);
        let null = find(&t, "dev/null");
        assert_eq!((null.kind, null.rdev), (EntryKind::Char, Some((1, 3))));
        assert_eq!(find(&t, "data/fifo").kind, EntryKind::Fifo);
        assert_eq!(find(&t, "data/xattr-file").xattrs["user.berth"], b"value");
        assert_eq!(find(&t, "layer2/xattr-dir").xattrs["user.berth"], b"dir");
        let o = find(&t, "data/owned-nobody");
        assert_eq!((o.uid, o.gid, o.mode), (65534, 65534, 0o600));
        assert_eq!(find(&t, "data/old-mtime").mtime, 946_684_800);
        assert_eq!(find(&t, "etc/hello.txt").mtime, 1_500_000_100);
        assert_eq!(
            find(&t, "data/hardlink").hardlink_group.as_deref(),
            Some("data/hardlink")
        );
        assert_eq!(
            find(&t, "data/hardlink-target").hardlink_group.as_deref(),
            Some("data/hardlink")
        );
        assert_eq!(find(&t, "layer2/link").hardlink_group, None);
        assert_eq!(
            find(&t, "data/big.bin").size,
            fixtures::MULTILAYER_BIG_SIZE as u64
        );
        assert_eq!(find(&t, "data/abs-symlink").kind, EntryKind::File);
        assert_eq!(
            find(&t, "data/rel-symlink").link_target.as_deref(),
            Some("../etc/hello.txt")
        );
        let opaque: Vec<&str> = paths
            .iter()
            .copied()
            .filter(|p| p.starts_with("opaque/"))
            .collect();
        assert_eq!(opaque, vec!["opaque/new-c"]);
    }

    #[test]
    fn diff_reports_each_kind_of_change() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("ml");
        fixtures::multilayer_layout(&layout).unwrap();
        let a = umoci_unpack(&layout, "latest", &tmp.path().join("a")).unwrap();
        let b = umoci_unpack(&layout, "latest", &tmp.path().join("b")).unwrap();
        let ta = tree_snapshot(&a);
        assert_eq!(diff_trees(&ta, &tree_snapshot(&b)), Vec::<String>::new());

        fs::write(b.join("etc/hello.txt"), b"changed\n").unwrap();
        std::os::unix::fs::chown(b.join("data/owned-1000"), Some(0), None).unwrap();
        fs::remove_file(b.join("data/hardlink")).unwrap();
        fs::write(b.join("data/hardlink"), b"shared inode\n").unwrap();
        Command::new("setfattr")
            .args(["-x", "user.berth"])
            .arg(b.join("data/xattr-file"))
            .status()
            .unwrap();
        fs::remove_file(b.join("data/empty")).unwrap();
        fs::write(b.join("extra"), b"").unwrap();
        let d = diff_trees(&ta, &tree_snapshot(&b));
        let all = d.join("\n");
        for want in [
            "etc/hello.txt: size",
            "etc/hello.txt: content sha256",
            "data/owned-1000: owner 1000:1000 != 0:1000",
            "data/hardlink: hard-link group",
            "data/xattr-file: xattrs [user.berth=value] != []",
            "only in a: data/empty",
            "only in b: extra",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        let opts = DiffOpts {
            ignore_mtime: true,
            ignore_hardlinks: true,
            ignore_xattr_prefixes: vec!["user.".into()],
            ignore_paths: vec![
                "etc".into(),
                "data/empty".into(),
                "extra".into(),
                "data/owned-1000".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            diff_trees_with(&ta, &tree_snapshot(&b), &opts),
            Vec::<String>::new()
        );
    }

    #[test]
    fn snapshot_reads_trusted_xattrs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        fs::create_dir(&d).unwrap();
        let st = Command::new("setfattr")
            .args(["-n", "trusted.overlay.opaque", "-v", "y"])
            .arg(&d)
            .status()
            .unwrap();
        assert!(st.success());
        let t = tree_snapshot(tmp.path());
        assert_eq!(t[0].xattrs["trusted.overlay.opaque"], b"y");
    }
}

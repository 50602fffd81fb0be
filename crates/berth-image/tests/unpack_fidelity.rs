//! Fidelity: every entry type and attribute a layer can carry survives the unpack, and layers
//! unpacked by berth and merged by overlayfs equal `umoci unpack` of the same image.

mod unpack_support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_testutil::tarw::{tar_bytes, Entry};
use berth_testutil::{diff_trees, tree_snapshot, umoci_unpack, MountGuard};
use unpack_support::{list_xattrs, Sandbox};

/// `security.capability` v2 granting cap_net_bind_service (bit 10), effective.
fn cap_net_bind_service() -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

fn lmeta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_entry_type_and_attribute_is_kept() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (owners, devices, trusted xattrs)"
    );
    let sb = Sandbox::new();
    let long_name = format!("long/{}/file", "n".repeat(120));
    let long_target = format!("/{}", "t".repeat(150));
    let entries = vec![
        Entry::dir("./", 0o751).mtime(1_111_111_111),
        Entry::dir("d", 0o750)
            .owner(1000, 1001)
            .mtime(1_000_000_000)
            .xattr("user.dir", b"1")
            .xattr("trusted.berth", b"t"),
        Entry::file("d/f", 0o640, b"hello\n".to_vec())
            .owner(1002, 1003)
            .mtime(1_100_000_000)
            .xattr("user.a", b"b")
            .xattr("security.capability", cap_net_bind_service()),
        Entry::file("d/suid", 0o4755, b"#!/bin/sh\n".to_vec()).owner(1000, 1000),
        Entry::file("d/sgid", 0o2711, b"x".to_vec()).owner(0, 1000),
        Entry::dir("tmp", 0o1777),
        Entry::symlink("d/link", "f")
            .owner(1004, 1005)
            .mtime(1_200_000_000),
        Entry::symlink("abs", "/etc/passwd").xattr("trusted.berth", b"on-a-symlink"),
        Entry::symlink("longlink", &long_target),
        Entry::hardlink("d/hard", "d/f"),
        Entry::hardlink("./hard-dotslash", "./d/f"),
        Entry::fifo("fifo", 0o620)
            .owner(7, 8)
            .xattr("trusted.berth", b"on-a-fifo"),
        Entry::char_dev("null", 0o666, 1, 3),
        Entry::block_dev("loop", 0o660, 7, 0).owner(0, 6),
        Entry::whiteout("d/gone"),
        Entry::whiteout("never-existed-dir/gone"),
        Entry::dir("op", 0o755),
        Entry::opaque("op"),
        Entry::file("op/kept", 0o644, b"k".to_vec()),
        Entry::dir("fake", 0o755).xattr("trusted.overlay.redirect", b"/etc"),
        Entry::file("implicit/parent/file", 0o600, b"p".to_vec()),
        Entry::file("nano", 0o644, b"n".to_vec()).pax("mtime", b"1234567890.123456789"),
        Entry::file(&long_name, 0o644, b"long".to_vec()),
        Entry::file("big-id", 0o644, b"i".to_vec()).owner(100_000, 200_000),
        Entry::file("over", 0o644, b"one".to_vec()),
        Entry::file("over", 0o600, b"two".to_vec()),
        Entry::dir("dir2", 0o755),
        Entry::file("dir2/x", 0o644, b"x".to_vec()),
        Entry::file("dir2", 0o644, b"now a file".to_vec()),
        Entry::file("to-dir", 0o644, b"file first".to_vec()),
        Entry::dir("to-dir", 0o705),
        Entry::dir("d", 0o750)
            .owner(1000, 1001)
            .mtime(1_000_000_000),
    ];
    let t = tar_bytes(&entries).unwrap();
    let stats = sb.unpack_checked(&t).expect("unpack");
    assert_eq!(stats.entries, entries.len() as u64);
    let file_bytes: usize = entries.iter().map(|e| e.data.len()).sum();
    assert_eq!(stats.bytes, file_bytes as u64);

    let l = &sb.layer;
    let root = lmeta(l);
    assert_eq!(root.mode() & 0o7777, 0o751);
    assert_eq!(root.mtime(), 1_111_111_111);

    let d = lmeta(&l.join("d"));
    assert!(d.is_dir());
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 1000, 1001));
    assert_eq!(
        d.mtime(),
        1_000_000_000,
        "dir mtime set after its children were written"
    );
    let x = list_xattrs(&l.join("d"));
    assert_eq!(x.get("user.dir").map(Vec::as_slice), Some(&b"1"[..]));
    assert_eq!(x.get("trusted.berth").map(Vec::as_slice), Some(&b"t"[..]));

    let f = lmeta(&l.join("d/f"));
    assert!(f.is_file());
    assert_eq!((f.mode() & 0o7777, f.uid(), f.gid()), (0o640, 1002, 1003));
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_100_000_000, 0));
    assert_eq!(fs::read(l.join("d/f")).unwrap(), b"hello\n");
    assert_eq!(
        f.nlink(),
        3,
        "d/f, d/hard and hard-dotslash share the inode"
    );
    let x = list_xattrs(&l.join("d/f"));
    assert_eq!(x.get("user.a").map(Vec::as_slice), Some(&b"b"[..]));
    assert_eq!(
        x.get("security.capability"),
        Some(&cap_net_bind_service()),
        "capability set after chown (which clears it)"
    );
    for h in ["d/hard", "hard-dotslash"] {
        assert_eq!(lmeta(&l.join(h)).ino(), f.ino(), "{h}");
    }

    let s = lmeta(&l.join("d/suid"));
    assert_eq!(
        (s.mode() & 0o7777, s.uid(), s.gid()),
        (0o4755, 1000, 1000),
        "chmod after chown"
    );
    let s = lmeta(&l.join("d/sgid"));
    assert_eq!((s.mode() & 0o7777, s.gid()), (0o2711, 1000));
    assert_eq!(lmeta(&l.join("tmp")).mode() & 0o7777, 0o1777);

    let s = lmeta(&l.join("d/link"));
    assert!(s.file_type().is_symlink());
    assert_eq!((s.uid(), s.gid(), s.mtime()), (1004, 1005, 1_200_000_000));
    assert_eq!(fs::read_link(l.join("d/link")).unwrap(), Path::new("f"));
    assert_eq!(
        fs::read_link(l.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(l.join("longlink")).unwrap(),
        Path::new(&long_target)
    );

    let p = lmeta(&l.join("fifo"));
    assert!(p.file_type().is_fifo());
    assert_eq!((p.mode() & 0o7777, p.uid(), p.gid()), (0o620, 7, 8));
    let c = lmeta(&l.join("null"));
    assert!(c.file_type().is_char_device());
    assert_eq!(
        (c.mode() & 0o7777, c.rdev()),
        (0o666, rustix::fs::makedev(1, 3))
    );
    let b = lmeta(&l.join("loop"));
    assert!(b.file_type().is_block_device());
    assert_eq!(
        (b.mode() & 0o7777, b.gid(), b.rdev()),
        (0o660, 6, rustix::fs::makedev(7, 0))
    );

    for w in ["d/gone", "never-existed-dir/gone"] {
        let m = lmeta(&l.join(w));
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "{w} is an overlay whiteout"
        );
    }
    assert!(!l.join("d/.wh.gone").exists());
    let x = list_xattrs(&l.join("op"));
    assert_eq!(
        x.get("trusted.overlay.opaque").map(Vec::as_slice),
        Some(&b"y"[..])
    );
    assert!(!l.join("op/.wh..wh..opq").exists());
    assert!(l.join("op/kept").is_file());
    assert!(
        list_xattrs(&l.join("fake")).is_empty(),
        "overlay xattrs from the tar are dropped"
    );

    assert_eq!(lmeta(&l.join("implicit")).mode() & 0o7777, 0o755);
    assert_eq!(lmeta(&l.join("implicit/parent")).mode() & 0o7777, 0o755);
    let n = lmeta(&l.join("nano"));
    assert_eq!((n.mtime(), n.mtime_nsec()), (1_234_567_890, 123_456_789));
    assert_eq!(fs::read(l.join(&long_name)).unwrap(), b"long");
    let i = lmeta(&l.join("big-id"));
    assert_eq!((i.uid(), i.gid()), (100_000, 200_000));

    let o = lmeta(&l.join("over"));
    assert_eq!(
        (o.mode() & 0o7777, fs::read(l.join("over")).unwrap()),
        (0o600, b"two".to_vec())
    );
    assert!(lmeta(&l.join("dir2")).is_file());
    assert_eq!(fs::read(l.join("dir2")).unwrap(), b"now a file");
    let td = lmeta(&l.join("to-dir"));
    assert!(td.is_dir());
    assert_eq!(td.mode() & 0o7777, 0o705);
}

/// Mounts `lowers` (top first) as a read-only overlay on `target`; unmounted when the guard drops,
/// also when the test panics.
fn mount_overlay(lowers: &[std::path::PathBuf], target: &Path) -> MountGuard {
    let opts = format!(
        "lowerdir={}",
        lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    );
    let data = std::ffi::CString::new(opts.clone()).unwrap();
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(data.as_c_str()),
    )
    .unwrap_or_else(|e| panic!("mounting overlay {opts}: {e}"));
    MountGuard::new(target)
}

/// Reads an OCI layout's `latest` manifest and returns its layers (media type, blob path).
fn layout_layers(layout: &Path) -> Vec<(String, std::path::PathBuf)> {
    let blob = |digest: &str| layout.join("blobs").join(digest.replacen(':', "/", 1));
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .expect("tag latest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(desc["digest"].as_str().unwrap())).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_string(),
                blob(l["digest"].as_str().unwrap()),
            )
        })
        .collect()
}

fn decompressed(media_type: &str, blob: &Path) -> Box<dyn std::io::Read> {
    let f = std::io::BufReader::new(fs::File::open(blob).unwrap());
    if media_type.ends_with("gzip") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else if media_type.ends_with("zstd") {
        Box::new(zstd::Decoder::with_buffer(f).unwrap())
    } else {
        Box::new(f)
    }
}

/// Unpacks every layer of `layout:latest` with berth, merges them with overlayfs and compares
/// the merged tree with `umoci unpack` of the same image.
fn compare_with_umoci<E: std::fmt::Debug>(make: fn(&Path) -> Result<(), E>) {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (mounts, owners)"
    );
    let tmp = tempfile::Builder::new()
        .prefix("berth-umoci-")
        .tempdir()
        .unwrap();
    let layout = tmp.path().join("layout");
    make(&layout).expect("build fixture layout");

    let mut lowers = Vec::new();
    for (i, (media_type, blob)) in layout_layers(&layout).iter().enumerate() {
        let dir = tmp.path().join(format!("layer{i}"));
        fs::create_dir(&dir).unwrap();
        // Layer dirs are 0755 like the store's (overlay shows the top layer root's mode).
        unpack_support::set_mode(&dir, 0o755);
        berth_image::unpack::unpack_layer(
            decompressed(media_type, blob),
            &dir,
            &unpack_support::opts(),
        )
        .unwrap_or_else(|e| panic!("unpacking layer {i}: {e}"));
        lowers.push(dir);
    }
    if lowers.len() == 1 {
        // overlayfs without an upper dir needs two lower dirs.
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        unpack_support::set_mode(&empty, 0o755);
        lowers.push(empty);
    }
    lowers.reverse();
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();

    let theirs = umoci_unpack(&layout, "latest", &tmp.path().join("bundle"))
        .unwrap_or_else(|e| panic!("{e:#}"));

    let _mount = mount_overlay(&lowers, &merged);
    // Everything is compared: paths, types, modes, owners, sizes, contents, link targets,
    // devices, xattrs, mtimes and hard-link groups (overlayfs hides its own trusted.overlay.*
    // xattrs, so whiteouts and opaque markers do not show up in the merged tree, as they should
    // not).
    let ours_tree = tree_snapshot(&merged);
    let diffs = diff_trees(&ours_tree, &tree_snapshot(&theirs));
    assert!(
        diffs.is_empty(),
        "berth's merged layers (a) differ from umoci's rootfs (b):\n{}",
        diffs.join("\n")
    );
    assert!(ours_tree.len() > 5, "compared too little: {ours_tree:?}");
    // The root itself (not in the snapshots): mode and owner. Its mtime is not compared: the
    // fixtures' layers have no `./` entry, so nothing in the image describes it.
    let (a, b) = (lmeta(&merged), lmeta(&theirs));
    assert_eq!(
        (a.mode(), a.uid(), a.gid()),
        (b.mode(), b.uid(), b.gid()),
        "root directory"
    );
}

#[test]
fn multilayer_fixture_matches_umoci() {
    compare_with_umoci(berth_testutil::fixtures::multilayer_layout);
}

#[test]
fn busybox_fixture_matches_umoci() {
    compare_with_umoci(berth_testutil::fixtures::busybox_layout);
}

#[test]
fn uncompressed_fixture_matches_umoci() {
    compare_with_umoci(berth_testutil::fixtures::uncompressed_layout);
}

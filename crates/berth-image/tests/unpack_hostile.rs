//! Hostile layers: whatever the tar says, nothing outside the layer directory is created, changed,
//! chmodded or chowned, and refused entries are named in the error.

mod unpack_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

use berth_image::unpack::{unpack_layer, UnpackError};
use berth_testutil::tarw::{tar_bytes, Entry};
use unpack_support::{assert_err_names, opts, Sandbox};

fn tar(entries: &[Entry]) -> Vec<u8> {
    tar_bytes(entries).expect("build tar")
}

#[test]
fn dotdot_name_is_refused() {
    let sb = Sandbox::new();
    let t = tar(&[Entry::file("../escape", 0o644, b"x".to_vec())]);
    let e = assert_err_names(sb.unpack_checked(&t), "../escape");
    assert!(matches!(e, UnpackError::Escape { .. }), "{e:?}");
    assert!(!sb.outer.path().join("mid/escape").exists());
}

#[test]
fn dotdot_inside_name_is_refused() {
    let sb = Sandbox::new();
    let t = tar(&[
        Entry::dir("a", 0o755),
        Entry::file("a/../../escape", 0o644, b"x".to_vec()),
    ]);
    assert_err_names(sb.unpack_checked(&t), "a/../../escape");
    assert!(!sb.outer.path().join("mid/escape").exists());
    assert!(!sb.outer.path().join("escape").exists());
}

#[test]
fn absolute_name_lands_inside_the_layer() {
    let sb = Sandbox::new();
    let host_file = sb.host().join("file");
    let abs = format!("{}", host_file.display());
    let t = tar(&[
        Entry::file("/abs/path", 0o644, b"inside\n".to_vec()),
        // The absolute name of a real host file: must be created under the layer instead.
        Entry::file(&abs, 0o666, b"overwritten?\n".to_vec()),
    ]);
    sb.unpack_checked(&t)
        .expect("absolute names are made relative");
    assert_eq!(fs::read(sb.layer.join("abs/path")).unwrap(), b"inside\n");
    let inside = sb.layer.join(abs.trim_start_matches('/'));
    assert_eq!(fs::read(inside).unwrap(), b"overwritten?\n");
}

/// Removes a file the test may have wrongly created on the host, so a regression does not leave
/// litter behind (the assertion still fails).
struct RemoveIfCreated(std::path::PathBuf);

impl Drop for RemoveIfCreated {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn symlink_to_root_then_entries_beneath_it() {
    let sb = Sandbox::new();
    let probe = format!("berth-unpack-probe-{}", std::process::id());
    let host_probe = std::path::Path::new("/").join(&probe);
    assert!(
        !host_probe.exists(),
        "{} exists before the test",
        host_probe.display()
    );
    let _cleanup = RemoveIfCreated(host_probe.clone());
    let t = tar(&[
        Entry::symlink("evil", "/"),
        Entry::file(format!("evil/{probe}"), 0o644, b"a\n".to_vec()),
        Entry::symlink("up", "../.."),
        Entry::file("up/file-via-dotdot-link", 0o644, b"b\n".to_vec()),
        Entry::file("up/host/file", 0o644, b"clobbered\n".to_vec()),
    ]);
    sb.unpack_checked(&t)
        .expect("links resolve inside the layer");
    assert!(
        !host_probe.exists(),
        "the unpack wrote through `evil -> /` onto the host"
    );
    // Both links resolve to the layer root.
    assert_eq!(fs::read(sb.layer.join(&probe)).unwrap(), b"a\n");
    assert_eq!(
        fs::read(sb.layer.join("file-via-dotdot-link")).unwrap(),
        b"b\n"
    );
    assert_eq!(
        fs::read(sb.layer.join("host/file")).unwrap(),
        b"clobbered\n"
    );
}

#[test]
fn symlink_to_outside_dir_then_dir_beneath_it() {
    // Inside the layer root, `../../host` is `/host`: here the layer has its own `host/`, so the
    // entries land there.
    let sb = Sandbox::new();
    let t = tar(&[
        Entry::dir("host", 0o755),
        Entry::symlink("out", "../../host"),
        Entry::dir("out/dir", 0o777).owner(1234, 1234),
        Entry::file("out/dir/planted", 0o644, b"x".to_vec()),
    ]);
    sb.unpack_checked(&t)
        .expect("links resolve inside the layer");
    let d = fs::metadata(sb.layer.join("host/dir")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o777);
    assert!(sb.layer.join("host/dir/planted").exists());

    // Without it, the link dangles: creating beneath it fails, naming the entry.
    for target in ["../../host".to_string(), sb.host().display().to_string()] {
        let sb = Sandbox::new();
        let t = tar(&[
            Entry::symlink("out", &target),
            Entry::dir("out/dir", 0o777),
            Entry::file("out/dir/planted", 0o644, b"x".to_vec()),
        ]);
        assert_err_names(sb.unpack_checked(&t), "out/dir");
        assert!(!sb.host().join("dir/planted").exists());
    }
}

#[test]
fn hardlinks_to_outside_names_are_refused() {
    let sb = Sandbox::new();
    let passwd_links = fs::metadata("/etc/passwd").unwrap().nlink();
    let t = tar(&[Entry::hardlink("h", "../../host/file")]);
    let e = assert_err_names(sb.unpack_checked(&t), "\"h\"");
    assert!(matches!(e, UnpackError::Escape { .. }), "{e:?}");

    let t = tar(&[Entry::hardlink("h2", "/etc/passwd")]);
    let e = assert_err_names(sb.unpack_checked(&t), "h2");
    assert!(matches!(e, UnpackError::MissingLinkTarget { .. }), "{e:?}");
    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd_links);
    assert!(!sb.layer.join("h").exists() && !sb.layer.join("h2").exists());
}

#[test]
fn hardlink_through_a_symlink_stays_inside() {
    let sb = Sandbox::new();
    let host_file = sb.host().join("file");
    let host_links = fs::metadata(&host_file).unwrap().nlink();
    // A hardlink to a symlink links the symlink itself, never what it points to.
    let t = tar(&[
        Entry::symlink("s", "../../host/file"),
        Entry::hardlink("h", "s"),
        Entry::symlink("abs", host_file.to_str().unwrap()),
        Entry::hardlink("h-abs", "abs"),
    ]);
    sb.unpack_checked(&t).expect("links to symlinks are fine");
    for (h, target) in [
        ("h", "../../host/file"),
        ("h-abs", host_file.to_str().unwrap()),
    ] {
        let md = fs::symlink_metadata(sb.layer.join(h)).unwrap();
        assert!(
            md.file_type().is_symlink(),
            "{h} should be the symlink itself"
        );
        assert_eq!(
            fs::read_link(sb.layer.join(h)).unwrap().to_str(),
            Some(target)
        );
    }
    assert_eq!(fs::metadata(&host_file).unwrap().nlink(), host_links);

    // A hardlink whose target's *directory* is a symlink out: resolved inside the layer, where
    // the file does not exist.
    let sb = Sandbox::new();
    let t = tar(&[
        Entry::symlink("d", "../../host"),
        Entry::hardlink("h", "d/file"),
    ]);
    let e = assert_err_names(sb.unpack_checked(&t), "\"h\"");
    assert!(matches!(e, UnpackError::MissingLinkTarget { .. }), "{e:?}");
    let sb = Sandbox::new();
    let t = tar(&[
        Entry::symlink("d", sb.host().to_str().unwrap()),
        Entry::hardlink("h", "d/file"),
    ]);
    assert_err_names(sb.unpack_checked(&t), "\"h\"");
}

#[test]
fn whiteouts_naming_dotdot_are_refused() {
    for name in [".wh...", "a/.wh...", "a/.wh..", "a/.wh."] {
        let sb = Sandbox::new();
        let t = tar(&[Entry::dir("a", 0o755), Entry::file(name, 0o644, Vec::new())]);
        let e = assert_err_names(sb.unpack_checked(&t), name);
        assert!(
            matches!(e, UnpackError::BadWhiteout { .. }),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn pax_size_disagreeing_with_ustar_size_is_refused() {
    let sb = Sandbox::new();
    // The ustar header says 0 bytes, the PAX record 1024: a parser trusting ustar sees an empty
    // `confused` followed by `smuggled`; one trusting PAX sees `confused` holding those bytes.
    let inner = tar(&[Entry::file("smuggled", 0o644, b"hidden\n".to_vec())]);
    let t = tar(&[
        Entry::file("ok", 0o644, b"fine\n".to_vec()),
        Entry::file("confused", 0o644, inner[..1024].to_vec())
            .pax("size", b"1024")
            .header_size(0),
    ]);
    let e = assert_err_names(sb.unpack_checked(&t), "confused");
    assert!(e.to_string().contains("PAX size"), "{e}");
    assert!(!sb.layer.join("confused").exists());
    assert!(!sb.layer.join("smuggled").exists());

    let sb = Sandbox::new();
    let t = tar(&[Entry::file("nonsense", 0o644, b"x".to_vec()).pax("size", b"-1")]);
    assert_err_names(sb.unpack_checked(&t), "nonsense");
}

/// Rewrites the size field of the header starting at `off` and fixes its checksum.
fn patch_size(t: &mut [u8], off: usize, field: [u8; 12]) {
    t[off + 124..off + 136].copy_from_slice(&field);
    let h = tar::Header::from_byte_slice(&t[off..off + 512]);
    let mut h = h.clone();
    h.set_cksum();
    t[off..off + 512].copy_from_slice(h.as_bytes());
}

#[test]
fn negative_and_overflowing_sizes_are_refused() {
    let mut fields = Vec::new();
    // base-256 -1
    fields.push([0xffu8; 12]);
    // base-256 -2^40
    let mut f = [0xffu8; 12];
    f[7..].copy_from_slice(&[0, 0, 0, 0, 0]);
    fields.push(f);
    // base-256 2^70
    let mut f = [0u8; 12];
    f[0] = 0x80;
    f[3] = 0x01;
    fields.push(f);
    for field in fields {
        let sb = Sandbox::new();
        let mut t = tar(&[Entry::file("badsize", 0o644, b"x".to_vec())]);
        patch_size(&mut t, 0, field);
        assert_err_names(sb.unpack_checked(&t), "badsize");
    }
}

#[test]
fn nul_in_names_is_refused() {
    let sb = Sandbox::new();
    let t = tar(&[Entry::file("plain", 0o644, b"x".to_vec()).pax("path", b"a\0../../escape")]);
    assert_err_names(sb.unpack_checked(&t), "a\\0");
    assert!(!sb.layer.join("a").exists());
}

#[test]
fn metadata_never_goes_through_a_symlink() {
    let sb = Sandbox::new();
    let host = sb.host();
    let t = tar(&[
        // A dir entry with the name of a symlink to a host dir: the symlink is replaced, the host
        // dir keeps its mode and owner.
        Entry::symlink("link", "../../host/dir"),
        Entry::dir("link", 0o777)
            .owner(4321, 4321)
            .xattr("user.berth", b"pwn"),
        // Same for a file entry over a symlink to a host file, with setuid bits.
        Entry::symlink("flink", "../../host/file"),
        Entry::file("flink", 0o4777, b"replaced\n".to_vec()).owner(4321, 4321),
        // And a device and fifo over symlinks.
        Entry::symlink("nlink", "../../host/file"),
        Entry::fifo("nlink", 0o666).owner(4321, 4321),
        Entry::symlink(".wh.x", "../../host/file"),
        Entry::symlink("x", "../../host/file"),
        Entry::whiteout("x"),
    ]);
    sb.unpack_checked(&t)
        .expect("replacing symlinks is allowed");
    let md = fs::symlink_metadata(sb.layer.join("link")).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o777);
    assert_eq!(fs::read(sb.layer.join("flink")).unwrap(), b"replaced\n");
    assert!(fs::symlink_metadata(sb.layer.join("x"))
        .unwrap()
        .file_type()
        .is_char_device_like());
    assert_eq!(
        fs::metadata(host.join("dir")).unwrap().mode() & 0o7777,
        0o750
    );

    // An opaque marker beneath a symlink out resolves inside the layer, where the dir is
    // missing: refused, and the host dir gets no xattr.
    let sb = Sandbox::new();
    let t = tar(&[Entry::symlink("op", "../../host/dir"), Entry::opaque("op")]);
    assert_err_names(sb.unpack_checked(&t), "op/.wh..wh..opq");
    assert!(unpack_support::list_xattrs(&sb.host().join("dir")).is_empty());
}

trait CharDev {
    fn is_char_device_like(&self) -> bool;
}
impl CharDev for fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

/// A tar stream generated on the fly: `files` files of `each` zero bytes, then the end marker.
struct ZeroTar {
    files: u32,
    each: u64,
    next: u32,
    /// Bytes of the current header still to emit, and zero bytes after it.
    header: Vec<u8>,
    hpos: usize,
    zeros: u64,
    done: bool,
}

impl ZeroTar {
    fn new(files: u32, each: u64) -> ZeroTar {
        ZeroTar {
            files,
            each,
            next: 0,
            header: Vec::new(),
            hpos: 0,
            zeros: 0,
            done: false,
        }
    }
}

impl Read for ZeroTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.hpos < self.header.len() {
                let n = buf.len().min(self.header.len() - self.hpos);
                buf[..n].copy_from_slice(&self.header[self.hpos..self.hpos + n]);
                self.hpos += n;
                return Ok(n);
            }
            if self.zeros > 0 {
                let n = (buf.len() as u64).min(self.zeros) as usize;
                buf[..n].fill(0);
                self.zeros -= n as u64;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            if self.next == self.files {
                self.done = true;
                self.zeros = 1024;
                continue;
            }
            let e = Entry::file(format!("zeros/{}", self.next), 0o644, Vec::new())
                .header_size(self.each);
            let t = tar_bytes(&[e]).unwrap();
            self.header = t[..512].to_vec();
            self.hpos = 0;
            self.zeros = self.each.div_ceil(512) * 512;
            self.next += 1;
        }
    }
}

/// Counts the bytes allocated by each thread, so a test can measure the peak heap of the unpack
/// it runs without noise from tests running in parallel (peak RSS is per process).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: every allocation and deallocation is the system allocator's, with the caller's
// layout unchanged; the counting beside it never allocates (thread-local cells, `try_with` so
// nothing runs during thread teardown).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on as `GlobalAlloc::alloc` requires.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let _ = LIVE.try_with(|l| {
                let v = l.get() + layout.size() as isize;
                l.set(v);
                let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
            });
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above (the system allocator) with this layout.
        unsafe { System.dealloc(ptr, layout) };
        let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as isize));
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result and the peak growth of this thread's heap while it ran.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get) - base;
    (r, peak.max(0) as usize)
}

#[test]
fn gigabytes_of_layer_in_bounded_memory() {
    let sb = Sandbox::new();
    let each = 256 << 20;
    let (stats, grown) = peak_heap(|| unpack_layer(ZeroTar::new(8, each), &sb.layer, &opts()));
    let stats = stats.expect("unpack");
    assert_eq!(stats.bytes, 8 * each);
    assert_eq!(stats.entries, 8);
    assert_eq!(fs::metadata(sb.layer.join("zeros/7")).unwrap().len(), each);
    assert!(
        grown < 2 << 20,
        "the heap grew by {grown} bytes while unpacking 2 GiB"
    );
}

#[test]
fn huge_extension_header_is_refused_without_buffering_it() {
    let sb = Sandbox::new();
    // A PAX header claiming 1 GiB of records, streamed: must be refused, not read into memory.
    let mut head = tar(&[Entry::file("victim", 0o644, Vec::new()).pax("comment", b"x")]);
    head.truncate(512);
    let mut h = tar::Header::from_byte_slice(&head).clone();
    h.set_size(1 << 30);
    h.set_cksum();
    let stream = io::Cursor::new(h.as_bytes().to_vec()).chain(io::repeat(b'9').take(1 << 30));
    let (r, grown) = peak_heap(|| unpack_layer(stream, &sb.layer, &opts()));
    assert_err_names(r, "PaxHeaders");
    assert!(grown < 2 << 20, "the heap grew by {grown} bytes");
}

#[test]
fn symlink_out_in_one_layer_then_entries_beneath_it_in_the_next() {
    // Each layer unpacks into its own directory: the second layer's `evil/...` makes a real
    // directory there (overlayfs then shows it over the first layer's symlink).
    let sb = Sandbox::new();
    let lower = sb.outer.path().join("mid/lower");
    fs::create_dir(&lower).unwrap();
    // The first layer's directory is inside the snapshot: leave it out of the comparison.
    let outside = || {
        let mut m = sb.snapshot();
        m.retain(|k, _| !k.starts_with("mid/lower"));
        m
    };
    let before = outside();
    let l1 = tar(&[
        Entry::symlink("evil", "../../host"),
        Entry::symlink("root", "/"),
    ]);
    unpack_layer(&l1[..], &lower, &opts()).expect("layer 1");
    let l2 = tar(&[
        Entry::file("evil/file", 0o666, b"clobbered\n".to_vec()),
        Entry::dir("root/etc", 0o777),
        Entry::file("root/etc/passwd", 0o644, b"pwned\n".to_vec()),
    ]);
    sb.unpack(&l2).expect("layer 2");
    assert_eq!(before, outside(), "a layer wrote outside its directory");
    assert!(fs::symlink_metadata(sb.layer.join("evil"))
        .unwrap()
        .is_dir());
    assert_eq!(
        fs::read(sb.layer.join("root/etc/passwd")).unwrap(),
        b"pwned\n"
    );
}

#[test]
fn truncated_stream_names_the_entry() {
    let sb = Sandbox::new();
    let t = tar(&[
        Entry::file("whole", 0o644, b"x".to_vec()),
        Entry::file("cut-short", 0o644, vec![7u8; 4096]),
    ]);
    // Cut in the middle of the second file's data.
    let cut = 512 + 512 + 512 + 1000;
    let e = assert_err_names(sb.unpack_checked(&t[..cut]), "cut-short");
    assert!(matches!(e, UnpackError::Read { .. }), "{e:?}");
}

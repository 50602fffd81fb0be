//! Fixture OCI image layouts written by hand: tar + gzip/zstd + sha256, an
//! `oci-layout` file, `index.json` and `blobs/sha256/`. Every fixture is
//! deterministic (fixed mtimes, fixed content), so the same function always
//! produces the same digests.

use crate::rootfs::busybox_rootfs;
use crate::tarw::{Entry, Kind, TarWriter, DEFAULT_MTIME};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The PATH every fixture image sets in its config.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The `created` time written into every fixture config.
pub const CREATED: &str = "2024-01-02T03:04:05Z";

/// The OCI architecture name of the host (`amd64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A layer's compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => MT_LAYER_TAR,
            Compression::Gzip => MT_LAYER_GZIP,
            Compression::Zstd => MT_LAYER_ZSTD,
        }
    }
}

/// An OCI platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(String::from),
        }
    }
    /// linux/HOST_ARCH.
    pub fn host() -> Platform {
        Platform::new("linux", host_arch(), None)
    }
    pub fn to_json(&self) -> Value {
        let mut v = json!({"os": self.os, "architecture": self.architecture});
        if let Some(var) = &self.variant {
            v["variant"] = json!(var);
        }
        v
    }
}

/// An OCI content descriptor.
#[derive(Clone, Debug)]
pub struct Descriptor {
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn to_json(&self) -> Value {
        let mut v = json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size});
        if let Some(p) = &self.platform {
            v["platform"] = p.to_json();
        }
        v
    }
    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// A layer blob written into a layout, with its uncompressed digest.
#[derive(Clone, Debug)]
pub struct Layer {
    pub desc: Descriptor,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            n: 0,
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

enum Encoder {
    Plain(Hashing<io::BufWriter<fs::File>>),
    Gzip(flate2::write::GzEncoder<Hashing<io::BufWriter<fs::File>>>),
    Zstd(zstd::stream::write::Encoder<'static, Hashing<io::BufWriter<fs::File>>>),
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

impl Encoder {
    fn finish(self) -> io::Result<Hashing<io::BufWriter<fs::File>>> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

/// Writes an OCI image layout.
pub struct LayoutWriter {
    root: PathBuf,
    refs: Vec<(String, Descriptor)>,
    tmp_seq: u64,
}

impl LayoutWriter {
    /// Creates `out` (it may exist, but must not hold an `index.json` yet) with
    /// `oci-layout` and `blobs/sha256/`.
    pub fn create(out: &Path) -> Result<LayoutWriter> {
        if out.join("index.json").exists() {
            bail!("{} already holds an OCI layout", out.display());
        }
        fs::create_dir_all(out.join("blobs/sha256"))
            .with_context(|| format!("creating {}/blobs/sha256", out.display()))?;
        fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(LayoutWriter {
            root: out.to_path_buf(),
            refs: Vec::new(),
            tmp_seq: 0,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a blob in this layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Writes a blob and returns its descriptor.
    pub fn write_blob(&self, media_type: &str, data: &[u8]) -> Result<Descriptor> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest);
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, data)?;
            fs::rename(&tmp, &path)?;
        }
        Ok(Descriptor {
            media_type: media_type.into(),
            digest,
            size: data.len() as u64,
            platform: None,
        })
    }

    /// Streams a layer: `build` appends entries, the result is compressed and
    /// hashed on the fly and stored as a blob.
    pub fn write_layer(
        &mut self,
        compression: Compression,
        build: impl FnOnce(&mut TarWriter<Box<dyn Write + '_>>) -> Result<()>,
    ) -> Result<Layer> {
        self.write_layer_stream(compression, |w| {
            let mut tw = TarWriter::new(Box::new(w) as Box<dyn Write + '_>);
            build(&mut tw)?;
            tw.finish()?;
            Ok(())
        })
    }

    /// Streams raw layer bytes (no end-of-archive marker is added).
    pub fn write_layer_stream(
        &mut self,
        compression: Compression,
        write: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<Layer> {
        self.tmp_seq += 1;
        let tmp = self.root.join("blobs/sha256").join(format!(
            ".layer-{}-{}.tmp",
            std::process::id(),
            self.tmp_seq
        ));
        let file = io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
        let compressed = Hashing::new(file);
        let enc = match compression {
            Compression::None => Encoder::Plain(compressed),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                compressed,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(compressed, 3)?),
        };
        let mut raw = Hashing::new(enc);
        write(&mut raw)?;
        let diff_id = raw.digest();
        let compressed = raw.inner.finish()?;
        let digest = compressed.digest();
        let size = compressed.n;
        let file = compressed.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.blob_path(&digest))?;
        Ok(Layer {
            desc: Descriptor {
                media_type: compression.media_type().into(),
                digest,
                size,
                platform: None,
            },
            diff_id,
        })
    }

    /// Writes a layer from a list of entries.
    pub fn write_layer_entries(
        &mut self,
        compression: Compression,
        entries: &[Entry],
    ) -> Result<Layer> {
        self.write_layer(compression, |tw| {
            for e in entries {
                tw.append(e)?;
            }
            Ok(())
        })
    }

    /// Writes a layer from raw tar bytes (which may be anything, even
    /// malformed), compressing them as asked.
    pub fn write_layer_bytes(&mut self, compression: Compression, tar: &[u8]) -> Result<Layer> {
        self.write_layer_stream(compression, |w| Ok(w.write_all(tar)?))
    }

    /// Writes a layer holding the tree under `src` (see [`dir_entries`]).
    pub fn write_layer_from_dir(&mut self, compression: Compression, src: &Path) -> Result<Layer> {
        let entries = dir_entries(src)?;
        self.write_layer(compression, |tw| {
            for e in entries {
                let e = if e.kind == Kind::File {
                    let mut e = e;
                    let rel = String::from_utf8_lossy(&e.name).into_owned();
                    e.data = fs::read(src.join(&rel))
                        .with_context(|| format!("reading {}", src.join(&rel).display()))?;
                    e
                } else {
                    e
                };
                tw.append(&e)?;
            }
            Ok(())
        })
    }

    /// Writes a config and manifest for `layers` and returns the manifest's
    /// descriptor (with `platform` set). `config` is the image config's
    /// `config` object (Cmd, Env, ...).
    pub fn write_image(
        &self,
        platform: &Platform,
        config: Value,
        layers: &[Layer],
    ) -> Result<Descriptor> {
        let mut cfg = json!({
            "created": CREATED,
            "architecture": platform.architecture,
            "os": platform.os,
            "config": config,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|_| json!({
                "created": CREATED,
                "created_by": "berth-testutil fixture layer",
            })).collect::<Vec<_>>(),
        });
        if let Some(v) = &platform.variant {
            cfg["variant"] = json!(v);
        }
        let cfg_desc = self.write_blob(MT_OCI_CONFIG, &serde_json::to_vec(&cfg)?)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": cfg_desc.to_json(),
            "layers": layers.iter().map(|l| l.desc.to_json()).collect::<Vec<_>>(),
        });
        let mut desc = self.write_blob(MT_OCI_MANIFEST, &serde_json::to_vec(&manifest)?)?;
        desc.platform = Some(platform.clone());
        Ok(desc)
    }

    /// Writes an image index blob over `manifests` and returns its descriptor.
    pub fn write_index_blob(&self, manifests: &[Descriptor]) -> Result<Descriptor> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": manifests.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
        });
        self.write_blob(MT_OCI_INDEX, &serde_json::to_vec(&index)?)
    }

    /// Records `tag` -> `desc` for `index.json`.
    pub fn tag(&mut self, tag: &str, desc: &Descriptor) {
        self.refs.retain(|(t, _)| t != tag);
        self.refs.push((tag.to_string(), desc.clone()));
    }

    /// Writes `index.json`.
    pub fn finish(self) -> Result<()> {
        let manifests: Vec<Value> = self
            .refs
            .iter()
            .map(|(tag, d)| {
                let mut v = d.to_json();
                v["annotations"] = json!({ ANNOTATION_REF_NAME: tag });
                v
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": manifests,
        });
        fs::write(self.root.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }
}

/// Tar entries for the tree under `src` (sorted, parents first, names relative
/// without a leading `./`), with owners and modes taken from the files and
/// mtimes set to [`DEFAULT_MTIME`] so the result is deterministic. Regular
/// files carry no data yet (their `name` is the path relative to `src`);
/// files sharing an inode become hard links to the first name.
pub fn dir_entries(src: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut inodes: std::collections::HashMap<(u64, u64), Vec<u8>> = Default::default();
    walk(src, src, &mut out, &mut inodes)?;
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<Entry>,
    inodes: &mut std::collections::HashMap<(u64, u64), Vec<u8>>,
) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let md = fs::symlink_metadata(&path)?;
        let ft = md.file_type();
        let mode = md.mode() & 0o7777;
        let e = if ft.is_dir() {
            Entry::dir(&rel, mode)
        } else if ft.is_symlink() {
            let t = fs::read_link(&path)?;
            Entry::symlink(&rel, t.as_os_str().as_encoded_bytes())
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = inodes.get(&(md.dev(), md.ino())) {
                    out.push(
                        Entry::hardlink(&rel, first.clone())
                            .owner(md.uid() as u64, md.gid() as u64)
                            .mode(mode),
                    );
                    continue;
                }
                inodes.insert((md.dev(), md.ino()), rel.clone().into_bytes());
            }
            let mut e = Entry::file(&rel, mode, Vec::new());
            e.header_size = Some(md.len());
            e
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = md.rdev();
            let (ma, mi) = (libc::major(rdev), libc::minor(rdev));
            if ft.is_char_device() {
                Entry::char_dev(&rel, mode, ma, mi)
            } else {
                Entry::block_dev(&rel, mode, ma, mi)
            }
        } else if ft.is_fifo() {
            Entry::fifo(&rel, mode)
        } else {
            continue; // sockets are not archived
        };
        out.push(
            e.owner(md.uid() as u64, md.gid() as u64)
                .mtime(DEFAULT_MTIME),
        );
        if ft.is_dir() {
            walk(root, &path, out, inodes)?;
        }
    }
    Ok(())
}

fn busybox_config() -> Value {
    json!({"Env": [DEFAULT_PATH_ENV], "Cmd": ["sh"]})
}

fn single_busybox_image(out: &Path, compression: Compression) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    let mut w = LayoutWriter::create(out)?;
    let layer = w.write_layer_from_dir(compression, &rootfs)?;
    let m = w.write_image(&Platform::host(), busybox_config(), &[layer])?;
    w.tag("latest", &m);
    w.finish()
}

/// A busybox image: one gzip layer made by [`busybox_rootfs`], config
/// `Cmd ["sh"]`, `Env [PATH=...]`, platform linux/HOST_ARCH; tag `latest`.
pub fn busybox_layout(out: &Path) -> Result<()> {
    single_busybox_image(out, Compression::Gzip)
}

/// The busybox image with a zstd layer (`...tar+zstd`); tag `latest`.
pub fn zstd_layout(out: &Path) -> Result<()> {
    single_busybox_image(out, Compression::Zstd)
}

/// The busybox image with an uncompressed layer (`...layer.v1.tar`); tag `latest`.
pub fn uncompressed_layout(out: &Path) -> Result<()> {
    single_busybox_image(out, Compression::None)
}

/// The busybox image whose config also has `ExposedPorts` (`ports` as the image declares them:
/// "80/tcp", "53/udp", "8080"); tag `latest`.
pub fn exposed_ports_layout(out: &Path, ports: &[&str]) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    let mut w = LayoutWriter::create(out)?;
    let layer = w.write_layer_from_dir(Compression::Gzip, &rootfs)?;
    let mut config = busybox_config();
    let exposed: serde_json::Map<String, Value> =
        ports.iter().map(|p| (p.to_string(), json!({}))).collect();
    config["ExposedPorts"] = Value::Object(exposed);
    let m = w.write_image(&Platform::host(), config, &[layer])?;
    w.tag("latest", &m);
    w.finish()
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        v.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Size of `data/big.bin` in [`multilayer_layout`].
pub const MULTILAYER_BIG_SIZE: usize = 2 * 1024 * 1024 + 123;

/// The three layers of [`multilayer_layout`], as entry lists.
///
/// Merged result (what an unpacker must produce):
/// - `etc/hello.txt` = "hello from layer 2\n" (mtime 1500000100), `etc/passwd`, `etc/group`
/// - `data/delete-me` and `data/removed-dir/` are gone (whiteouts in layer 2)
/// - `data/empty` (0 bytes), `data/big.bin` ([`MULTILAYER_BIG_SIZE`] bytes),
///   `data/old-mtime` (mtime 946684800)
/// - `data/hardlink-target` and `data/hardlink` share an inode
/// - `data/abs-symlink` is a regular file "replaced symlink\n" (layer 3);
///   `data/rel-symlink -> ../etc/hello.txt`, `data/dangling -> /nonexistent`
/// - `data/owned-1000` 1000:1000 0640, `data/owned-nobody` 65534:65534 0600
/// - `data/xattr-file` with xattr `user.berth=value`; dir `layer2/xattr-dir`
///   with `user.berth=dir`
/// - `data/fifo` (fifo 0600), `dev/null` (char 1,3 0666)
/// - `bin/setuid` 04755, `shared/` 02775 root:1000, `sticky/` 01777
/// - `opaque/` holds only `new-c` (opaque marker in layer 2 hides `old-a`, `sub/`)
/// - `layer2/file` deleted in layer 3, its hard link `layer2/link` remains
/// - `layer3/deep/nested/file`
pub fn multilayer_entries() -> Vec<Vec<Entry>> {
    let l1 = vec![
        Entry::dir("bin", 0o755),
        Entry::file("bin/setuid", 0o4755, b"#!/bin/sh\necho setuid\n".to_vec()),
        Entry::dir("dev", 0o755),
        Entry::char_dev("dev/null", 0o666, 1, 3),
        Entry::dir("etc", 0o755),
        Entry::file("etc/group", 0o644, crate::rootfs::GROUP.as_bytes().to_vec()),
        Entry::file("etc/hello.txt", 0o644, b"hello from layer 1\n".to_vec()).mtime(1_500_000_000),
        Entry::file(
            "etc/passwd",
            0o644,
            crate::rootfs::PASSWD.as_bytes().to_vec(),
        ),
        Entry::dir("data", 0o755),
        Entry::symlink("data/abs-symlink", "/etc/hello.txt"),
        Entry::file(
            "data/big.bin",
            0o644,
            pseudo_random(42, MULTILAYER_BIG_SIZE),
        ),
        Entry::symlink("data/dangling", "/nonexistent"),
        Entry::file("data/delete-me", 0o644, b"to be deleted\n".to_vec()),
        Entry::file("data/empty", 0o644, Vec::new()),
        Entry::fifo("data/fifo", 0o600),
        Entry::file("data/hardlink-target", 0o644, b"shared inode\n".to_vec()),
        Entry::hardlink("data/hardlink", "data/hardlink-target"),
        Entry::file("data/old-mtime", 0o644, b"year 2000\n".to_vec()).mtime(946_684_800),
        Entry::file("data/owned-1000", 0o640, b"berth's\n".to_vec()).owner(1000, 1000),
        Entry::file("data/owned-nobody", 0o600, b"nobody's\n".to_vec()).owner(65534, 65534),
        Entry::symlink("data/rel-symlink", "../etc/hello.txt"),
        Entry::dir("data/removed-dir", 0o755),
        Entry::file("data/removed-dir/inner", 0o644, b"inner\n".to_vec()),
        Entry::file("data/xattr-file", 0o644, b"has an xattr\n".to_vec())
            .xattr("user.berth", b"value"),
        Entry::dir("opaque", 0o755),
        Entry::file("opaque/old-a", 0o644, b"old a\n".to_vec()),
        Entry::dir("opaque/sub", 0o755),
        Entry::file("opaque/sub/old-b", 0o644, b"old b\n".to_vec()),
        Entry::dir("shared", 0o2775).owner(0, 1000),
        Entry::dir("sticky", 0o1777),
    ];
    let l2 = vec![
        Entry::dir("data", 0o755),
        Entry::whiteout("data/delete-me"),
        Entry::whiteout("data/removed-dir"),
        Entry::dir("etc", 0o755),
        Entry::file("etc/hello.txt", 0o644, b"hello from layer 2\n".to_vec()).mtime(1_500_000_100),
        Entry::dir("layer2", 0o755),
        Entry::file("layer2/file", 0o644, b"linked in layer 2\n".to_vec()),
        Entry::hardlink("layer2/link", "layer2/file"),
        Entry::dir("layer2/xattr-dir", 0o755).xattr("user.berth", b"dir"),
        Entry::dir("opaque", 0o755),
        Entry::opaque("opaque"),
        Entry::file("opaque/new-c", 0o644, b"layer 2\n".to_vec()),
    ];
    let l3 = vec![
        Entry::dir("data", 0o755),
        Entry::file("data/abs-symlink", 0o644, b"replaced symlink\n".to_vec()),
        Entry::dir("layer2", 0o755),
        Entry::whiteout("layer2/file"),
        Entry::dir("layer3", 0o755),
        Entry::dir("layer3/deep", 0o750),
        Entry::dir("layer3/deep/nested", 0o700),
        Entry::file("layer3/deep/nested/file", 0o600, b"deep\n".to_vec()).mtime(1_234_567_890),
    ];
    vec![l1, l2, l3]
}

/// A three-layer gzip image exercising whiteouts, an opaque dir, hard links,
/// symlinks, special modes, owners, xattrs, a fifo, a char device, mtimes, an
/// empty and a ~2 MiB file; see [`multilayer_entries`]. Tag `latest`.
pub fn multilayer_layout(out: &Path) -> Result<()> {
    let mut w = LayoutWriter::create(out)?;
    let mut layers = Vec::new();
    for entries in multilayer_entries() {
        layers.push(w.write_layer_entries(Compression::Gzip, &entries)?);
    }
    let m = w.write_image(
        &Platform::host(),
        json!({"Env": [DEFAULT_PATH_ENV], "Cmd": ["/bin/setuid"], "WorkingDir": "/data"}),
        &layers,
    )?;
    w.tag("latest", &m);
    w.finish()
}

/// An image (tag `latest`, host platform, `Cmd ["sh"]`) whose layers are
/// the given entry lists, each gzip-compressed: for crafted and hostile layers.
pub fn entries_layout(out: &Path, layers: &[Vec<Entry>]) -> Result<()> {
    let mut w = LayoutWriter::create(out)?;
    let mut ls = Vec::new();
    for entries in layers {
        ls.push(w.write_layer_entries(Compression::Gzip, entries)?);
    }
    let m = w.write_image(&Platform::host(), busybox_config(), &ls)?;
    w.tag("latest", &m);
    w.finish()
}

/// The platforms in [`multiarch_layout`], with the tag of each one's manifest.
pub const MULTIARCH_PLATFORMS: &[(&str, Option<&str>, &str)] = &[
    ("amd64", None, "amd64"),
    ("arm64", Some("v8"), "arm64"),
    ("arm", Some("v7"), "arm-v7"),
];

/// A multi-arch image: tag `latest` is an OCI index with linux/amd64,
/// linux/arm64/v8 and linux/arm/v7 manifests. Each has the same busybox layer
/// (a shared blob) plus a layer with `/arch` containing the architecture name
/// and a newline (`amd64\n`, `arm64\n`, `arm\n`); config `Cmd ["cat", "/arch"]`.
/// Each manifest is also tagged by itself (`amd64`, `arm64`, `arm-v7`) so
/// single-platform tools (umoci) can unpack it.
pub fn multiarch_layout(out: &Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs)?;
    let mut w = LayoutWriter::create(out)?;
    let base = w.write_layer_from_dir(Compression::Gzip, &rootfs)?;
    let mut manifests = Vec::new();
    for (arch, variant, tag) in MULTIARCH_PLATFORMS {
        let top = w.write_layer_entries(
            Compression::Gzip,
            &[Entry::file("arch", 0o644, format!("{arch}\n").into_bytes())],
        )?;
        let p = Platform::new("linux", arch, *variant);
        let m = w.write_image(
            &p,
            json!({"Env": [DEFAULT_PATH_ENV], "Cmd": ["cat", "/arch"]}),
            &[base.clone(), top],
        )?;
        w.tag(tag, &m);
        manifests.push(m);
    }
    let idx = w.write_index_blob(&manifests)?;
    w.tag("latest", &idx);
    w.finish()
}

const WORDS: &[&str] = &[
    "berth ",
    "layer ",
    "image ",
    "the ",
    "of ",
    "container ",
    "registry ",
    "blob ",
    "digest ",
    "sha256 ",
    "overlay ",
    "\n",
    "root ",
    "pull ",
    "unpack ",
    "tar ",
    "gzip ",
    "zstd ",
    "0 ",
    "1 ",
];

/// Text-like, moderately compressible deterministic content.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let rnd = pseudo_random(seed, len / 4 + 16);
    let mut v = Vec::with_capacity(len + 16);
    let mut i = 0;
    while v.len() < len {
        let r = rnd[i % rnd.len()];
        i += 1;
        if r < 40 {
            // a run of incompressible bytes
            v.extend_from_slice(
                &rnd[(i * 7) % rnd.len()..][..8.min(rnd.len() - (i * 7) % rnd.len())],
            );
        } else {
            v.extend_from_slice(WORDS[r as usize % WORDS.len()].as_bytes());
        }
    }
    v.truncate(len);
    v
}

/// File sizes for [`big_layout`]: heavy-tailed like a distribution's files
/// (most a few KiB, some hundreds of KiB), summing exactly to `total`.
pub fn big_layout_sizes(files: usize, total: u64) -> Vec<u64> {
    let files = files.max(1);
    let rnd = pseudo_random(7, files * 2);
    // weight 2^(r*10) for r in [0,1): 1 .. ~1024
    let weights: Vec<f64> = (0..files)
        .map(|i| {
            let r = u16::from_le_bytes([rnd[2 * i], rnd[2 * i + 1]]) as f64 / 65536.0;
            (r * 10.0).exp2()
        })
        .collect();
    let sum: f64 = weights.iter().sum();
    let mut sizes: Vec<u64> = weights
        .iter()
        .map(|w| (total as f64 * w / sum) as u64)
        .collect();
    let assigned: u64 = sizes.iter().sum();
    sizes[0] += total.saturating_sub(assigned);
    sizes
}

/// A single-gzip-layer image with `files` regular files totalling
/// `total_bytes` (sizes from [`big_layout_sizes`]), 100 files per directory
/// (`dNNNN/fNNNNNN`), text-like content (compresses about 2.5-3x), every
/// tenth file executable. Tag `latest`. For benchmarks.
pub fn big_layout(out: &Path, files: usize, total_bytes: u64) -> Result<()> {
    let sizes = big_layout_sizes(files, total_bytes);
    let mut w = LayoutWriter::create(out)?;
    let layer = w.write_layer(Compression::Gzip, |tw| {
        for (i, size) in sizes.iter().enumerate() {
            if i % 100 == 0 {
                tw.append(&Entry::dir(format!("d{:04}", i / 100), 0o755))?;
            }
            let mode = if i % 10 == 0 { 0o755 } else { 0o644 };
            tw.append(&Entry::file(
                format!("d{:04}/f{:06}", i / 100, i),
                mode,
                filler(i as u64, *size as usize),
            ))?;
        }
        Ok(())
    })?;
    let m = w.write_image(
        &Platform::host(),
        json!({"Env": [DEFAULT_PATH_ENV], "Cmd": ["sh"]}),
        &[layer],
    )?;
    w.tag("latest", &m);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_json(p: &Path) -> Value {
        serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
    }

    /// Checks every blob in the layout is stored under its own digest.
    fn check_blobs(out: &Path) {
        for e in fs::read_dir(out.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            assert!(!name.ends_with(".tmp"), "leftover temp {name}");
            let data = fs::read(e.path()).unwrap();
            assert_eq!(sha256_digest(&data), format!("sha256:{name}"));
        }
    }

    fn latest_manifest(out: &Path) -> Value {
        let idx = read_json(&out.join("index.json"));
        let m = idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"][ANNOTATION_REF_NAME] == "latest")
            .unwrap()
            .clone();
        let hexd = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
        read_json(&out.join("blobs/sha256").join(hexd))
    }

    /// The uncompressed tar of a layer.
    fn layer_tar(out: &Path, desc: &Value) -> Vec<u8> {
        let hexd = desc["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let data = fs::read(out.join("blobs/sha256").join(hexd)).unwrap();
        match desc["mediaType"].as_str().unwrap() {
            MT_LAYER_GZIP => {
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(&data[..])
                    .read_to_end(&mut v)
                    .unwrap();
                v
            }
            MT_LAYER_ZSTD => zstd::decode_all(&data[..]).unwrap(),
            MT_LAYER_TAR => data,
            other => panic!("media type {other}"),
        }
    }

    fn layer_entries(out: &Path, desc: &Value) -> Vec<(String, tar::EntryType)> {
        let raw = layer_tar(out, desc);
        let mut ar = tar::Archive::new(&raw[..]);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn busybox_layout_is_a_valid_oci_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bb");
        busybox_layout(&out).unwrap();
        check_blobs(&out);
        assert_eq!(
            read_json(&out.join("oci-layout"))["imageLayoutVersion"],
            "1.0.0"
        );
        let m = latest_manifest(&out);
        assert_eq!(m["mediaType"], MT_OCI_MANIFEST);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], MT_LAYER_GZIP);
        let cfg_hex = m["config"]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let cfg = read_json(&out.join("blobs/sha256").join(cfg_hex));
        assert_eq!(cfg["config"]["Cmd"], json!(["sh"]));
        assert_eq!(cfg["architecture"], host_arch());
        let names = layer_entries(&out, &layers[0]);
        assert!(names.iter().any(|(n, t)| n == "bin/busybox" && t.is_file()));
        assert!(names.iter().any(|(n, t)| n == "bin/sh" && t.is_symlink()));
        // diff_id is the sha256 of the uncompressed tar.
        let raw = layer_tar(&out, &layers[0]);
        assert_eq!(cfg["rootfs"]["diff_ids"][0], sha256_digest(&raw));
    }

    #[test]
    fn fixtures_are_deterministic() {
        let tmp = tempfile::tempdir().unwrap();
        multilayer_layout(&tmp.path().join("a")).unwrap();
        multilayer_layout(&tmp.path().join("b")).unwrap();
        assert_eq!(
            fs::read(tmp.path().join("a/index.json")).unwrap(),
            fs::read(tmp.path().join("b/index.json")).unwrap()
        );
    }

    #[test]
    fn compression_variants_have_their_media_types() {
        let tmp = tempfile::tempdir().unwrap();
        for (f, mt) in [
            (zstd_layout as fn(&Path) -> Result<()>, MT_LAYER_ZSTD),
            (uncompressed_layout, MT_LAYER_TAR),
        ] {
            let out = tmp.path().join(mt.replace('/', "_"));
            f(&out).unwrap();
            check_blobs(&out);
            let m = latest_manifest(&out);
            assert_eq!(m["layers"][0]["mediaType"], mt);
            let names = layer_entries(&out, &m["layers"][0]);
            assert!(names.iter().any(|(n, _)| n == "bin/busybox"));
        }
    }

    #[test]
    fn multilayer_has_whiteouts_opaque_and_specials() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("ml");
        multilayer_layout(&out).unwrap();
        check_blobs(&out);
        let m = latest_manifest(&out);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        let l2 = layer_entries(&out, &layers[1]);
        assert!(l2.iter().any(|(n, _)| n == "data/.wh.delete-me"));
        assert!(l2.iter().any(|(n, _)| n == "opaque/.wh..wh..opq"));
        let l1 = layer_entries(&out, &layers[0]);
        assert!(l1
            .iter()
            .any(|(n, t)| n == "dev/null" && *t == tar::EntryType::Char));
        assert!(l1
            .iter()
            .any(|(n, t)| n == "data/fifo" && *t == tar::EntryType::Fifo));
        assert!(l1
            .iter()
            .any(|(n, t)| n == "data/hardlink" && t.is_hard_link()));
    }

    #[test]
    fn multiarch_index_lists_three_platforms() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("ma");
        multiarch_layout(&out).unwrap();
        check_blobs(&out);
        let idx = latest_manifest(&out);
        assert_eq!(idx["mediaType"], MT_OCI_INDEX);
        let ms = idx["manifests"].as_array().unwrap();
        let archs: Vec<_> = ms
            .iter()
            .map(|m| m["platform"]["architecture"].clone())
            .collect();
        assert_eq!(archs, vec![json!("amd64"), json!("arm64"), json!("arm")]);
        assert_eq!(ms[2]["platform"]["variant"], "v7");
        // Same base layer, different arch layers.
        let mans: Vec<Value> = ms
            .iter()
            .map(|m| {
                let h = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
                read_json(&out.join("blobs/sha256").join(h))
            })
            .collect();
        assert_eq!(mans[0]["layers"][0], mans[1]["layers"][0]);
        assert_ne!(mans[0]["layers"][1], mans[1]["layers"][1]);
    }

    #[test]
    fn raw_and_entry_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("raw");
        let mut w = LayoutWriter::create(&out).unwrap();
        let bytes = b"not a tar at all".to_vec();
        let l = w.write_layer_bytes(Compression::None, &bytes).unwrap();
        assert_eq!(fs::read(w.blob_path(&l.desc.digest)).unwrap(), bytes);
        assert_eq!(l.diff_id, sha256_digest(&bytes));
        let gz = w.write_layer_bytes(Compression::Gzip, &bytes).unwrap();
        assert_eq!(gz.diff_id, l.diff_id);
        assert_ne!(gz.desc.digest, l.desc.digest);

        let out = tmp.path().join("entries");
        entries_layout(&out, &[vec![Entry::file("../evil", 0o644, b"x".to_vec())]]).unwrap();
        let m = latest_manifest(&out);
        let raw = layer_tar(&out, &m["layers"][0]);
        assert_eq!(&raw[..8], b"../evil\0");
    }

    #[test]
    fn big_layout_has_requested_files() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("big");
        big_layout(&out, 250, 1_000_003).unwrap();
        let m = latest_manifest(&out);
        let names = layer_entries(&out, &m["layers"][0]);
        let files = names.iter().filter(|(_, t)| t.is_file()).count();
        assert_eq!(files, 250);
        assert!(m["layers"][0]["size"].as_u64().unwrap() < 1_000_003);
        let raw = layer_tar(&out, &m["layers"][0]);
        let mut ar = tar::Archive::new(&raw[..]);
        let total: u64 = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().size().unwrap())
            .sum();
        assert_eq!(total, 1_000_003);
        let sizes = big_layout_sizes(250, 1_000_003);
        assert!(sizes.iter().max().unwrap() > &(20 * sizes.iter().min().unwrap()));
    }
}

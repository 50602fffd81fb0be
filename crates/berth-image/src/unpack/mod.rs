//! The layer unpacker: one uncompressed tar stream into a directory usable as an overlay lowerdir.
//!
//! Safety model: every filesystem operation goes through a directory fd of the layer root. The
//! parent directory of each entry is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`,
//! so a symlink in the layer (`evil -> /`) resolves as if the layer root were `/` and can never reach
//! the host. The last component is then created with `*at` calls that never follow it
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without `AT_SYMLINK_FOLLOW`). Names whose `..`
//! climbs above the root are refused.
//!
//! The `tar` crate only parses headers. Extension headers (PAX `x`, GNU `L`/`K`) are read here, in
//! raw mode, with a size cap, so a hostile header cannot grow memory, and a PAX `size` that disagrees
//! with the ustar size is refused before anything is written.
//!
//! OCI whiteouts become overlay whiteouts: `.wh.NAME` a 0/0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.

mod entry;
mod fsops;
mod path;

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use entry::{EntryKind, Extensions, Tap};
use fsops::Tree;

/// Size of the copy buffer and of the read-ahead buffer on the input stream.
const BUF_SIZE: usize = 256 * 1024;

/// How to unpack a layer.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Keep the owners from the tar headers (needs root); otherwise files belong to the caller and
    /// device nodes that cannot be created are skipped with a warning.
    pub keep_ownership: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            keep_ownership: rustix::process::geteuid().is_root(),
        }
    }
}

/// What one unpack did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries applied (extension headers not counted).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Why a layer could not be unpacked. Every variant that concerns one tar entry names it.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot open layer directory {}: {source}", path.display())]
    OpenDest { path: PathBuf, source: io::Error },
    #[error(
        "malformed tar stream at header {entry:?} (after entry {after:?}): {source}; \
         the layer blob is corrupt or hostile, rebuild or re-push the image"
    )]
    Stream {
        entry: String,
        after: String,
        source: io::Error,
    },
    #[error("tar entry {entry:?}: {reason}; the layer is malformed or hostile, rebuild the image")]
    BadHeader { entry: String, reason: String },
    #[error(
        "tar entry {entry:?} points outside the layer ({what} {target:?} climbs above the root \
         with ..); refusing a hostile layer"
    )]
    Escape {
        entry: String,
        what: &'static str,
        target: String,
    },
    #[error("tar entry {entry:?} is an invalid whiteout: {reason}; refusing a hostile layer")]
    BadWhiteout { entry: String, reason: String },
    #[error("tar entry {entry:?} has unsupported type {kind}; rebuild the layer without it")]
    Unsupported { entry: String, kind: String },
    #[error("tar entry {entry:?}: hardlink target {target:?} does not exist earlier in the layer")]
    MissingLinkTarget { entry: String, target: String },
    #[error("tar entry {entry:?}: reading its data failed: {source}")]
    Read { entry: String, source: io::Error },
    #[error("tar entry {entry:?}: cannot {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        source: io::Error,
    },
}

impl UnpackError {
    /// The tar entry the error is about, when it is about one.
    pub fn entry(&self) -> Option<&str> {
        match self {
            UnpackError::OpenDest { .. } => None,
            UnpackError::Stream { entry, .. }
            | UnpackError::BadHeader { entry, .. }
            | UnpackError::Escape { entry, .. }
            | UnpackError::BadWhiteout { entry, .. }
            | UnpackError::Unsupported { entry, .. }
            | UnpackError::MissingLinkTarget { entry, .. }
            | UnpackError::Read { entry, .. }
            | UnpackError::Io { entry, .. } => Some(entry),
        }
    }
}

/// Unpacks one uncompressed tar stream into `dest`, an existing empty directory that becomes an
/// overlay lowerdir. Reads the stream once, to its end (so a digest check wrapped around the
/// reader sees every byte), with bounded memory.
pub fn unpack_layer<R: Read>(
    tar: R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let span = tracing::debug_span!("unpack_layer", dest = %dest.display());
    let _guard = span.enter();
    let tree = Tree::open(dest, opts.keep_ownership).map_err(|source| UnpackError::OpenDest {
        path: dest.to_path_buf(),
        source,
    })?;
    let mut unpacker = Unpacker {
        tree,
        buf: vec![0u8; BUF_SIZE],
        ext: Extensions::default(),
        name: Vec::new(),
        link: Vec::new(),
        stats: UnpackStats::default(),
        last_entry: String::new(),
        meta: entry::Meta::default(),
    };
    let mut tap = Tap::new(BufReader::with_capacity(BUF_SIZE, tar));
    let result = {
        let mut archive = tar::Archive::new(&mut tap);
        unpacker.run(&mut archive)
    };
    match result {
        Ok(()) => {}
        Err(Failure::Stream(source)) => {
            return Err(UnpackError::Stream {
                entry: tap.last_header_name(),
                after: std::mem::take(&mut unpacker.last_entry),
                source,
            })
        }
        Err(Failure::Entry(e)) => return Err(e),
    }
    // Drain what follows the end-of-archive marker so the caller's digest check sees it all.
    loop {
        match tap.read(&mut unpacker.buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(UnpackError::Stream {
                    entry: "end of archive".into(),
                    after: unpacker.last_entry,
                    source,
                })
            }
        }
    }
    unpacker
        .tree
        .finish()
        .map_err(|(entry, source)| UnpackError::Io {
            entry,
            op: "set directory times",
            source,
        })?;
    tracing::debug!(
        entries = unpacker.stats.entries,
        bytes = unpacker.stats.bytes,
        "layer unpacked"
    );
    Ok(unpacker.stats)
}

enum Failure {
    /// The tar iterator failed: a header could not be parsed.
    Stream(io::Error),
    Entry(UnpackError),
}

impl From<UnpackError> for Failure {
    fn from(e: UnpackError) -> Self {
        Failure::Entry(e)
    }
}

struct Unpacker {
    tree: Tree,
    buf: Vec<u8>,
    ext: Extensions,
    /// Cleaned entry name (components joined by `/`, no leading `/`, no `.` or `..`).
    name: Vec<u8>,
    /// Cleaned hardlink target.
    link: Vec<u8>,
    stats: UnpackStats,
    last_entry: String,
    /// Metadata of the current entry, reused across entries.
    meta: entry::Meta,
}

impl Unpacker {
    fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), Failure> {
        let entries = archive.entries().map_err(Failure::Stream)?.raw(true);
        for entry in entries {
            let mut entry = entry.map_err(Failure::Stream)?;
            if self.ext.absorb(&mut entry)? {
                continue;
            }
            let mut meta = std::mem::take(&mut self.meta);
            let result = self.ext.take_meta(&entry, &mut meta).and_then(|()| {
                self.stats.entries += 1;
                tracing::trace!(entry = %meta.display, kind = ?meta.kind, "entry");
                self.apply(&mut entry, &meta)
            });
            self.last_entry.clear();
            self.last_entry.push_str(&meta.display);
            self.meta = meta;
            result?;
        }
        self.ext.finish(&self.last_entry)?;
        Ok(())
    }

    fn apply<R: Read>(&mut self, data: &mut R, meta: &entry::Meta) -> Result<(), UnpackError> {
        let entry = &meta.display;
        if path::clean(&meta.path, &mut self.name).is_err() {
            return Err(UnpackError::Escape {
                entry: entry.clone(),
                what: "name",
                target: entry.clone(),
            });
        }
        let (parent, base) = path::split(&self.name);

        // OCI whiteouts.
        if let Some(hidden) = base.strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                return self.tree.opaque(parent, entry);
            }
            if hidden.starts_with(b".wh.") {
                tracing::debug!(entry = %entry, "skipping unknown whiteout meta-entry");
                return Ok(());
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
                return Err(UnpackError::BadWhiteout {
                    entry: entry.clone(),
                    reason: format!(
                        "it hides {:?}, which is not a name in its directory",
                        String::from_utf8_lossy(hidden)
                    ),
                });
            }
            return self.tree.whiteout(parent, hidden, entry);
        }

        if base.is_empty() {
            // The layer root itself: only its metadata applies.
            return match meta.kind {
                EntryKind::Directory => self.tree.root_meta(meta),
                _ => Err(UnpackError::BadHeader {
                    entry: entry.clone(),
                    reason: "names the layer root but is not a directory".into(),
                }),
            };
        }

        match meta.kind {
            EntryKind::Directory => self.tree.dir(parent, base, meta),
            EntryKind::Regular => {
                let written = self.tree.file(parent, base, meta, data, &mut self.buf)?;
                self.stats.bytes += written;
                Ok(())
            }
            EntryKind::Symlink => self.tree.symlink(parent, base, meta),
            EntryKind::Hardlink => {
                if path::clean(&meta.link, &mut self.link).is_err() {
                    return Err(UnpackError::Escape {
                        entry: entry.clone(),
                        what: "hardlink target",
                        target: String::from_utf8_lossy(&meta.link).into_owned(),
                    });
                }
                self.tree.hardlink(parent, base, &self.link, meta)
            }
            EntryKind::Char | EntryKind::Block | EntryKind::Fifo => {
                self.tree.node(parent, base, meta)
            }
        }
    }
}

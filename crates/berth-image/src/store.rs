//! The local image store under `<berth root>/image`.
//!
//! ```text
//! image/
//!   blobs/sha256/<hex>      manifests, configs and compressed layers, by digest
//!   layers/<diff_id hex>/   unpacked layers, each usable as an overlay lowerdir
//!   layerdb/<diff_id hex>.json   size of each unpacked layer
//!   images/<id hex>.json    one record per image (id = config digest)
//!   repositories.json       tags and digests -> image id
//!   holds/<holder>          image id a container (or a mount) keeps alive
//!   mounts/<id hex>/merged  `berth image mount` targets
//!   locks/                  store.lock (metadata), gc.lock (pulls vs removal),
//!                           layer-<hex>.lock (one writer per layer)
//!   tmp/                    partial blobs and layers, renamed into place when whole
//! ```
//! A record in `images/` is written only after its config, manifest and every
//! layer are in place, so an interrupted pull never leaves a visible image.

use crate::reference::{is_hex64, Reference};
use berth_sys::atomic::Durability;
use berth_sys::overlay::{is_mounted, Overlay};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("{reference} matches more than one image ({ids}): give more of the id")]
    Ambiguous { reference: String, ids: String },
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("image {image} is in use by {holder}: {fix}")]
    InUse {
        image: String,
        holder: String,
        fix: String,
    },
    #[error("unable to delete {id} (must be forced): the image is referenced in multiple repositories ({names})")]
    MultipleRepositories { id: String, names: String },
    #[error("invalid holder name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadHolder(String),
    #[error("refusing to tag with a digest: {0} (tags name a repository and a tag)")]
    TagWithDigest(String),
    #[error("mounting {image} at {}", path.display())]
    Mount {
        image: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting {image} at {}", path.display())]
    Unmount {
        image: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{image} is not mounted")]
    NotMounted { image: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The store rooted at `<berth root>/image`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An image present in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<config digest hex>`
    pub id: String,
    /// `docker.io/library/busybox:latest`, ...
    pub repo_tags: Vec<String>,
    /// `docker.io/library/busybox@sha256:...`
    pub repo_digests: Vec<String>,
    pub config: oci_spec::image::ImageConfiguration,
    /// Unpacked layer directories, lowest first, usable as overlay lowerdirs.
    pub layer_dirs: Vec<PathBuf>,
    /// Total size of the unpacked layers' file contents in bytes.
    pub size: u64,
    /// RFC 3339 creation time from the config.
    pub created: Option<String>,
}

/// What the store keeps about one layer of an image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the blob as the registry serves it (compressed).
    pub digest: String,
    pub media_type: String,
    /// Size of the blob.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of file content once unpacked.
    pub unpacked_size: u64,
}

/// The record of one image: `images/<id hex>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub layers: Vec<LayerRecord>,
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub created: Option<String>,
    pub size: u64,
    /// When it was pulled (RFC 3339).
    pub pulled: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Repositories {
    /// `docker.io/library/busybox:latest` -> image id
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// `docker.io/library/busybox@sha256:...` -> image id
    #[serde(default)]
    digests: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LayerMeta {
    pub diff_id: String,
    pub unpacked_size: u64,
}

/// An flock held until dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// What `remove_image` did, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Untagged(String),
    Deleted(String),
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `sha256:<hex>` -> `<hex>`.
pub fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn valid_holder(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 200
        && h != "."
        && h != ".."
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Store {
    /// Opens (creating if needed) the store under `<berth_root>/image`.
    pub fn open(berth_root: &Path) -> Result<Store, StoreError> {
        let root = berth_root.join("image");
        for d in [
            "blobs/sha256",
            "layers",
            "layerdb",
            "images",
            "holds",
            "locks",
            "tmp",
        ] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(Store { root })
    }

    /// `<berth root>/image`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(digest_hex(digest))
    }

    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(digest_hex(diff_id))
    }

    pub(crate) fn layer_meta_path(&self, diff_id: &str) -> PathBuf {
        self.root
            .join("layerdb")
            .join(format!("{}.json", digest_hex(diff_id)))
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{}.json", digest_hex(id)))
    }

    /// A fresh path under tmp/ for a file that will be renamed into place.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir()
            .join(format!("{what}.{}.{n}", std::process::id()))
    }

    /// Writes `bytes` to `dest` atomically through a temporary file under tmp/ (where
    /// [`Store::clean_tmp_if_idle`] finds it if this process dies). No fsync: a pull syncs the
    /// whole filesystem once at the end.
    pub(crate) fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp_path("write");
        berth_sys::atomic::write_via(&tmp, dest, bytes, Durability::NoSync).map_err(|e| {
            StoreError::Io {
                path: e.path,
                source: e.source,
            }
        })
    }

    fn lock_file(
        &self,
        name: &str,
        op: rustix::fs::FlockOperation,
    ) -> Result<Option<FileLock>, StoreError> {
        let p = self.root.join("locks").join(name);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        loop {
            match rustix::fs::flock(&f, op) {
                Ok(()) => return Ok(Some(FileLock { _file: f })),
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err(&p)(e.into())),
            }
        }
    }

    /// The metadata lock: held while repositories.json, records or holds change.
    pub(crate) fn lock_metadata(&self) -> Result<FileLock, StoreError> {
        Ok(self
            .lock_file("store.lock", rustix::fs::FlockOperation::LockExclusive)?
            .expect("blocking lock"))
    }

    /// Held (shared) by every pull for its whole run, so that garbage
    /// collection (exclusive) never deletes a layer a pull is about to use.
    pub(crate) fn lock_pull(&self) -> Result<FileLock, StoreError> {
        Ok(self
            .lock_file("gc.lock", rustix::fs::FlockOperation::LockShared)?
            .expect("blocking lock"))
    }

    fn try_lock_gc(&self) -> Result<Option<FileLock>, StoreError> {
        self.lock_file(
            "gc.lock",
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
    }

    /// One writer per layer: two pulls needing the same layer take turns, and
    /// the second finds it done.
    pub(crate) fn lock_layer(&self, diff_id: &str) -> Result<FileLock, StoreError> {
        Ok(self
            .lock_file(
                &format!("layer-{}.lock", digest_hex(diff_id)),
                rustix::fs::FlockOperation::LockExclusive,
            )?
            .expect("blocking lock"))
    }

    /// Removes leftovers of killed pulls when no other pull runs.
    pub(crate) fn clean_tmp_if_idle(&self) -> Result<(), StoreError> {
        let Some(_gc) = self.try_lock_gc()? else {
            return Ok(());
        };
        let tmp = self.tmp_dir();
        for e in std::fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let e = e.map_err(io_err(&tmp))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // Metadata writes (tag, rmi, holds) don't take the gc lock: keep
            // the temp files of processes still alive.
            if let Some(pid) = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok()) {
                if name.starts_with("write.") && berth_sys::proc::alive(pid as i32, None) {
                    continue;
                }
            }
            let p = e.path();
            tracing::debug!(path = %p.display(), "removing leftover of an interrupted pull");
            let _ = remove_any(&p);
        }
        Ok(())
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    pub(crate) fn layer_size(&self, diff_id: &str) -> u64 {
        std::fs::read(self.layer_meta_path(diff_id))
            .ok()
            .and_then(|b| serde_json::from_slice::<LayerMeta>(&b).ok())
            .map(|m| m.unpacked_size)
            .unwrap_or(0)
    }

    fn load_repos(&self) -> Result<Repositories, StoreError> {
        let p = self.root.join("repositories.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                path: p,
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Repositories::default()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    fn save_repos(&self, r: &Repositories) -> Result<(), StoreError> {
        let p = self.root.join("repositories.json");
        let body = serde_json::to_vec_pretty(r).expect("serializable");
        self.write_atomic(&p, &body)
    }

    /// The record of image `id` (`sha256:<hex>`), if present.
    pub fn record(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let p = self.record_path(id);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    path: p,
                    detail: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// The record of image `id` for a pull deciding whether it has the image: a record that
    /// cannot be parsed counts as absent (with a warning naming it), so the pull writes it
    /// again.
    pub(crate) fn record_or_repair(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        match self.record(id) {
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!("{e}: pulling the image again");
                Ok(None)
            }
            r => r,
        }
    }

    fn all_ids(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("images");
        let mut ids = vec![];
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_suffix(".json") {
                if is_hex64(hex) {
                    ids.push(format!("sha256:{hex}"));
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The parsed config of an image.
    pub fn config(&self, id: &str) -> Result<oci_spec::image::ImageConfiguration, StoreError> {
        let p = self.blob_path(id);
        let b = std::fs::read(&p).map_err(io_err(&p))?;
        serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
            path: p,
            detail: e.to_string(),
        })
    }

    /// The raw config JSON of an image.
    pub fn config_json(&self, id: &str) -> Result<serde_json::Value, StoreError> {
        let p = self.blob_path(id);
        let b = std::fs::read(&p).map_err(io_err(&p))?;
        serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
            path: p,
            detail: e.to_string(),
        })
    }

    fn image_from(&self, rec: &ImageRecord, repos: &Repositories) -> Result<Image, StoreError> {
        let names = |m: &BTreeMap<String, String>| {
            m.iter()
                .filter(|(_, v)| **v == rec.id)
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        Ok(Image {
            id: rec.id.clone(),
            repo_tags: names(&repos.tags),
            repo_digests: names(&repos.digests),
            config: self.config(&rec.id)?,
            layer_dirs: rec
                .layers
                .iter()
                .map(|l| self.layer_dir(&l.diff_id))
                .collect(),
            size: rec.size,
            created: rec.created.clone(),
        })
    }

    /// Every image in the store with its record, newest first.
    pub fn list(&self) -> Result<Vec<(Image, ImageRecord)>, StoreError> {
        let repos = self.load_repos()?;
        let mut out = vec![];
        for id in self.all_ids()? {
            match self.record(&id).and_then(|r| {
                r.map(|rec| Ok((self.image_from(&rec, &repos)?, rec)))
                    .transpose()
            }) {
                Ok(Some(entry)) => out.push(entry),
                Ok(None) => {}
                // One unreadable image does not hide the others; `pull` repairs it.
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::warn!("skipping image {id}: {e}; pull it again to repair it")
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| b.1.created.cmp(&a.1.created).then(a.0.id.cmp(&b.0.id)));
        Ok(out)
    }

    fn resolve_id(
        &self,
        reference: &str,
        repos: &Repositories,
    ) -> Result<Option<String>, StoreError> {
        // A name first, as Docker does.
        if let Ok(r) = Reference::parse(reference) {
            if let Some(d) = &r.digest {
                if let Some(id) = repos.digests.get(&r.digested_name(d)) {
                    return Ok(Some(id.clone()));
                }
            } else if let Some(id) = r.tagged_name().and_then(|t| repos.tags.get(&t)) {
                return Ok(Some(id.clone()));
            }
        }
        // Then an id or an unambiguous prefix of one.
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let hex = hex.to_ascii_lowercase();
        let matches: Vec<String> = self
            .all_ids()?
            .into_iter()
            .filter(|id| digest_hex(id).starts_with(&hex))
            .collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.into_iter().next()),
            _ => Err(StoreError::Ambiguous {
                reference: reference.to_string(),
                ids: matches
                    .iter()
                    .map(|i| &digest_hex(i)[..12])
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Local lookup by reference ("busybox", "127.0.0.1:5000/x:tag", "x@sha256:..")
    /// or by (short) image id.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, StoreError> {
        let repos = self.load_repos()?;
        let Some(id) = self.resolve_id(reference, &repos)? else {
            return Ok(None);
        };
        match self.record(&id)? {
            Some(rec) => self.image_from(&rec, &repos).map(Some),
            None => Ok(None),
        }
    }

    /// Like `resolve`, but a missing image is an error naming it.
    pub fn get(&self, reference: &str) -> Result<(Image, ImageRecord), StoreError> {
        let repos = self.load_repos()?;
        let id = self
            .resolve_id(reference, &repos)?
            .ok_or_else(|| StoreError::NoSuchImage(reference.to_string()))?;
        let rec = self
            .record(&id)?
            .ok_or_else(|| StoreError::NoSuchImage(reference.to_string()))?;
        Ok((self.image_from(&rec, &repos)?, rec))
    }

    /// Writes the image record and points `tag` (and `digest_ref`) at it. Called
    /// by a pull once every blob and layer is in place.
    pub(crate) fn commit_image(
        &self,
        rec: &ImageRecord,
        tag: Option<&str>,
        digest_ref: Option<&str>,
    ) -> Result<(), StoreError> {
        let _lock = self.lock_metadata()?;
        let body = serde_json::to_vec_pretty(rec).expect("serializable");
        self.write_atomic(&self.record_path(&rec.id), &body)?;
        let mut repos = self.load_repos()?;
        if let Some(t) = tag {
            repos.tags.insert(t.to_string(), rec.id.clone());
        }
        if let Some(d) = digest_ref {
            repos.digests.insert(d.to_string(), rec.id.clone());
        }
        self.save_repos(&repos)
    }

    /// Holds keep an image (and its layers) from rmi/prune while a container uses it.
    pub fn add_hold(&self, image_id: &str, holder: &str) -> Result<(), StoreError> {
        if !valid_holder(holder) {
            return Err(StoreError::BadHolder(holder.to_string()));
        }
        let _lock = self.lock_metadata()?;
        let repos = self.load_repos()?;
        let id = self
            .resolve_id(image_id, &repos)?
            .filter(|id| self.record_path(id).exists())
            .ok_or_else(|| StoreError::NoSuchImage(image_id.to_string()))?;
        let p = self.root.join("holds").join(holder);
        self.write_atomic(&p, id.as_bytes())
    }

    /// Whether `holder` holds an image (one `stat`, no lock).
    pub fn has_hold(&self, holder: &str) -> bool {
        valid_holder(holder) && self.root.join("holds").join(holder).is_file()
    }

    pub fn remove_hold(&self, holder: &str) -> Result<(), StoreError> {
        if !valid_holder(holder) {
            return Err(StoreError::BadHolder(holder.to_string()));
        }
        let _lock = self.lock_metadata()?;
        let p = self.root.join("holds").join(holder);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    /// holder -> image id
    pub fn holds(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let dir = self.root.join("holds");
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(id) = std::fs::read_to_string(e.path()) {
                out.insert(name, id.trim().to_string());
            }
        }
        Ok(out)
    }

    /// Releases the holds of containers that no longer exist: `exists(holder)` says whether a
    /// container holder is still there (a container's directory deleted by hand leaves its
    /// hold behind, which would block `rmi` forever). `image mount` holds (`mount-*`) are
    /// left to `image unmount`. Returns the holders released.
    ///
    /// A container takes its hold only once its directory exists, so a hold whose holder is
    /// absent is never one still being set up.
    pub fn release_orphan_holds(
        &self,
        exists: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let _lock = self.lock_metadata()?;
        let mut released = vec![];
        for holder in self.holds()?.into_keys() {
            if holder.starts_with("mount-") || exists(&holder) {
                continue;
            }
            let p = self.root.join("holds").join(&holder);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
            tracing::info!("released the image hold of {holder}: that container is gone");
            released.push(holder);
        }
        Ok(released)
    }

    fn check_not_held(&self, id: &str, shown: &str) -> Result<(), StoreError> {
        if let Some((holder, _)) = self.holds()?.into_iter().find(|(_, i)| i == id) {
            let fix = if holder.starts_with("mount-") {
                format!("it is mounted; run `berth image unmount {shown}` first")
            } else {
                format!(
                    "container {holder} uses it; remove the container first (berth rm {holder})"
                )
            };
            return Err(StoreError::InUse {
                image: shown.to_string(),
                holder,
                fix,
            });
        }
        Ok(())
    }

    /// `berth tag SRC DST`.
    pub fn tag(&self, source: &str, target: &str) -> Result<String, StoreError> {
        let t = Reference::parse(target)?;
        if t.digest.is_some() {
            return Err(StoreError::TagWithDigest(target.to_string()));
        }
        let _lock = self.lock_metadata()?;
        let mut repos = self.load_repos()?;
        let id = self
            .resolve_id(source, &repos)?
            .filter(|id| self.record_path(id).exists())
            .ok_or_else(|| StoreError::NoSuchImage(source.to_string()))?;
        let name = t.tagged_name().expect("a tag");
        repos.tags.insert(name.clone(), id);
        self.save_repos(&repos)?;
        Ok(name)
    }

    /// `berth rmi [-f] IMAGE`: untags, and deletes the image when nothing
    /// names it any more. Layers are collected by [`Store::gc`].
    pub fn remove_image(&self, reference: &str, force: bool) -> Result<Vec<Removal>, StoreError> {
        let _lock = self.lock_metadata()?;
        let mut repos = self.load_repos()?;
        let id = self
            .resolve_id(reference, &repos)?
            .filter(|id| self.record_path(id).exists())
            .ok_or_else(|| StoreError::NoSuchImage(reference.to_string()))?;
        let mut out = vec![];
        // Removing by name untags that name only, unless it is the last one.
        let by_name = Reference::parse(reference).ok().and_then(|r| {
            let key = match &r.digest {
                Some(d) => r.digested_name(d),
                None => r.tagged_name()?,
            };
            (repos.tags.get(&key) == Some(&id) || repos.digests.get(&key) == Some(&id))
                .then_some((key, r.name()))
        });
        let tags_of = |repos: &Repositories| -> Vec<String> {
            repos
                .tags
                .iter()
                .filter(|(_, v)| **v == id)
                .map(|(k, _)| k.clone())
                .collect()
        };
        if let Some((key, _)) = &by_name {
            if tags_of(&repos).len() > 1
                || (repos.digests.contains_key(key) && !tags_of(&repos).is_empty())
            {
                repos.tags.remove(key);
                repos.digests.remove(key);
                self.save_repos(&repos)?;
                out.push(Removal::Untagged(key.clone()));
                return Ok(out);
            }
        } else if !force {
            let mut repos_names: BTreeSet<String> = BTreeSet::new();
            for t in tags_of(&repos) {
                if let Ok(r) = Reference::parse(&t) {
                    repos_names.insert(r.name());
                }
            }
            if repos_names.len() > 1 {
                return Err(StoreError::MultipleRepositories {
                    id: digest_hex(&id)[..12].to_string(),
                    names: repos_names.into_iter().collect::<Vec<_>>().join(", "),
                });
            }
        }
        // Deleting the image itself.
        self.check_not_held(&id, reference)?;
        for t in tags_of(&repos) {
            repos.tags.remove(&t);
            out.push(Removal::Untagged(t));
        }
        let digests: Vec<String> = repos
            .digests
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        for d in digests {
            repos.digests.remove(&d);
            out.push(Removal::Untagged(d));
        }
        self.save_repos(&repos)?;
        let p = self.record_path(&id);
        std::fs::remove_file(&p).map_err(io_err(&p))?;
        out.push(Removal::Deleted(id));
        Ok(out)
    }

    /// `berth image prune [-a]`: removes dangling images (no tag), or with
    /// `all` every image no container holds. Returns the deleted ids.
    pub fn prune(&self, all: bool) -> Result<Vec<String>, StoreError> {
        let _lock = self.lock_metadata()?;
        let mut repos = self.load_repos()?;
        let held: BTreeSet<String> = self.holds()?.into_values().collect();
        let mut deleted = vec![];
        for id in self.all_ids()? {
            let tagged = repos.tags.values().any(|v| *v == id);
            if held.contains(&id) || (tagged && !all) {
                continue;
            }
            repos.tags.retain(|_, v| *v != id);
            repos.digests.retain(|_, v| *v != id);
            let p = self.record_path(&id);
            std::fs::remove_file(&p).map_err(io_err(&p))?;
            deleted.push(id);
        }
        self.save_repos(&repos)?;
        Ok(deleted)
    }

    /// Deletes layers and blobs no image record uses. Skipped (returns None)
    /// while a pull runs, since the pull may be about to use them.
    pub fn gc(&self) -> Result<Option<u64>, StoreError> {
        let Some(_gc) = self.try_lock_gc()? else {
            tracing::debug!("a pull is running; leaving unused layers for later");
            return Ok(None);
        };
        let _lock = self.lock_metadata()?;
        let mut keep_layers = BTreeSet::new();
        let mut keep_blobs = BTreeSet::new();
        for id in self.all_ids()? {
            let rec = match self.record(&id) {
                Ok(Some(rec)) => rec,
                Ok(None) => continue,
                // Which layers it needs is unknown: delete nothing until it is repaired.
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::warn!("{e}: keeping every layer until `pull` repairs it");
                    return Ok(Some(0));
                }
                Err(e) => return Err(e),
            };
            keep_blobs.insert(digest_hex(&rec.id).to_string());
            keep_blobs.insert(digest_hex(&rec.manifest_digest).to_string());
            for l in &rec.layers {
                keep_layers.insert(digest_hex(&l.diff_id).to_string());
                keep_blobs.insert(digest_hex(&l.digest).to_string());
            }
        }
        // Index manifests: kept while some digest reference names them.
        let repos = self.load_repos()?;
        for k in repos.digests.keys() {
            if let Some((_, d)) = k.rsplit_once('@') {
                keep_blobs.insert(digest_hex(d).to_string());
            }
        }
        let mut freed = 0u64;
        let layers = self.root.join("layers");
        for e in std::fs::read_dir(&layers).map_err(io_err(&layers))? {
            let e = e.map_err(io_err(&layers))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if keep_layers.contains(&name) {
                continue;
            }
            freed += self.layer_size(&name);
            // Out of sight first, then deleted: a crash leaves it in tmp/.
            let doomed = self.tmp_path(&format!("del-{name}"));
            std::fs::rename(e.path(), &doomed).map_err(io_err(&doomed))?;
            let _ = std::fs::remove_file(self.layer_meta_path(&name));
            remove_any(&doomed).map_err(io_err(&doomed))?;
        }
        let blobs = self.root.join("blobs/sha256");
        for e in std::fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let e = e.map_err(io_err(&blobs))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
            }
        }
        Ok(Some(freed))
    }

    fn mount_paths(&self, id: &str) -> (PathBuf, PathBuf) {
        let base = self.root.join("mounts").join(digest_hex(id));
        (base.clone(), base.join("merged"))
    }

    /// `berth image mount`: the layers as one read-only overlay; returns its path.
    pub fn mount(&self, reference: &str) -> Result<PathBuf, StoreError> {
        let (image, _) = self.get(reference)?;
        let (base, merged) = self.mount_paths(&image.id);
        if is_mounted(&merged) {
            return Ok(merged);
        }
        let holder = format!("mount-{}", &digest_hex(&image.id)[..12]);
        self.add_hold(&image.id, &holder)?;
        let empty = base.join("empty");
        for d in [&merged, &empty] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        // Without an upperdir overlay wants at least two lower directories: an empty one
        // goes below a single layer.
        let mut lower: Vec<PathBuf> = image.layer_dirs.clone();
        if lower.len() < 2 {
            lower.insert(0, empty.clone());
        }
        let res = Overlay {
            lower: &lower,
            upper: None,
            volatile: false,
            read_only: true,
            nodev: true,
        }
        .mount(&merged);
        if let Err(e) = res {
            let _ = self.remove_hold(&holder);
            let _ = std::fs::remove_dir_all(&base);
            return Err(StoreError::Mount {
                image: reference.to_string(),
                path: merged,
                source: e,
            });
        }
        Ok(merged)
    }

    /// `berth image unmount`.
    pub fn unmount(&self, reference: &str) -> Result<PathBuf, StoreError> {
        let (image, _) = self.get(reference)?;
        let (base, merged) = self.mount_paths(&image.id);
        let holder = format!("mount-{}", &digest_hex(&image.id)[..12]);
        if !is_mounted(&merged) {
            // Unmounted behind berth's back: clear what is left of it.
            if base.exists() {
                std::fs::remove_dir_all(&base).map_err(io_err(&base))?;
                self.remove_hold(&holder)?;
                return Ok(merged);
            }
            return Err(StoreError::NotMounted {
                image: reference.to_string(),
            });
        }
        rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty()).map_err(|e| {
            StoreError::Unmount {
                image: reference.to_string(),
                path: merged.clone(),
                source: e.into(),
            }
        })?;
        std::fs::remove_dir_all(&base).map_err(io_err(&base))?;
        self.remove_hold(&holder)?;
        Ok(merged)
    }

    /// Flushes everything written to the store's filesystem.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let f = File::open(&self.root).map_err(io_err(&self.root))?;
        rustix::fs::syncfs(&f).map_err(|e| io_err(&self.root)(e.into()))
    }
}

pub(crate) fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_image(store: &Store, n: u8, layers: &[&str]) -> ImageRecord {
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{l}")).collect::<Vec<_>>()},
            "config": {}, "created": format!("2024-01-0{n}T00:00:00Z"),
        });
        let body = serde_json::to_vec(&config).unwrap();
        use sha2::Digest;
        let hex = hex::encode(sha2::Sha256::digest(&body));
        std::fs::write(store.blob_path(&hex), &body).unwrap();
        for l in layers {
            std::fs::create_dir_all(store.layer_dir(l)).unwrap();
        }
        ImageRecord {
            id: format!("sha256:{hex}"),
            manifest_digest: format!("sha256:{}", "0".repeat(64)),
            manifest_media_type: crate::manifest::OCI_MANIFEST.into(),
            layers: layers
                .iter()
                .map(|l| LayerRecord {
                    digest: format!("sha256:{}", "1".repeat(64)),
                    media_type: String::new(),
                    size: 1,
                    diff_id: format!("sha256:{l}"),
                    unpacked_size: 1,
                })
                .collect(),
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            created: None,
            size: layers.len() as u64,
            pulled: String::new(),
        }
    }

    #[test]
    fn tmp_cleanup_spares_live_writers_and_running_pulls() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = store.tmp_path("write");
        let dead = store.tmp_dir().join("write.4000000000.0");
        let partial = store.tmp_dir().join("layer-abc");
        std::fs::write(&live, b"x").unwrap();
        std::fs::write(&dead, b"x").unwrap();
        std::fs::create_dir(&partial).unwrap();
        let pull = store.lock_pull().unwrap();
        store.clean_tmp_if_idle().unwrap();
        assert!(partial.exists(), "a pull is running: nothing is removed");
        drop(pull);
        store.clean_tmp_if_idle().unwrap();
        assert!(live.exists());
        assert!(!dead.exists() && !partial.exists());
    }

    #[test]
    fn tags_holds_rmi_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let r1 = fake_image(&store, 1, &[&a, &b]);
        let r2 = fake_image(&store, 2, &[&a, &c]);
        store
            .commit_image(&r1, Some("docker.io/library/one:latest"), None)
            .unwrap();
        store
            .commit_image(&r2, Some("127.0.0.1:5000/two:1"), None)
            .unwrap();
        let img = store.resolve("one").unwrap().unwrap();
        assert_eq!(img.id, r1.id);
        assert_eq!(
            img.layer_dirs,
            vec![store.layer_dir(&a), store.layer_dir(&b)]
        );
        assert_eq!(
            store.resolve(&digest_hex(&r2.id)[..8]).unwrap().unwrap().id,
            r2.id
        );
        assert_eq!(store.resolve(&r2.id).unwrap().unwrap().id, r2.id);
        assert!(store.resolve("nothing").unwrap().is_none());

        assert_eq!(
            store.tag("one", "one:v2").unwrap(),
            "docker.io/library/one:v2"
        );
        assert_eq!(
            store.remove_image("one:v2", false).unwrap(),
            vec![Removal::Untagged("docker.io/library/one:v2".into())]
        );

        store.add_hold(&r1.id, "ctr1").unwrap();
        let err = store.remove_image("one", false).unwrap_err().to_string();
        assert!(err.contains("ctr1"), "{err}");
        store.remove_hold("ctr1").unwrap();
        assert!(store.add_hold(&r1.id, "../x").is_err());

        let out = store.remove_image("one", false).unwrap();
        assert_eq!(out.last(), Some(&Removal::Deleted(r1.id.clone())));
        assert!(store.resolve("one").unwrap().is_none());
        store.gc().unwrap().unwrap();
        assert!(store.has_layer(&a), "shared layer kept");
        assert!(!store.has_layer(&b), "unused layer removed");
        assert!(store.has_layer(&c));
        assert!(!store.blob_path(&r1.id).exists());
        assert!(store.blob_path(&r2.id).exists());

        // A running pull (shared gc lock) defers collection.
        let pull = store.lock_pull().unwrap();
        assert_eq!(store.prune(true).unwrap(), vec![r2.id.clone()]);
        assert_eq!(store.gc().unwrap(), None);
        assert!(store.has_layer(&c));
        drop(pull);
        store.gc().unwrap().unwrap();
        assert!(!store.has_layer(&a) && !store.has_layer(&c));
    }

    #[test]
    fn unreadable_record_is_skipped_kept_by_gc_and_repairable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let r1 = fake_image(&store, 1, &[&a]);
        let r2 = fake_image(&store, 2, &[&b]);
        store
            .commit_image(&r1, Some("docker.io/library/one:latest"), None)
            .unwrap();
        store
            .commit_image(&r2, Some("docker.io/library/two:latest"), None)
            .unwrap();
        let p = store.record_path(&r1.id);
        let body = std::fs::read(&p).unwrap();
        std::fs::write(&p, &body[..10]).unwrap();
        let listed: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|(i, _)| i.id)
            .collect();
        assert_eq!(listed, vec![r2.id.clone()], "the unreadable one is skipped");
        assert!(store.resolve("two").unwrap().is_some());
        assert!(matches!(
            store.record(&r1.id),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(store.record_or_repair(&r1.id).unwrap().is_none());
        // Removing another image deletes no layer while one record cannot say its own.
        store.remove_image("two", false).unwrap();
        assert_eq!(store.gc().unwrap(), Some(0));
        assert!(store.has_layer(&a) && store.has_layer(&b));
        store.commit_image(&r1, None, None).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        store.gc().unwrap().unwrap();
        assert!(store.has_layer(&a) && !store.has_layer(&b));
    }

    #[test]
    fn orphan_holds_are_released_but_mounts_and_live_holders_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = fake_image(&store, 1, &["a".repeat(64).as_str()]);
        store
            .commit_image(&r, Some("docker.io/library/one:latest"), None)
            .unwrap();
        for h in ["live", "gone", "mount-0123456789ab"] {
            store.add_hold(&r.id, h).unwrap();
        }
        assert!(store.has_hold("gone") && !store.has_hold("never"));
        let released = store.release_orphan_holds(|h| h == "live").unwrap();
        assert_eq!(released, vec!["gone".to_string()]);
        let left: Vec<String> = store.holds().unwrap().into_keys().collect();
        assert_eq!(
            left,
            vec!["live".to_string(), "mount-0123456789ab".to_string()]
        );
    }

    /// `image mount` of more layers than one page of mount options holds, in a store whose
    /// path has overlay's separators, leaves the process's working directory alone.
    #[test]
    fn mount_of_many_layers_keeps_the_cwd() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a:b,c");
        let store = Store::open(&root).unwrap();
        let layers: Vec<String> = (0..60u8).map(|i| format!("{i:02x}").repeat(32)).collect();
        let refs: Vec<&str> = layers.iter().map(String::as_str).collect();
        let rec = fake_image(&store, 1, &refs);
        for (i, l) in layers.iter().enumerate() {
            std::fs::write(store.layer_dir(l).join(format!("f{i}")), b"x").unwrap();
        }
        std::fs::write(store.layer_dir(&layers[59]).join("f0"), b"top").unwrap();
        store
            .commit_image(&rec, Some("docker.io/library/many:latest"), None)
            .unwrap();
        let cwd = std::env::current_dir().unwrap();
        let merged = store.mount("many").unwrap();
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert!(is_mounted(&merged));
        assert_eq!(
            std::fs::read(merged.join("f0")).unwrap(),
            b"top",
            "upper layers win"
        );
        assert!(merged.join("f1").exists() && merged.join("f59").exists());
        assert_eq!(
            store.mount("many").unwrap(),
            merged,
            "mounting twice is a no-op"
        );
        store.unmount("many").unwrap();
        assert!(!is_mounted(&merged) && !merged.exists());
        assert!(store.holds().unwrap().is_empty());
    }
}

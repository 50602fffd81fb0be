//! Pulling an image: manifest, platform selection, config, and the layers,
//! each streamed once from the registry through digest check, decompression
//! and unpacking.
//!
//! Per layer, three stages run at once and hand bytes along bounded channels:
//! 1. the async download task hashes the compressed bytes and counts them
//!    against the descriptor's size;
//! 2. a blocking thread writes them to the blob file, decompresses (gzip,
//!    zstd or none) and hashes the tar for the diff_id;
//! 3. a second blocking thread unpacks the tar into a temporary directory.
//!
//! The download sends its end-of-stream marker only when the digest and size
//! match, so stage 2 and 3 fail on anything else, and the temporary blob and
//! directory are deleted. Only a verified layer is renamed into `layers/`.
//! Layers download in parallel (up to [`PARALLEL_LAYERS`]).

use crate::auth;
use crate::manifest::{self, Compression, Descriptor, Fetched};
use crate::reference::{Reference, ReferenceError};
use crate::registry::{self, RegistryError, Repo};
use crate::settings::{insecure_registries, SettingsError};
use crate::store::{
    digest_hex, remove_any, Image, ImageRecord, LayerMeta, LayerRecord, Store, StoreError,
};
use crate::unpack::{unpack_layer, UnpackError, UnpackOptions};
use sha2::{Digest as _, Sha256};
use std::io::{BufRead as _, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Layers downloaded at once (Docker's default is 3).
pub const PARALLEL_LAYERS: usize = 3;
/// Whole-layer attempts when the connection drops mid-blob; each restarts from byte 0.
const LAYER_ATTEMPTS: u32 = 4;
/// Chunks in flight between the stages.
const CHANNEL_DEPTH: usize = 32;
const TAR_CHUNK: usize = 128 * 1024;
/// Manifests and configs are read whole; refuse absurd ones.
const MAX_SMALL_BLOB: u64 = 16 << 20;

/// What a pull does with the image besides fetching it.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `os/arch[/variant]`; the host's platform when `None`.
    pub platform: Option<String>,
    /// Registries (host[:port]) to reach over plain HTTP, on top of the
    /// configured ones and loopback.
    pub insecure: Vec<String>,
}

/// What a pull is doing, reported to the caller's [`PullSink`] as it happens, in this order:
/// `Resolving`; then, unless the image is already here, `LayerQueued` for each layer and, per
/// layer, `LayerExists` or `LayerStarted`, `Downloaded`..., `LayerDone` (with
/// `LayerRetrying` and a new `LayerStarted` when a download breaks off, `LayerFailed` when the
/// layer fails); `Committed` and `Done` when the image is in the store; `Ended` last, always,
/// whether the pull succeeded or failed.
///
/// Layers are named by the digest of their blob, as the manifest lists them. The library shows
/// nothing itself: the caller draws (the CLI's bars), logs or ignores the events.
#[derive(Debug, Clone, Copy)]
pub enum PullEvent<'a> {
    /// The pull of `reference` (the tag, or the digest, asked for) from `repository` begins.
    Resolving {
        /// The tag (`latest`), or the digest when the reference has one or no tag.
        reference: &'a str,
        /// The repository's path in its registry (`library/busybox`).
        repository: &'a str,
    },
    /// A layer the image needs; what happens to it follows (Docker's "Pulling fs layer").
    LayerQueued {
        /// The layer's blob digest.
        digest: &'a str,
    },
    /// The layer is in the store already: nothing to download.
    LayerExists {
        /// The layer's blob digest.
        digest: &'a str,
    },
    /// The layer's download begins (again, after `LayerRetrying`): `size` compressed bytes.
    LayerStarted {
        /// The layer's blob digest.
        digest: &'a str,
        /// The blob's size, as the manifest gives it.
        size: u64,
    },
    /// `bytes` more bytes of the layer's blob arrived (one event per chunk received; they are
    /// decompressed and unpacked as they arrive, so there is no separate extracting step).
    Downloaded {
        /// The layer's blob digest.
        digest: &'a str,
        /// The bytes received since the last event for this layer.
        bytes: u64,
    },
    /// The layer's download broke off; it restarts from its first byte after `wait`.
    LayerRetrying {
        /// The layer's blob digest.
        digest: &'a str,
        /// How long the pull waits before the next attempt.
        wait: Duration,
        /// Why the attempt failed.
        error: &'a PullError,
    },
    /// The layer is verified, unpacked and in the store.
    LayerDone {
        /// The layer's blob digest.
        digest: &'a str,
    },
    /// The layer could not be brought in; the pull fails.
    LayerFailed {
        /// The layer's blob digest.
        digest: &'a str,
    },
    /// The image is in the store and its references point at it; `digest` is the digest of
    /// the manifest (or index) that the reference resolved to.
    Committed {
        /// The manifest's (or index's) digest.
        digest: &'a str,
    },
    /// The pull succeeded.
    Done {
        /// Docker's familiar name with the tag or digest asked for (`busybox:latest`).
        name: &'a str,
        /// Whether anything new came in.
        outcome: Outcome,
    },
    /// The pull is over, successful or not: nothing follows.
    Ended,
}

/// Whether a pull brought anything new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The image was here already; at most its tags changed.
    UpToDate,
    /// New content was downloaded.
    Downloaded,
}

/// Receives a pull's [`PullEvent`]s. Called on the thread that runs the pull, between the
/// steps of the download: keep it short (the CLI updates a progress bar). Any
/// `Fn(PullEvent<'_>) + Sync` closure is one; `&|_| {}` ignores them.
pub trait PullSink: Sync {
    /// One event.
    fn event(&self, event: PullEvent<'_>);
}

impl<F: Fn(PullEvent<'_>) + Sync> PullSink for F {
    fn event(&self, event: PullEvent<'_>) {
        self(event)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("pulling {image}")]
    Registry {
        image: String,
        #[source]
        source: RegistryError,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("pulling {image}: {what} {digest} failed verification: {detail}; the partial data was discarded, pull again (if it persists, the registry holds a corrupt copy)")]
    Verify {
        image: String,
        what: Verified,
        digest: String,
        detail: String,
    },
    #[error("pulling {image}: layer {digest} unpacks to a tar with digest {actual}, but the image config says {expected}: the image is inconsistent, it was discarded")]
    DiffId {
        image: String,
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("pulling {image}: layer {digest}")]
    Unpack {
        image: String,
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("pulling {image}: decompressing layer {digest}")]
    Decompress {
        image: String,
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pulling {image}: the image config {digest} is invalid: {detail}")]
    BadConfig {
        image: String,
        digest: String,
        detail: String,
    },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pulling {image}: the download of layer {digest} broke off ({detail}); gave up after {attempts} attempts: check the network and the registry, then pull again (what was complete is kept)")]
    Interrupted {
        image: String,
        digest: String,
        detail: String,
        attempts: u32,
    },
    #[error("starting the pull's async runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// What failed a digest or size check ([`PullError::Verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// A manifest, index or config blob read whole.
    Blob,
    /// The manifest, against the digest the registry announced.
    Manifest,
    /// A layer blob.
    Layer,
    /// A layer blob that ended early: the connection broke, so another attempt may succeed.
    TruncatedBlob,
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verified::Blob => "blob",
            Verified::Manifest => "manifest",
            Verified::Layer => "layer",
            Verified::TruncatedBlob => "truncated blob",
        })
    }
}

impl PullError {
    fn transient(&self) -> bool {
        match self {
            PullError::Registry { source, .. } => source.is_transient(),
            PullError::Verify { what, .. } => *what == Verified::TruncatedBlob,
            PullError::Interrupted { .. } => true,
            _ => false,
        }
    }
}

/// An error and its causes on one line, joined by `: `.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens a registry connection for `r` with the stored credentials.
pub(crate) fn connect(
    berth_root: &Path,
    r: &Reference,
    extra_insecure: &[String],
    shown: &str,
) -> Result<Repo, PullError> {
    let insecure = insecure_registries(berth_root, extra_insecure)?;
    let plain = registry::is_loopback_host(&r.registry)
        || insecure
            .iter()
            .any(|h| h == &r.registry || h == r.api_host());
    let creds = auth::lookup(berth_root, &r.registry)?;
    Repo::new(r.api_host(), &r.repository, shown, plain, creds).map_err(|source| {
        PullError::Registry {
            image: shown.to_string(),
            source,
        }
    })
}

/// Pulls `reference` into `store`, telling `events` what it does (see [`PullEvent`]).
///
/// Blocking: runs its own tokio runtime and shuts it down (all threads joined)
/// before returning, so callers may fork afterwards.
pub fn pull_blocking(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
    events: &dyn PullSink,
) -> Result<Image, PullError> {
    let r = Reference::parse(reference)?;
    let berth_root = store.root().parent().unwrap_or(store.root()).to_path_buf();
    let want = match &opts.platform {
        Some(p) => manifest::parse_platform(p)?,
        None => manifest::host_platform(),
    };
    store.clean_tmp_if_idle()?;
    // Held for the whole pull: garbage collection waits for it.
    let _pull_lock = store.lock_pull()?;
    let repo = connect(&berth_root, &r, &opts.insecure, &r.to_string())?;
    let rt = registry::runtime().map_err(PullError::Runtime)?;
    let explicit = opts.platform.is_some();
    let res = rt.block_on(pull(store, &repo, &r, (&want, explicit), events));
    // Dropping the runtime joins its worker and blocking threads.
    drop(rt);
    events.event(PullEvent::Ended);
    let id = res?;
    store.sync()?;
    store
        .resolve(&id)?
        .ok_or_else(|| StoreError::NoSuchImage(id.clone()).into())
}

struct Ctx<'a> {
    store: &'a Store,
    repo: &'a Repo,
    image: String,
    events: &'a dyn PullSink,
}

impl Ctx<'_> {
    fn reg(&self, source: RegistryError) -> PullError {
        PullError::Registry {
            image: self.image.clone(),
            source,
        }
    }

    /// A small blob (manifest, config) read whole and verified.
    async fn small(
        &self,
        path: &str,
        accept: Option<&str>,
        what: &str,
        digest: Option<&str>,
        size: Option<u64>,
    ) -> Result<(bytes::Bytes, String, Option<String>, Option<String>), PullError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self
                .repo
                .get(path, accept, what)
                .await
                .map_err(|e| self.reg(e))?;
            let ct = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let dcd = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if resp.content_length().is_some_and(|l| l > MAX_SMALL_BLOB) {
                return Err(PullError::Verify {
                    image: self.image.clone(),
                    what: Verified::Blob,
                    digest: digest.unwrap_or(what).to_string(),
                    detail: format!("{what} is larger than {MAX_SMALL_BLOB} bytes"),
                });
            }
            let body = match resp.bytes().await {
                Ok(b) => b,
                Err(e) if attempt < registry::MAX_ATTEMPTS => {
                    tracing::debug!(error = %e, what, "reading body failed, retrying");
                    tokio::time::sleep(registry::backoff(attempt)).await;
                    continue;
                }
                Err(e) => {
                    return Err(self.reg(RegistryError::Transport {
                        what: what.to_string(),
                        host: self.repo.host().to_string(),
                        attempts: attempt,
                        hint: "",
                        source: e,
                    }))
                }
            };
            let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
            if let Some(want) = digest {
                if want != actual {
                    return Err(PullError::Verify {
                        image: self.image.clone(),
                        what: Verified::Blob,
                        digest: want.to_string(),
                        detail: format!("{what} has digest {actual}"),
                    });
                }
            }
            if let Some(s) = size {
                if body.len() as u64 != s {
                    return Err(PullError::Verify {
                        image: self.image.clone(),
                        what: Verified::Blob,
                        digest: digest.unwrap_or(what).to_string(),
                        detail: format!("{what} is {} bytes, the manifest says {s}", body.len()),
                    });
                }
            }
            return Ok((body, actual, ct, dcd));
        }
    }
}

async fn pull(
    store: &Store,
    repo: &Repo,
    r: &Reference,
    (want, explicit): (&manifest::Platform, bool),
    events: &dyn PullSink,
) -> Result<String, PullError> {
    let ctx = Ctx {
        store,
        repo,
        image: r.to_string(),
        events,
    };
    let shown_tag = r
        .tag
        .clone()
        .unwrap_or_else(|| r.api_reference().to_string());
    events.event(PullEvent::Resolving {
        reference: if r.tag.is_some() && r.digest.is_none() {
            &shown_tag
        } else {
            r.api_reference()
        },
        repository: &r.repository,
    });
    // The manifest, or the index and then the platform's manifest.
    let what = format!("manifest {}", ctx.image);
    let (body, digest, ct, header_digest) = ctx
        .small(
            &format!("manifests/{}", r.api_reference()),
            Some(manifest::ACCEPT),
            &what,
            r.digest.as_deref(),
            None,
        )
        .await?;
    if let (Some(h), None) = (&header_digest, &r.digest) {
        if h.starts_with("sha256:") && *h != digest {
            return Err(PullError::Verify {
                image: ctx.image.clone(),
                what: Verified::Manifest,
                digest: h.clone(),
                detail: format!("the registry says its digest is {h}, the bytes hash to {digest}"),
            });
        }
    }
    let top_digest = digest.clone();
    let mut blobs_to_keep: Vec<(String, bytes::Bytes)> = vec![(digest.clone(), body.clone())];
    let (m, manifest_digest, manifest_media_type) =
        match manifest::parse(&ctx.image, ct.as_deref(), &body)? {
            Fetched::Manifest(m) => {
                let mt = m
                    .media_type
                    .clone()
                    .unwrap_or_else(|| manifest::OCI_MANIFEST.into());
                (m, digest, mt)
            }
            Fetched::Index(idx) => {
                let d = manifest::select_platform(&ctx.image, &idx, want)?.clone();
                let what = format!("manifest {} for {}", d.digest, want);
                let (body, digest, ct, _) = ctx
                    .small(
                        &format!("manifests/{}", d.digest),
                        Some(manifest::ACCEPT),
                        &what,
                        Some(&d.digest),
                        Some(d.size),
                    )
                    .await?;
                let ct = ct.or(Some(d.media_type.clone()).filter(|s| !s.is_empty()));
                match manifest::parse(&ctx.image, ct.as_deref(), &body)? {
                    Fetched::Manifest(m) => {
                        let mt = m.media_type.clone().unwrap_or_else(|| d.media_type.clone());
                        blobs_to_keep.push((digest.clone(), body));
                        (m, digest, mt)
                    }
                    Fetched::Index(_) => {
                        return Err(manifest::ManifestError::UnknownMediaType {
                            image: ctx.image.clone(),
                            media_type: "a nested index".into(),
                        }
                        .into())
                    }
                }
            }
        };
    let id = m.config.digest.clone();
    if !crate::reference::is_sha256_digest(&id) {
        return Err(PullError::BadConfig {
            image: ctx.image.clone(),
            digest: id,
            detail: "the config digest is not sha256".into(),
        });
    }
    let tag_ref = r.digest.is_none().then(|| r.tagged_name()).flatten();
    let digest_ref = r.digested_name(&top_digest);

    // Already here: only (re)tag.
    if store
        .record_or_repair(&id)?
        .is_some_and(|rec| rec.layers.iter().all(|l| store.has_layer(&l.diff_id)))
    {
        for (d, b) in &blobs_to_keep {
            if !store.has_blob(d) {
                store.write_atomic(&store.blob_path(d), b)?;
            }
        }
        let rec = store.record(&id)?.expect("checked above");
        if explicit {
            let got = manifest::Platform {
                os: rec.os.clone(),
                architecture: rec.architecture.clone(),
                variant: rec.variant.clone(),
            };
            check_platform(&ctx.image, want, &got)?;
        }
        commit(store, &rec, tag_ref, &digest_ref, events)?;
        events.event(PullEvent::Done {
            name: &shown_name(r),
            outcome: Outcome::UpToDate,
        });
        return Ok(id);
    }

    // The config: small, read whole, verified.
    let (config_body, _, _, _) = ctx
        .small(
            &format!("blobs/{id}"),
            None,
            &format!("config {id}"),
            Some(&id),
            Some(m.config.size),
        )
        .await?;
    let config_json: serde_json::Value =
        serde_json::from_slice(&config_body).map_err(|e| PullError::BadConfig {
            image: ctx.image.clone(),
            digest: id.clone(),
            detail: e.to_string(),
        })?;
    let _: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&config_body).map_err(|e| PullError::BadConfig {
            image: ctx.image.clone(),
            digest: id.clone(),
            detail: e.to_string(),
        })?;
    let diff_ids: Vec<String> = config_json
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if explicit {
        let got = manifest::Platform {
            os: config_json
                .pointer("/os")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .into(),
            architecture: config_json
                .pointer("/architecture")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .into(),
            variant: config_json
                .pointer("/variant")
                .and_then(|v| v.as_str())
                .map(Into::into),
        };
        check_platform(&ctx.image, want, &got)?;
    }
    if diff_ids.len() != m.layers.len() {
        return Err(PullError::BadConfig {
            image: ctx.image.clone(),
            digest: id.clone(),
            detail: format!(
                "it lists {} diff_ids for {} layers in the manifest",
                diff_ids.len(),
                m.layers.len()
            ),
        });
    }
    if let Some(bad) = diff_ids
        .iter()
        .find(|d| !crate::reference::is_sha256_digest(d))
    {
        return Err(PullError::BadConfig {
            image: ctx.image.clone(),
            digest: id.clone(),
            detail: format!("diff_id {bad:?} is not a sha256 digest"),
        });
    }
    let mut compressions = vec![];
    for l in &m.layers {
        if !crate::reference::is_sha256_digest(&l.digest) {
            return Err(PullError::Verify {
                image: ctx.image.clone(),
                what: Verified::Layer,
                digest: l.digest.clone(),
                detail: "only sha256 digests are supported".into(),
            });
        }
        compressions.push(manifest::layer_compression(&ctx.image, l)?);
    }

    // The layers, each once even when the image repeats one.
    let mut unique: Vec<(usize, &Descriptor, &String, Compression)> = vec![];
    for (i, (l, d)) in m.layers.iter().zip(&diff_ids).enumerate() {
        if !unique.iter().any(|(_, _, u, _)| *u == d) {
            unique.push((i, l, d, compressions[i]));
            events.event(PullEvent::LayerQueued { digest: &l.digest });
        }
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL_LAYERS));
    let futs = unique.iter().map(|(_, l, d, c)| {
        let sem = sem.clone();
        let ctx = &ctx;
        async move {
            let _permit = sem.acquire().await.expect("semaphore open");
            fetch_layer(ctx, l, d, *c)
                .await
                .map(|size| ((*d).clone(), size))
        }
    });
    let results = futures_util::future::join_all(futs).await;
    let mut sizes = std::collections::HashMap::new();
    let mut first_err = None;
    for r in results {
        match r {
            Ok((d, s)) => {
                sizes.insert(d, s);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    // Everything is in place: blobs, then the record, last.
    store.write_atomic(&store.blob_path(&id), &config_body)?;
    for (d, b) in &blobs_to_keep {
        store.write_atomic(&store.blob_path(d), b)?;
    }
    let layers: Vec<LayerRecord> = m
        .layers
        .iter()
        .zip(&diff_ids)
        .map(|(l, d)| LayerRecord {
            digest: l.digest.clone(),
            media_type: l.media_type.clone(),
            size: l.size,
            diff_id: d.clone(),
            unpacked_size: sizes.get(d).copied().unwrap_or(0),
        })
        .collect();
    let str_at = |p: &str| {
        config_json
            .pointer(p)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let rec = ImageRecord {
        id: id.clone(),
        manifest_digest: manifest_digest.clone(),
        manifest_media_type,
        size: layers.iter().map(|l| l.unpacked_size).sum(),
        layers,
        os: str_at("/os").unwrap_or_default(),
        architecture: str_at("/architecture").unwrap_or_default(),
        variant: str_at("/variant"),
        created: str_at("/created"),
        pulled: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    // Layers must be durable before a record points at them.
    store.sync()?;
    commit(store, &rec, tag_ref, &digest_ref, events)?;
    events.event(PullEvent::Done {
        name: &shown_name(r),
        outcome: Outcome::Downloaded,
    });
    Ok(id)
}

/// A single-platform image asked for with --platform must be that platform.
fn check_platform(
    image: &str,
    want: &manifest::Platform,
    got: &manifest::Platform,
) -> Result<(), PullError> {
    if manifest::platform_matches(want, got) {
        return Ok(());
    }
    Err(manifest::ManifestError::NoMatchingPlatform {
        image: image.to_string(),
        wanted: want.to_string(),
        available: got.to_string(),
    }
    .into())
}

/// Points the tag and digest reference at the image, and says so.
fn commit(
    store: &Store,
    rec: &ImageRecord,
    tag_ref: Option<String>,
    digest_ref: &str,
    events: &dyn PullSink,
) -> Result<(), PullError> {
    store.commit_image(rec, tag_ref.as_deref(), Some(digest_ref))?;
    let digest = digest_ref.rsplit_once('@').map_or(digest_ref, |(_, d)| d);
    events.event(PullEvent::Committed { digest });
    Ok(())
}

/// Docker's familiar name with tag or digest: `busybox:latest`.
fn shown_name(r: &Reference) -> String {
    let mut s = r.familiar_name();
    if let Some(t) = &r.tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = &r.digest {
        s.push('@');
        s.push_str(d);
    }
    s
}

/// Brings one layer into the store (or finds it there); returns its unpacked size.
async fn fetch_layer(
    ctx: &Ctx<'_>,
    l: &Descriptor,
    diff_id: &str,
    compression: Compression,
) -> Result<u64, PullError> {
    let store = ctx.store.clone();
    let d = diff_id.to_string();
    let _lock = tokio::task::spawn_blocking(move || store.lock_layer(&d))
        .await
        .expect("lock task")?;
    if ctx.store.has_layer(diff_id) {
        ctx.events
            .event(PullEvent::LayerExists { digest: &l.digest });
        return Ok(ctx.store.layer_size(diff_id));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match stream_layer(ctx, l, diff_id, compression).await {
            Ok(size) => {
                ctx.events.event(PullEvent::LayerDone { digest: &l.digest });
                return Ok(size);
            }
            Err(e) if e.transient() && attempt < LAYER_ATTEMPTS => {
                let wait = registry::backoff(attempt);
                tracing::debug!(layer = %l.digest, attempt, error = %e, "layer download failed, restarting it");
                ctx.events.event(PullEvent::LayerRetrying {
                    digest: &l.digest,
                    wait,
                    error: &e,
                });
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                ctx.events
                    .event(PullEvent::LayerFailed { digest: &l.digest });
                return Err(match e {
                    PullError::Interrupted {
                        image,
                        digest,
                        detail,
                        ..
                    } => PullError::Interrupted {
                        image,
                        digest,
                        detail,
                        attempts: attempt,
                    },
                    e => e,
                });
            }
        }
    }
}

enum Msg {
    Data(bytes::Bytes),
    /// The download finished and its digest and size are right.
    End,
}

/// Reads the download's chunks, writing each to the blob file as it passes.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Msg>,
    cur: bytes::Bytes,
    blob: std::io::BufWriter<std::fs::File>,
    ended: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => {
                    self.blob.write_all(&b)?;
                    self.cur = b;
                }
                Some(Msg::End) => {
                    self.blob.flush()?;
                    self.ended = true;
                }
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the download stopped",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// Reads the decompressed tar chunks for the unpacker, hashing them for the
/// diff_id on the way (on the unpacker's thread, which waits on the kernel
/// more than it computes; the decompressor's thread is the busier one).
struct TarReader {
    rx: std::sync::mpsc::Receiver<Option<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    ended: bool,
    hasher: Sha256,
}

impl Read for TarReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Some(v)) => {
                    self.hasher.update(&v);
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(None) => self.ended = true,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the layer stream stopped",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Stage 2: blob file and decompression.
fn decompress_stage(
    src: ChunkReader,
    compression: Compression,
    tx: std::sync::mpsc::SyncSender<Option<Vec<u8>>>,
    unpack_failed: &AtomicBool,
) -> std::io::Result<()> {
    let mut src = src;
    let mut consumer_alive = true;
    {
        let mut buffered = std::io::BufReader::with_capacity(64 * 1024, &mut src);
        let kind = match compression {
            Compression::Sniff => manifest::sniff(buffered.fill_buf()?),
            c => c,
        };
        let mut reader: Box<dyn Read + '_> = match kind {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
            Compression::None | Compression::Sniff => Box::new(buffered),
        };
        loop {
            let mut chunk = vec![0u8; TAR_CHUNK];
            let mut filled = 0;
            // Fill whole chunks: fewer, larger hand-offs.
            while filled < chunk.len() {
                match reader.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            if consumer_alive && tx.send(Some(chunk)).is_err() {
                if unpack_failed.load(Ordering::SeqCst) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "the unpacker failed",
                    ));
                }
                consumer_alive = false;
            }
        }
    }
    // Anything after the compressed stream still goes to the blob file.
    std::io::copy(&mut src, &mut std::io::sink())?;
    let _ = tx.send(None);
    if !consumer_alive {
        // The unpacker stopped reading before the end: the diff_id cannot be known.
        return Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "the unpacker stopped before the end of the tar",
        ));
    }
    Ok(())
}

/// Downloads, verifies and unpacks one layer into the store; returns its unpacked size.
async fn stream_layer(
    ctx: &Ctx<'_>,
    l: &Descriptor,
    diff_id: &str,
    compression: Compression,
) -> Result<u64, PullError> {
    let store = ctx.store;
    let tmp_layer = store
        .tmp_dir()
        .join(format!("layer-{}", digest_hex(diff_id)));
    let tmp_blob = store
        .tmp_dir()
        .join(format!("blob-{}", digest_hex(&l.digest)));
    // Leftovers of an interrupted pull of this layer (we hold its lock).
    remove_any(&tmp_layer).map_err(io_at(&tmp_layer))?;
    remove_any(&tmp_blob).map_err(io_at(&tmp_blob))?;
    let result = stream_layer_into(ctx, l, diff_id, compression, &tmp_layer, &tmp_blob).await;
    match result {
        Ok(size) => {
            let meta = serde_json::to_vec(&LayerMeta {
                diff_id: diff_id.to_string(),
                unpacked_size: size,
            })
            .expect("serializable");
            store.write_atomic(&store.layer_meta_path(diff_id), &meta)?;
            let blob = store.blob_path(&l.digest);
            std::fs::rename(&tmp_blob, &blob).map_err(io_at(&blob))?;
            let dir = store.layer_dir(diff_id);
            std::fs::rename(&tmp_layer, &dir).map_err(io_at(&dir))?;
            Ok(size)
        }
        Err(e) => {
            let _ = remove_any(&tmp_layer);
            let _ = remove_any(&tmp_blob);
            Err(e)
        }
    }
}

async fn stream_layer_into(
    ctx: &Ctx<'_>,
    l: &Descriptor,
    diff_id: &str,
    compression: Compression,
    tmp_layer: &Path,
    tmp_blob: &Path,
) -> Result<u64, PullError> {
    std::fs::create_dir(tmp_layer).map_err(io_at(tmp_layer))?;
    let blob_file = std::fs::File::create(tmp_blob).map_err(io_at(tmp_blob))?;
    let what = format!("layer {}", l.digest);
    let mut resp = ctx
        .repo
        .get(&format!("blobs/{}", l.digest), None, &what)
        .await
        .map_err(|e| ctx.reg(e))?;
    ctx.events.event(PullEvent::LayerStarted {
        digest: &l.digest,
        size: l.size,
    });

    let (ctx_tx, ctx_rx) = tokio::sync::mpsc::channel::<Msg>(CHANNEL_DEPTH);
    let (tar_tx, tar_rx) = std::sync::mpsc::sync_channel::<Option<Vec<u8>>>(8);
    let unpack_failed = Arc::new(AtomicBool::new(false));
    let dest = tmp_layer.to_path_buf();
    let failed = unpack_failed.clone();
    let unpacker = tokio::task::spawn_blocking(move || {
        let mut reader = TarReader {
            rx: tar_rx,
            cur: Vec::new(),
            pos: 0,
            ended: false,
            hasher: Sha256::new(),
        };
        let res = unpack_layer(&mut reader, &dest, &UnpackOptions::default());
        if res.is_err() {
            failed.store(true, Ordering::SeqCst);
        }
        // Whatever follows the tar's end still counts for the diff_id.
        let drained = res
            .as_ref()
            .is_ok()
            .then(|| std::io::copy(&mut reader, &mut std::io::sink()));
        let diff_id = format!(
            "sha256:{}",
            hex::encode(std::mem::take(&mut reader.hasher).finalize())
        );
        drop(reader);
        res.map(|stats| (stats, diff_id, drained))
    });
    let failed = unpack_failed.clone();
    let decompressor = tokio::task::spawn_blocking(move || {
        let src = ChunkReader {
            rx: ctx_rx,
            cur: bytes::Bytes::new(),
            blob: std::io::BufWriter::with_capacity(256 * 1024, blob_file),
            ended: false,
        };
        decompress_stage(src, compression, tar_tx, &failed)
    });

    // Stage 1: the download, hashed and counted as it streams.
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let download: Result<(), PullError> = async {
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    let detail = error_chain(&e);
                    return Err(PullError::Interrupted {
                        image: ctx.image.clone(),
                        digest: l.digest.clone(),
                        detail: format!("after {received} of {} bytes: {detail}", l.size),
                        attempts: 1,
                    });
                }
            };
            received += chunk.len() as u64;
            if received > l.size {
                return Err(PullError::Verify {
                    image: ctx.image.clone(),
                    what: Verified::Layer,
                    digest: l.digest.clone(),
                    detail: format!(
                        "the registry sent more than the {} bytes the manifest says",
                        l.size
                    ),
                });
            }
            hasher.update(&chunk);
            ctx.events.event(PullEvent::Downloaded {
                digest: &l.digest,
                bytes: chunk.len() as u64,
            });
            if ctx_tx.send(Msg::Data(chunk)).await.is_err() {
                // The decompressor stopped: its error says why.
                return Ok(());
            }
        }
        if received < l.size {
            return Err(PullError::Verify {
                image: ctx.image.clone(),
                what: Verified::TruncatedBlob,
                digest: l.digest.clone(),
                detail: format!("the download ended after {received} of {} bytes", l.size),
            });
        }
        let actual = format!(
            "sha256:{}",
            hex::encode(std::mem::take(&mut hasher).finalize())
        );
        if actual != l.digest {
            return Err(PullError::Verify {
                image: ctx.image.clone(),
                what: Verified::Layer,
                digest: l.digest.clone(),
                detail: format!("the downloaded bytes hash to {actual}"),
            });
        }
        let _ = ctx_tx.send(Msg::End).await;
        Ok(())
    }
    .await;
    drop(ctx_tx);
    let decompressed = decompressor.await.expect("decompress task");
    let unpacked = unpacker.await.expect("unpack task");
    download?;
    if let Err(e) = &decompressed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(PullError::Decompress {
                image: ctx.image.clone(),
                digest: l.digest.clone(),
                source: std::io::Error::new(e.kind(), e.to_string()),
            });
        }
    }
    let (stats, actual_diff, drained) = unpacked.map_err(|source| PullError::Unpack {
        image: ctx.image.clone(),
        digest: l.digest.clone(),
        source,
    })?;
    decompressed
        .and(drained.unwrap_or(Ok(0)).map(|_| ()))
        .map_err(|source| PullError::Decompress {
            image: ctx.image.clone(),
            digest: l.digest.clone(),
            source,
        })?;
    if actual_diff != diff_id {
        return Err(PullError::DiffId {
            image: ctx.image.clone(),
            digest: l.digest.clone(),
            expected: diff_id.to_string(),
            actual: actual_diff,
        });
    }
    Ok(stats.bytes)
}

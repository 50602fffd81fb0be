//! The local image store under `<berth root>/image`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not implemented yet")]
    Unimplemented,
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
    /// Total size of the unpacked layers in bytes.
    pub size: u64,
    /// RFC 3339 creation time from the config.
    pub created: Option<String>,
}

impl Store {
    pub fn open(berth_root: &Path) -> Result<Store, StoreError> {
        let root = berth_root.join("image");
        std::fs::create_dir_all(&root).map_err(|source| StoreError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(Store { root })
    }

    /// `<berth root>/image`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Local lookup by reference ("busybox", "127.0.0.1:5000/x:tag", "x@sha256:..")
    /// or by (short) image id.
    pub fn resolve(&self, _reference: &str) -> Result<Option<Image>, StoreError> {
        Err(StoreError::Unimplemented)
    }

    /// Holds keep an image (and its layers) from rmi/prune while a container uses it.
    pub fn add_hold(&self, _image_id: &str, _holder: &str) -> Result<(), StoreError> {
        Err(StoreError::Unimplemented)
    }

    pub fn remove_hold(&self, _holder: &str) -> Result<(), StoreError> {
        Err(StoreError::Unimplemented)
    }
}

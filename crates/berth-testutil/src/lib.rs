//! Test support for berth: busybox root filesystems, fixture OCI image
//! layouts, a real local registry (plain, basic auth, token auth), pushing
//! with skopeo, a fault-injecting proxy, cleanup guards and tree snapshots.
//!
//! Needs (Debian packages): busybox-static, docker-registry, skopeo, umoci,
//! apache2-utils (htpasswd), openssl, and root for owners, devices, mounts
//! and `trusted.*` xattrs.
//!
//! | module | what |
//! |---|---|
//! | [`rootfs`] | [`busybox_rootfs`]: a busybox root filesystem |
//! | [`tarw`] | [`tarw::TarWriter`], [`tarw::Entry`]: verbatim tar headers, also hostile ones |
//! | [`fixtures`] | OCI layouts: busybox, multilayer, multiarch, zstd, uncompressed, big, custom |
//! | [`registry`] | [`Registry`]: docker-registry on 127.0.0.1, killed and deleted on Drop |
//! | [`token`] | the bearer-token server behind [`Registry::start_token_auth`] |
//! | [`mod@push`] | [`push()`]: `skopeo copy` to a registry (OCI or Docker schema 2) |
//! | [`proxy`] | [`FaultProxy`]: 500/429, cut, corrupt, stall and redirected blobs |
//! | [`guards`] | [`MountGuard`], [`ChildGuard`], [`unique_name`], [`guards::spawn_tied`] |
//! | [`tree`] | [`tree_snapshot`], [`diff_trees`], [`umoci_unpack`] |
//! | [`http`] | a tiny HTTP/1.1 client and base64 |
//! | [`netns_host`] | [`netns_host::run_in_private_host`]: one test in private namespaces |
//!
//! ```no_run
//! use berth_testutil::{fixtures, FaultProxy, Registry};
//! # fn main() -> anyhow::Result<()> {
//! let tmp = tempfile::tempdir()?;
//! let layout = tmp.path().join("busybox");
//! fixtures::busybox_layout(&layout)?;
//! let reg = Registry::start()?;
//! let digest = reg.push(&layout, "latest", "library/busybox:latest", None)?;
//! let proxy = FaultProxy::builder(&reg.addr()).fail_next(2).start()?;
//! // pull `{proxy.addr()}/library/busybox@{digest}`: two 500s, then success
//! # let _ = (digest, proxy); Ok(()) }
//! ```

pub mod fixtures;
pub mod guards;
pub mod http;
pub mod netns_host;
pub mod proxy;
pub mod push;
pub mod registry;
pub mod rootfs;
pub mod tarw;
pub mod token;
pub mod tree;

pub use guards::{unique_name, ChildGuard, MountGuard};
pub use proxy::{FaultConfig, FaultProxy, ProxyStats};
pub use push::{push, PushFormat, PushOpts};
pub use registry::Registry;
pub use rootfs::busybox_rootfs;
pub use token::TokenPolicy;
pub use tree::{diff_trees, tree_snapshot, umoci_unpack, TreeEntry};

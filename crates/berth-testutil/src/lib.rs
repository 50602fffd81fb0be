//! Test support for berth: busybox root filesystems, fixture OCI image
//! layouts, a real local registry (plain, basic auth, token auth), pushing
//! with skopeo, a fault-injecting proxy, cleanup guards and tree snapshots.

pub mod fixtures;
pub mod guards;
pub mod http;
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

//! berth's container networking, done with the kernel directly: Linux bridges and veth pairs
//! through rtnetlink, NAT and published ports through one nftables table, a persistent locked
//! address allocator, and a small DNS responder per user-defined network.
//!
//! On-disk layout under `<berth root>/networks/`:
//! ```text
//! lock                 flock held by every change (create, rm, connect, disconnect, gc)
//! <name>.json          a network's configuration (Network)
//! ipam/<name>.json     its address leases (Vec<Lease>), one per attached container
//! dns/<name>.hosts     "IP NAME ALIAS..." lines the DNS responder serves
//! dns/<name>.pid       "PID STARTTIME" of the running responder
//! ```
//! and `<berth root>/daemon.json`, whose `default-address-pools` (Docker's key) are the pools
//! user networks take their subnets from ([`pools`]).
//! Nothing here starts a thread that outlives a call or an async runtime, so the engine can fork
//! right after any of these functions return.
//!
//! How the engine uses it, per `--network` ([`NetworkMode::parse`]):
//! - `none` / bridge networks: [`create_netns`] at `/run/berth/netns/<id>`, put that path in the
//!   OCI spec's network namespace, then for a bridge network [`connect`] (with `--ip`,
//!   `--mac-address`, `--network-alias`, `-p` from [`parse_publish`], `-P` from [`publish_all`]),
//!   and keep the [`Attachment`] in the container's record. Write `/etc/resolv.conf` with
//!   [`resolv_conf_for`] and `/etc/hosts` with [`hosts_file`].
//! - on `rm` (and `--rm`): [`release`], then [`remove_netns`].
//! - `host` and `container:NAME`: no namespace of its own; the host's or that container's.
//! - at the start of commands that list containers: [`gc`] with the live container IDs, which
//!   reclaims what containers killed with -9 held (and rewrites the nftables rules if so).

pub mod cli;
pub mod dns;
mod error;
mod etc;
mod mode;
mod model;
pub mod netns;
pub mod nft;
pub mod nl;
pub mod pools;
mod publish;
mod store;

pub use error::NetError;
pub use etc::{hosts_file, hosts_lines, resolv_conf_for};
pub use mode::NetworkMode;
pub use model::{
    listed_ports, ports_summary, Attachment, ConnectOptions, InvalidValue, Lease, Network,
    NetworkOptions, PortMapping, Protocol, Subnet, Subnet6, DEFAULT_BRIDGE, DEFAULT_BRIDGE_IFNAME,
    DEFAULT_NETWORK, DEFAULT_UPLINK_MTU, HOST_LOCAL_MTU,
};
pub use netns::{create_netns, in_netns, remove_netns, NetnsError};
pub use publish::{parse_publish, publish_all, PublishError};
pub use store::{connect, disconnect, gc, gc_where, release, uplink_mtu, DnsCommand, NetStore};

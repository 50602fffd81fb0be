//! [`NetError`], the error of this crate's public API: its own kinds, and those of the modules
//! below it, kept whole.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::dns::DnsError;
use crate::model::{InvalidValue, Subnet};
use crate::netns::NetnsError;
use crate::nft::NftError;
use crate::nl::{InUse, InUseKind, NlError};
use crate::pools::PoolsError;
use crate::publish::PublishError;

/// Every error of this crate's public API.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network {0} not found (see `berth network ls`)")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("invalid network name {0:?}: use letters, digits, '_', '.', '-', starting with a letter or digit")]
    BadName(String),
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("subnet {subnet} overlaps with network {other} ({other_subnet})")]
    Overlap {
        subnet: String,
        other: String,
        other_subnet: String,
    },
    #[error(
        "subnet {subnet} overlaps the {in_use} in the network namespace where the bridge \
         lives; choose another subnet (--subnet), or remove that {}",
        if in_use.kind == InUseKind::Route { "route" } else { "address" }
    )]
    HostOverlap { subnet: Subnet, in_use: InUse },
    #[error(
        "the default network's subnet {subnet} overlaps the {in_use} in the network namespace \
         where the bridge lives; remove that {}, choose another default network with \
         BERTH_DEFAULT_NETWORK=NAME, or remove {record} while no container uses it, so that a \
         free subnet is chosen",
        if in_use.kind == InUseKind::Route { "route" } else { "address" }
    )]
    DefaultOverlap {
        subnet: Subnet,
        in_use: InUse,
        record: PathBuf,
    },
    #[error("no free subnet left in the address pools ({pools}) for network {network}; set default-address-pools in {settings} or give --subnet")]
    PoolsExhausted {
        network: String,
        pools: String,
        settings: PathBuf,
    },
    #[error("no free address left in network {network} ({subnet})")]
    Exhausted { network: String, subnet: String },
    #[error("address {ip} is already in use in network {network} (by {holder})")]
    AddressInUse {
        ip: Ipv4Addr,
        network: String,
        holder: String,
    },
    #[error("address {ip} is outside network {network}'s subnet {subnet}")]
    AddressOutside {
        ip: IpAddr,
        network: String,
        subnet: String,
    },
    #[error("port {port} is already in use on {host_ip}")]
    PortInUse { port: u16, host_ip: String },
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error(
        "network {network} has active endpoints ({containers}); disconnect or remove them first"
    )]
    InUse { network: String, containers: String },
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a network id: reading random bytes")]
    Random(#[source] std::io::Error),
    #[error("corrupt network record {path}: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Netlink(#[from] NlError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Pools(#[from] PoolsError),
}

impl From<InvalidValue> for NetError {
    fn from(e: InvalidValue) -> NetError {
        NetError::Invalid {
            what: e.what,
            value: e.value,
            why: e.why,
        }
    }
}

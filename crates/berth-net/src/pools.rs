//! The address pools user networks take their subnets from, as Docker's
//! `default-address-pools`: each pool is a `base` subnet cut into subnets of `size` bits.
//!
//! They are set in `<berth root>/daemon.json`, spelled as in Docker's `daemon.json` (other keys
//! are ignored):
//! ```json
//! {"default-address-pools": [{"base": "10.89.0.0/16", "size": 24}]}
//! ```
//! Without that file or key, podman's defaults: 10.89.0.0/16, then 10.90.0.0/15, 10.92.0.0/14,
//! 10.96.0.0/11 and 10.128.0.0/9, all cut into /24s.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::model::Subnet;

/// The name of berth's settings file under its root.
pub const SETTINGS_FILE: &str = "daemon.json";

/// Why the pools could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PoolsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// One pool: subnets of prefix length `size` inside `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub base: Subnet,
    pub size: u8,
}

impl AddressPool {
    /// The pool's subnets, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Subnet> {
        let base = u32::from(self.base.addr);
        let count = 1u64 << (self.size - self.base.prefix);
        let step = 1u64 << (32 - self.size);
        let size = self.size;
        (0..count).map(move |i| Subnet {
            addr: Ipv4Addr::from((u64::from(base) + i * step) as u32),
            prefix: size,
        })
    }
}

impl std::fmt::Display for AddressPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (size {})", self.base, self.size)
    }
}

/// Podman's default pools.
pub fn default_pools() -> Vec<AddressPool> {
    [
        "10.89.0.0/16",
        "10.90.0.0/15",
        "10.92.0.0/14",
        "10.96.0.0/11",
        "10.128.0.0/9",
    ]
    .iter()
    .map(|b| AddressPool {
        base: b.parse().expect("a valid default pool"),
        size: 24,
    })
    .collect()
}

#[derive(serde::Deserialize)]
struct Settings {
    #[serde(default, rename = "default-address-pools")]
    pools: Option<Vec<PoolSpec>>,
}

#[derive(serde::Deserialize)]
struct PoolSpec {
    base: String,
    size: u8,
}

/// The pools of the berth root `root` (its `daemon.json`, or the defaults).
pub fn load(root: &Path) -> Result<Vec<AddressPool>, PoolsError> {
    let path = root.join(SETTINGS_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(default_pools()),
        Err(source) => return Err(PoolsError::Read { path, source }),
    };
    parse(&data).map_err(|why| PoolsError::Invalid { path, why })
}

fn parse(data: &[u8]) -> Result<Vec<AddressPool>, String> {
    let s: Settings = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let Some(specs) = s.pools else {
        return Ok(default_pools());
    };
    if specs.is_empty() {
        return Err("default-address-pools is empty".into());
    }
    specs
        .into_iter()
        .map(|p| {
            let base: Subnet = p
                .base
                .parse()
                .map_err(|e| format!("default-address-pools: {e}"))?;
            if p.size < base.prefix || p.size > 30 {
                return Err(format!(
                    "default-address-pools: size {} of pool {} must be between {} and 30",
                    p.size, base, base.prefix
                ));
            }
            Ok(AddressPool { base, size: p.size })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_cut_in_order_and_read_as_docker_spells_them() {
        let p = parse(br#"{"default-address-pools":[{"base":"172.30.0.0/16","size":24}],"x":1}"#)
            .unwrap();
        assert_eq!(p.len(), 1);
        let v: Vec<String> = p[0].subnets().take(2).map(|s| s.to_string()).collect();
        assert_eq!(v, ["172.30.0.0/24", "172.30.1.0/24"]);
        assert_eq!(p[0].subnets().count(), 256);
        assert_eq!(parse(b"{}").unwrap(), default_pools());
        assert_eq!(
            default_pools()[0].subnets().next().unwrap().to_string(),
            "10.89.0.0/24"
        );
        for bad in [
            &br#"{"default-address-pools":[]}"#[..],
            br#"{"default-address-pools":[{"base":"10.0.0.0/16","size":8}]}"#,
            br#"{"default-address-pools":[{"base":"10.0.0.1/16","size":24}]}"#,
            b"{",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), default_pools());
    }
}

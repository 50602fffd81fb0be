//! The options of `berth run` / `berth create`, as plain data (the CLI fills
//! them in; the record keeps them as the container's HostConfig).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RunOptions {
    pub name: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
    pub rm: bool,
    pub env: Vec<String>,
    pub env_files: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub group_add: Vec<String>,
    pub entrypoint: Option<String>,
    /// Arguments after the image name.
    pub cmd: Vec<String>,
    pub hostname: Option<String>,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub devices: Vec<String>,
    pub sysctls: Vec<String>,
    pub shm_size: Option<String>,
    pub init: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    /// `--network`: "bridge" (empty means it too), "none", "host", "container:NAME" or a
    /// user-defined network's name.
    pub network: String,
    pub labels: Vec<String>,
    pub add_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--ip`, `--mac-address`, `--network-alias`.
    pub ip: Option<String>,
    pub mac_address: Option<String>,
    pub network_aliases: Vec<String>,
    /// `-p` specs as written, and `-P`.
    pub publish: Vec<String>,
    pub publish_all: bool,
}

/// `64m`, `1g`, `512k`, `1024b`, plain bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|x| !x.is_empty()).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 64m or 1g"))?;
    if v < 0.0 {
        return Err(format!("{s:?} is negative"));
    }
    Ok((v * mult as f64) as u64)
}

/// Signal by name (`TERM`, `SIGTERM`) or number: the runtime's parser, so both
/// command lines accept the same names.
pub fn parse_signal(s: &str) -> Option<i32> {
    berth_runtime::container::parse_signal(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn bytes_and_signals() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert_eq!(parse_bytes("10mb").unwrap(), 10 << 20);
        assert!(parse_bytes("x").is_err());
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("sigkill"), Some(9));
        assert_eq!(parse_signal("2"), Some(2));
        assert_eq!(parse_signal("NOPE"), None);
    }
}

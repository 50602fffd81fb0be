//! A container's networking, per `--network` ([`NetworkMode`]):
//! - `bridge` (the default) and user-defined networks: a network namespace of the container's
//!   own, bind-mounted at [`netns_path`], connected through `berth_net::connect` (veth, address,
//!   routes, published ports, DNS name) before the container starts; the runtime spec joins it
//!   by path. The attachments live in the container's record until `rm`.
//! - `none`: the same namespace with only `lo` (up).
//! - `host`: no network namespace; the host's `/etc/hosts` and `/etc/resolv.conf`.
//! - `container:NAME`: that container's namespace and files.
//!
//! Teardown: [`release`] when the container stops (so also on `rm`), as Docker does;
//! [`reconcile`] at the start of commands that list containers or networks reclaims what
//! containers whose records are gone still held.

use crate::options::RunOptions;
use crate::record::{pid_alive, Container, Records};
use berth_net::{Attachment, ConnectOptions, NetError, NetStore, NetworkMode};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Net(Box<NetError>),
    #[error(transparent)]
    Publish(#[from] berth_net::PublishError),
    #[error(transparent)]
    Netns(#[from] berth_net::NetnsError),
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("cannot join the network of container {0}: it is not running (start it first)")]
    PeerNotRunning(String),
    #[error("cannot connect container {container} to network {network}: {source}")]
    Connect {
        container: String,
        network: String,
        source: Box<NetError>,
    },
}

impl From<NetError> for NetworkError {
    fn from(e: NetError) -> NetworkError {
        NetworkError::Net(Box::new(e))
    }
}

/// Where container namespaces are bind-mounted: `/run/berth/netns` for the default root,
/// `<root>/netns` for any other (so several roots never share the directory).
pub fn netns_dir(root: &Path) -> PathBuf {
    if root == Path::new("/var/lib/berth") {
        PathBuf::from("/run/berth/netns")
    } else {
        root.join("netns")
    }
}

pub fn netns_path(root: &Path, id: &str) -> PathBuf {
    netns_dir(root).join(id)
}

/// A live namespace mount, not a leftover empty file.
fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

pub fn mode(opts: &RunOptions) -> Result<NetworkMode, NetworkError> {
    Ok(NetworkMode::parse(&opts.network)?)
}

/// The networks directory under `root`, its DNS responders started as this executable's
/// hidden `__dns` command.
pub fn store(root: &Path) -> Result<NetStore, NetworkError> {
    Ok(NetStore::open(root)?)
}

/// Checks the network flags at create time, as Docker does: the network exists, `--ip` parses,
/// each `-p` parses, and no flag conflicts with the mode.
pub fn validate(root: &Path, records: &Records, opts: &RunOptions) -> Result<(), NetworkError> {
    let m = mode(opts)?;
    let bad = |what: &'static str, value: &str, why: &str| NetworkError::Invalid {
        what,
        value: value.to_string(),
        why: why.to_string(),
    };
    for p in &opts.publish {
        berth_net::parse_publish(p)?;
    }
    if let Some(ip) = &opts.ip {
        ip.parse::<IpAddr>()
            .map_err(|_| bad("--ip", ip, "not an IP address"))?;
    }
    match &m {
        NetworkMode::Bridge(n) => {
            if n != berth_net::DEFAULT_NETWORK {
                store(root)?.inspect(n)?;
            } else if !opts.network_aliases.is_empty() {
                return Err(bad(
                    "--network-alias",
                    &opts.network_aliases.join(","),
                    "network-scoped aliases are supported only on user-defined networks",
                ));
            }
        }
        NetworkMode::Container(other) => {
            records
                .find(other)
                .map_err(|_| bad("--network", &opts.network, "no such container"))?;
            if !opts.publish.is_empty() || opts.publish_all {
                return Err(bad(
                    "--publish",
                    &opts.publish.join(","),
                    "conflicting options: port publishing and the container type network mode",
                ));
            }
        }
        NetworkMode::None | NetworkMode::Host => {
            if opts.ip.is_some() || opts.mac_address.is_some() {
                return Err(bad(
                    "--network",
                    &opts.network,
                    "--ip and --mac-address need a bridge network",
                ));
            }
        }
    }
    Ok(())
}

/// The image's `ExposedPorts` keys (`80/tcp`).
fn exposed_ports(c: &Container) -> Vec<String> {
    c.image_config
        .pointer("/config/ExposedPorts")
        .and_then(|v| v.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Makes sure the container's network namespace exists and is connected; returns the path the
/// runtime spec joins (None: the host's namespace). Called before the container starts.
pub fn attach(
    root: &Path,
    records: &Records,
    c: &mut Container,
) -> Result<Option<PathBuf>, NetworkError> {
    let m = mode(&c.options)?;
    let net = match m {
        NetworkMode::Host => return Ok(None),
        NetworkMode::Container(other) => {
            let id = records
                .find(&other)
                .map_err(|_| NetworkError::PeerNotRunning(other.clone()))?;
            let peer = records
                .load(&id)
                .map_err(|_| NetworkError::PeerNotRunning(other.clone()))?;
            let own = netns_path(root, &peer.id);
            if is_netns(&own) {
                return Ok(Some(own));
            }
            if peer.state.status != "running" || !pid_alive(peer.state.pid) {
                return Err(NetworkError::PeerNotRunning(other));
            }
            return Ok(Some(PathBuf::from(format!(
                "/proc/{}/ns/net",
                peer.state.pid
            ))));
        }
        NetworkMode::None => None,
        NetworkMode::Bridge(n) => Some(n),
    };
    let path = netns_path(root, &c.id);
    let fresh = !is_netns(&path);
    if fresh {
        berth_net::create_netns(&path)?;
        tracing::debug!("network namespace created at {}", path.display());
    }
    let Some(network) = net else {
        return Ok(Some(path));
    };
    if !fresh && !c.networks.is_empty() {
        // Its processes stopped (the monitor killed with them) before a teardown: the namespace
        // kept its interfaces and the lease its address.
        return Ok(Some(path));
    }
    let result = connect_new(root, records, c, &network, &path);
    if let Err(e) = result {
        let _ = berth_net::release(&store(root)?, &c.id);
        let _ = berth_net::remove_netns(&path);
        c.networks.clear();
        return Err(e);
    }
    Ok(Some(path))
}

fn connect_new(
    root: &Path,
    records: &Records,
    c: &mut Container,
    network: &str,
    path: &Path,
) -> Result<(), NetworkError> {
    let st = store(root)?;
    let o = &c.options;
    // Ports and fixed addresses that containers killed with -9 held are free again (for other
    // addresses, allocation moves on past stale leases; a full subnet reclaims below).
    if !o.publish.is_empty() || o.publish_all || o.ip.is_some() {
        if let Err(e) = reclaim(&st, records) {
            tracing::warn!("reclaiming stale network leases: {e}");
        }
    }
    c.networks.clear();
    let o = &c.options;
    let mut ports = Vec::new();
    for p in &o.publish {
        ports.extend(berth_net::parse_publish(p)?);
    }
    if o.publish_all {
        for p in berth_net::publish_all(&exposed_ports(c))? {
            if !ports
                .iter()
                .any(|q| q.container_port == p.container_port && q.protocol == p.protocol)
            {
                ports.push(p);
            }
        }
    }
    let opts = ConnectOptions {
        ip: o.ip.as_deref().and_then(|s| s.parse().ok()),
        mac: o.mac_address.clone(),
        aliases: o.network_aliases.clone(),
        ports,
    };
    let connect = || berth_net::connect(&st, network, &c.id, &c.name, path, &opts);
    let a = match connect() {
        // A berth killed after connecting but before saving the record.
        Err(NetError::AlreadyConnected { .. }) => {
            berth_net::disconnect(&st, network, &c.id)?;
            connect()
        }
        // Addresses held by containers killed with -9 filled the subnet.
        Err(NetError::Exhausted { .. }) if reclaim(&st, records).unwrap_or(0) > 0 => connect(),
        r => r,
    }
    .map_err(|source| NetworkError::Connect {
        container: c.name.clone(),
        network: network.to_string(),
        source: Box::new(source),
    })?;
    tracing::debug!(network, ip = %a.ip, "connected");
    c.networks.push(a);
    Ok(())
}

/// Releases everything a stopped container held (addresses, ports, DNS names) and its
/// namespace, whose removal takes its veths with it. Nothing to do without a namespace.
pub fn release(root: &Path, id: &str) -> Result<(), NetworkError> {
    let p = netns_path(root, id);
    if !p.exists() {
        return Ok(());
    }
    if root.join("networks").exists() {
        berth_net::release(&store(root)?, id)?;
    }
    berth_net::remove_netns(&p)?;
    Ok(())
}

fn running(c: &Container) -> bool {
    matches!(c.state.status.as_str(), "running" | "paused")
}

fn reclaim(st: &NetStore, records: &Records) -> Result<usize, NetError> {
    berth_net::gc_where(st, |id| {
        id.is_empty() || id.contains('/') || !records.container_dir(id).exists()
    })
}

/// Reclaims the leases, veths, rules, DNS names and namespaces of containers whose records are
/// gone (berth killed with -9 during `rm`, or before a `--rm` container's cleanup).
pub fn reconcile(root: &Path, records: &Records) -> Result<usize, NetworkError> {
    let mut n = 0;
    if root.join("networks").exists() {
        n += reclaim(&store(root)?, records)?;
    }
    if let Ok(rd) = std::fs::read_dir(netns_dir(root)) {
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !records.container_dir(&id).exists() {
                berth_net::remove_netns(&e.path())?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// `--add-host name:ip` (or `name=ip`); `host-gateway` is the container's gateway.
fn extra_hosts(add_hosts: &[String], networks: &[Attachment]) -> Vec<(String, IpAddr)> {
    add_hosts
        .iter()
        .filter_map(|h| {
            let (name, ip) = h.split_once('=').or_else(|| h.split_once(':'))?;
            let ip = if ip == "host-gateway" {
                IpAddr::V4(networks.first()?.gateway)
            } else {
                ip.trim_matches(|c| c == '[' || c == ']').parse().ok()?
            };
            Some((name.to_string(), ip))
        })
        .collect()
}

/// `/etc/hosts` and `/etc/resolv.conf` for the container.
pub fn etc_files(
    records: &Records,
    c: &Container,
    hostname: &str,
) -> Result<(String, String), NetworkError> {
    let o = &c.options;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns: Vec<IpAddr> = o.dns.iter().filter_map(|d| d.parse().ok()).collect();
    Ok(match mode(o)? {
        NetworkMode::Host => {
            let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            if !hosts.is_empty() && !hosts.ends_with('\n') {
                hosts.push('\n');
            }
            for (n, ip) in extra_hosts(&o.add_hosts, &[]) {
                hosts.push_str(&format!("{ip}\t{n}\n"));
            }
            let resolv = if o.dns.is_empty() && o.dns_search.is_empty() && o.dns_options.is_empty()
            {
                host_resolv
            } else {
                berth_net::resolv_conf_for(&[], &host_resolv, &dns, &o.dns_search, &o.dns_options)
            };
            (hosts, resolv)
        }
        NetworkMode::Container(other) => {
            let dir = records
                .find(&other)
                .map(|id| records.container_dir(&id))
                .map_err(|_| NetworkError::PeerNotRunning(other.clone()))?;
            (
                std::fs::read_to_string(dir.join("hosts")).unwrap_or_default(),
                std::fs::read_to_string(dir.join("resolv.conf")).unwrap_or_default(),
            )
        }
        NetworkMode::None | NetworkMode::Bridge(_) => {
            let extra = extra_hosts(&o.add_hosts, &c.networks);
            let mut hosts = berth_net::hosts_file(hostname, &c.networks, &extra);
            if c.networks.is_empty() {
                hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
            }
            let resolv = berth_net::resolv_conf_for(
                &c.networks,
                &host_resolv,
                &dns,
                &o.dns_search,
                &o.dns_options,
            );
            (hosts, resolv)
        }
    })
}

/// Docker's `NetworkSettings` for `inspect`.
pub fn settings(root: &Path, c: &Container) -> serde_json::Value {
    use serde_json::json;
    let mut networks = serde_json::Map::new();
    // A stopped container holds no address; its networks are listed empty, as Docker does.
    let live: &[Attachment] = if running(c) { &c.networks } else { &[] };
    for a in &c.networks {
        if !running(c) {
            networks.insert(a.network.clone(), json!({"NetworkID": a.network_id}));
            continue;
        }
        networks.insert(
            a.network.clone(),
            json!({
                "NetworkID": a.network_id,
                "IPAddress": a.ip.to_string(),
                "IPPrefixLen": a.prefix,
                "Gateway": a.gateway.to_string(),
                "MacAddress": a.mac,
                "Aliases": a.aliases,
                "GlobalIPv6Address": a.ip6.map(|i| i.to_string()).unwrap_or_default(),
                "GlobalIPv6PrefixLen": a.prefix6.unwrap_or(0),
                "IPv6Gateway": a.gateway6.map(|i| i.to_string()).unwrap_or_default(),
            }),
        );
    }
    if c.networks.is_empty() {
        let name = match mode(&c.options) {
            Ok(NetworkMode::Bridge(n)) => n,
            Ok(NetworkMode::Host) => "host".into(),
            Ok(NetworkMode::None) => "none".into(),
            _ => c.options.network.clone(),
        };
        networks.insert(name, json!({}));
    }
    let mut ports = serde_json::Map::new();
    for a in live {
        for p in &a.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let host_ip = p
                .host_ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "0.0.0.0".into());
            let entry = json!({"HostIp": host_ip, "HostPort": p.host_port.to_string()});
            match ports.get_mut(&key).and_then(|v| v.as_array_mut()) {
                Some(v) => v.push(entry),
                None => {
                    ports.insert(key, json!([entry]));
                }
            }
        }
    }
    let first = live.first();
    let sandbox = netns_path(root, &c.id);
    json!({
        "SandboxKey": if sandbox.exists() { sandbox.to_string_lossy().into_owned() } else { String::new() },
        "Ports": ports,
        "IPAddress": first.map(|a| a.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map(|a| a.prefix).unwrap_or(0),
        "Gateway": first.map(|a| a.gateway.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|a| a.mac.clone()).unwrap_or_default(),
        "Networks": networks,
    })
}

/// `berth network connect`: joins a container (running, or stopped with its namespace kept)
/// on a bridge network to one more network.
pub fn connect_container(
    root: &Path,
    records: &Records,
    key: &str,
    network: &str,
    ip: Option<IpAddr>,
    aliases: &[String],
) -> Result<Attachment, crate::EngineError> {
    let id = records.find(key)?;
    let _l = records.lock(&id)?;
    let mut c = records.load(&id)?;
    if !matches!(mode(&c.options)?, NetworkMode::Bridge(_)) {
        return Err(NetworkError::Invalid {
            what: "container",
            value: c.name,
            why: format!(
                "its network mode is {}; only containers on bridge networks can join more",
                c.options.network
            ),
        }
        .into());
    }
    let path = netns_path(root, &c.id);
    if !is_netns(&path) {
        return Err(NetworkError::Invalid {
            what: "container",
            value: c.name,
            why: "it has no network namespace yet; start it first".into(),
        }
        .into());
    }
    let opts = ConnectOptions {
        ip,
        aliases: aliases.to_vec(),
        ..Default::default()
    };
    let a = berth_net::connect(&store(root)?, network, &c.id, &c.name, &path, &opts).map_err(
        |source| NetworkError::Connect {
            container: c.name.clone(),
            network: network.to_string(),
            source: Box::new(source),
        },
    )?;
    c.networks.push(a.clone());
    records.save(&c)?;
    Ok(a)
}

/// `berth network disconnect`.
pub fn disconnect_container(
    root: &Path,
    records: &Records,
    key: &str,
    network: &str,
) -> Result<(), crate::EngineError> {
    let id = records.find(key)?;
    let _l = records.lock(&id)?;
    let mut c = records.load(&id)?;
    let st = store(root)?;
    let net = st.inspect(network).map_err(NetworkError::from)?;
    if !c.networks.iter().any(|a| a.network == net.name) {
        return Err(NetworkError::Invalid {
            what: "container",
            value: c.name,
            why: format!("it is not connected to network {}", net.name),
        }
        .into());
    }
    berth_net::disconnect(&st, &net.name, &c.id).map_err(NetworkError::from)?;
    c.networks.retain(|a| a.network != net.name);
    records.save(&c)?;
    Ok(())
}

/// The published ports of a running container.
pub fn ports(c: &Container) -> Vec<berth_net::PortMapping> {
    if !running(c) {
        return Vec::new();
    }
    c.networks.iter().flat_map(|a| a.ports.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_forms() {
        let v = extra_hosts(
            &[
                "db:192.0.2.1".into(),
                "v6=2001:db8::1".into(),
                "x:[2001:db8::2]".into(),
                "gw:host-gateway".into(),
            ],
            &[],
        );
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].1.to_string(), "2001:db8::1");
        assert_eq!(v[2].1.to_string(), "2001:db8::2");
    }

    #[test]
    fn publish_all_takes_the_image_exposed_ports() {
        let c = Container {
            image_config: serde_json::json!({"config": {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}}),
            ..Default::default()
        };
        let mut e = exposed_ports(&c);
        e.sort();
        assert_eq!(e, ["53/udp", "80/tcp"]);
        let p = berth_net::publish_all(&e).unwrap();
        assert!(p.iter().all(|m| m.host_port == 0));
        assert!(exposed_ports(&Container::default()).is_empty());
    }

    #[test]
    fn netns_dirs() {
        assert_eq!(
            netns_dir(Path::new("/var/lib/berth")),
            Path::new("/run/berth/netns")
        );
        assert_eq!(netns_dir(Path::new("/tmp/r")), Path::new("/tmp/r/netns"));
    }
}

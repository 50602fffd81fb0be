//! A container's networking, per `--network` ([`NetworkMode`]):
//! - `bridge` (the default) and user-defined networks: a network namespace of the container's
//!   own, bind-mounted at [`netns_path`], connected through `berth_net::connect` (veth, address,
//!   routes, published ports, DNS name) before the container starts; the runtime spec joins it
//!   by path. The attachments live in the container's record until `rm`.
//! - `none`: a new namespace with only `lo` (up), created by the runtime with the container
//!   (nothing to bind-mount or tear down: Docker refuses to connect such a container).
//! - `host`: no network namespace; the host's `/etc/hosts` and `/etc/resolv.conf`.
//! - `container:NAME`: that container's namespace and files.
//!
//! Teardown: [`release`] when the container stops (so also on `rm`), as Docker does;
//! [`reconcile`] at the start of commands that list containers or networks reclaims what
//! containers whose records are gone still held.

use crate::options::RunOptions;
use crate::record::{Container, Records, Status};
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
    if root == Path::new(crate::record::DEFAULT_ROOT) {
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

/// Checks the network flags at create time, as Docker does: the network exists and no flag
/// conflicts with the mode (`-p`, `--ip` and `--dns` are parsed where they enter, see
/// [`crate::options`]).
pub fn validate(root: &Path, records: &Records, opts: &RunOptions) -> Result<(), NetworkError> {
    let m = mode(opts)?;
    let bad = |what: &'static str, value: &str, why: &str| NetworkError::Invalid {
        what,
        value: value.to_string(),
        why: why.to_string(),
    };
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
            // The container shares the other's network and its hostname, /etc/hosts and
            // /etc/resolv.conf, so these are refused, as Docker refuses them.
            let conflicts: [(&'static str, bool, &str); 5] = [
                (
                    "--publish",
                    !opts.publish.is_empty() || opts.publish_all,
                    "port publishing",
                ),
                ("--hostname", opts.hostname.is_some(), "hostname"),
                ("--mac-address", opts.mac_address.is_some(), "mac-address"),
                (
                    "--dns",
                    !opts.dns.is_empty()
                        || !opts.dns_search.is_empty()
                        || !opts.dns_options.is_empty(),
                    "dns",
                ),
                (
                    "--add-host",
                    !opts.add_hosts.is_empty(),
                    "custom host-to-IP mapping",
                ),
            ];
            if let Some((flag, _, what)) = conflicts.iter().find(|c| c.1) {
                return Err(bad(
                    flag,
                    &opts.network,
                    &format!("conflicting options: {what} and the container type network mode"),
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
    match mode(&c.options)? {
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
            if peer.state.status != Status::Running || !peer.state.process_alive() {
                return Err(NetworkError::PeerNotRunning(other));
            }
            return Ok(Some(PathBuf::from(format!(
                "/proc/{}/ns/net",
                peer.state.pid
            ))));
        }
        // The runtime creates the namespace (and brings lo up) as it clones the init.
        NetworkMode::None => return Ok(None),
        NetworkMode::Bridge(_) => {}
    }
    let path = netns_path(root, &c.id);
    let fresh = !is_netns(&path);
    if fresh {
        berth_net::create_netns(&path)?;
        tracing::debug!("network namespace created at {}", path.display());
    }
    if !fresh && !c.networks.is_empty() {
        // Its processes stopped (the monitor killed with them) before a teardown: the namespace
        // kept its interfaces and the lease its address.
        return Ok(Some(path));
    }
    let result = connect_all(root, records, c, &path);
    if let Err(e) = result {
        let _ = berth_net::release(&store(root)?, &c.id);
        let _ = berth_net::remove_netns(&path);
        c.networks.clear();
        return Err(e);
    }
    Ok(Some(path))
}

/// A network a container is to be on while it runs, as `<container dir>/endpoints.json` keeps
/// them once `berth network connect` or `disconnect` changed the list (before that, the
/// network of `--network` alone, with `--ip` and `--network-alias`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub network: String,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The endpoint of `--network`: it gets `--ip`, `--mac-address`, `--network-alias` and the
    /// published ports.
    #[serde(default)]
    pub primary: bool,
}

fn endpoints_path(dir: &Path) -> PathBuf {
    dir.join("endpoints.json")
}

/// The networks the container joins when it starts.
pub fn endpoints(dir: &Path, c: &Container) -> Result<Vec<Endpoint>, NetworkError> {
    let p = endpoints_path(dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| NetworkError::Invalid {
            what: "endpoint record",
            value: p.display().to_string(),
            why: e.to_string(),
        }),
        Err(_) => Ok(match mode(&c.options)? {
            NetworkMode::Bridge(n) => vec![Endpoint {
                network: n,
                ip: None,
                aliases: Vec::new(),
                primary: true,
            }],
            _ => Vec::new(),
        }),
    }
}

fn save_endpoints(dir: &Path, eps: &[Endpoint]) -> Result<(), NetworkError> {
    let p = endpoints_path(dir);
    let tmp = dir.join(format!(".endpoints.json.{}", std::process::id()));
    let data = serde_json::to_vec_pretty(eps).expect("endpoints serialise");
    std::fs::write(&tmp, data)
        .and_then(|_| std::fs::rename(&tmp, &p))
        .map_err(|e| NetworkError::Invalid {
            what: "endpoint record",
            value: p.display().to_string(),
            why: e.to_string(),
        })
}

/// Connects the container to each of its endpoints, in order (eth0, eth1, ...).
fn connect_all(
    root: &Path,
    records: &Records,
    c: &mut Container,
    path: &Path,
) -> Result<(), NetworkError> {
    c.networks.clear();
    let eps = endpoints(&records.container_dir(&c.id), c)?;
    for ep in &eps {
        connect_new(root, records, c, ep, path)?;
    }
    Ok(())
}

fn connect_new(
    root: &Path,
    records: &Records,
    c: &mut Container,
    ep: &Endpoint,
    path: &Path,
) -> Result<(), NetworkError> {
    let st = store(root)?;
    let network = ep.network.as_str();
    let o = &c.options;
    // Ports and fixed addresses that containers killed with -9 held are free again (for other
    // addresses, allocation moves on past stale leases; a full subnet reclaims below).
    if (ep.primary && (!o.publish.is_empty() || o.publish_all || o.ip.is_some())) || ep.ip.is_some()
    {
        if let Err(e) = reclaim(&st, records) {
            tracing::warn!("reclaiming stale network leases: {e}");
        }
    }
    let opts = if ep.primary {
        let o = &c.options;
        let mut ports = Vec::new();
        for p in &o.publish {
            ports.extend(p.0.iter().cloned());
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
        ConnectOptions {
            ip: o.ip.as_ref().map(|ip| ip.0),
            mac: o.mac_address.clone(),
            aliases: o.network_aliases.clone(),
            ports,
        }
    } else {
        ConnectOptions {
            ip: ep.ip,
            aliases: ep.aliases.clone(),
            ..Default::default()
        }
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
    c.state.status.is_active()
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
    let dns: Vec<IpAddr> = o.dns.iter().map(|d| d.0).collect();
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
                .map(|id| records.run_dir(&id))
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
    let dir = root.join("containers").join(&c.id);
    if !running(c) && endpoints_path(&dir).exists() {
        // Networks connected while it was not running (joined when it starts).
        for ep in endpoints(&dir, c).unwrap_or_default() {
            if networks.contains_key(&ep.network) {
                continue;
            }
            let id = store(root)
                .ok()
                .and_then(|st| st.inspect(&ep.network).ok())
                .map(|n| n.id)
                .unwrap_or_default();
            networks.insert(
                ep.network.clone(),
                json!({"NetworkID": id, "Aliases": ep.aliases}),
            );
        }
    }
    if networks.is_empty() {
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

/// `berth network connect`. A running container joins the network at once (its `/etc/hosts`
/// gains the new address with its hostname and aliases); a created or stopped one has the
/// endpoint recorded and joins when it starts, as with Docker. Either way the container is on
/// the network after each later start too.
pub fn connect_container(
    root: &Path,
    records: &Records,
    key: &str,
    network: &str,
    ip: Option<IpAddr>,
    aliases: &[String],
) -> Result<Option<Attachment>, crate::EngineError> {
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
    let st = store(root)?;
    let net = if network == berth_net::DEFAULT_NETWORK {
        berth_net::DEFAULT_NETWORK.to_string()
    } else {
        st.inspect(network).map_err(NetworkError::from)?.name
    };
    if net == berth_net::DEFAULT_NETWORK && !aliases.is_empty() {
        return Err(NetworkError::Invalid {
            what: "--alias",
            value: aliases.join(","),
            why: "network-scoped aliases are supported only on user-defined networks".into(),
        }
        .into());
    }
    let dir = records.container_dir(&c.id);
    let mut eps = endpoints(&dir, &c)?;
    if eps.iter().any(|e| e.network == net) {
        return Err(NetworkError::Connect {
            container: c.name.clone(),
            network: net.clone(),
            source: Box::new(NetError::AlreadyConnected {
                container: c.name.clone(),
                network: net,
            }),
        }
        .into());
    }
    let path = netns_path(root, &c.id);
    let live = running(&c) && is_netns(&path);
    let mut attached = None;
    if live {
        let opts = ConnectOptions {
            ip,
            aliases: aliases.to_vec(),
            ..Default::default()
        };
        let a = berth_net::connect(&st, &net, &c.id, &c.name, &path, &opts).map_err(|source| {
            NetworkError::Connect {
                container: c.name.clone(),
                network: net.clone(),
                source: Box::new(source),
            }
        })?;
        update_hosts(&records.run_dir(&c.id), Some(&a), None);
        c.networks.push(a.clone());
        attached = Some(a);
    }
    eps.push(Endpoint {
        network: net,
        ip,
        aliases: aliases.to_vec(),
        primary: false,
    });
    save_endpoints(&dir, &eps)?;
    records.save(&c)?;
    Ok(attached)
}

/// `berth network disconnect`: the container leaves the network now if it runs (and its
/// `/etc/hosts` loses that address), and no longer joins it when it starts.
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
    let dir = records.container_dir(&c.id);
    let mut eps = endpoints(&dir, &c)?;
    let was = c.networks.iter().any(|a| a.network == net.name);
    if !was && !eps.iter().any(|e| e.network == net.name) {
        return Err(NetworkError::Invalid {
            what: "container",
            value: c.name,
            why: format!("it is not connected to network {}", net.name),
        }
        .into());
    }
    if running(&c) {
        berth_net::disconnect(&st, &net.name, &c.id).map_err(NetworkError::from)?;
        if let Some(a) = c.networks.iter().find(|a| a.network == net.name) {
            update_hosts(&records.run_dir(&c.id), None, Some(a));
        }
    }
    c.networks.retain(|a| a.network != net.name);
    eps.retain(|e| e.network != net.name);
    save_endpoints(&dir, &eps)?;
    records.save(&c)?;
    Ok(())
}

/// Adds the lines of `add` to, or removes those of `remove` from, a running container's
/// `/etc/hosts` (`<dir>/hosts`, bind-mounted into it: rewritten in place, keeping its inode and
/// any line the container wrote itself), as Docker does on connect and disconnect.
fn update_hosts(dir: &Path, add: Option<&Attachment>, remove: Option<&Attachment>) {
    let p = dir.join("hosts");
    let Ok(old) = std::fs::read_to_string(&p) else {
        return;
    };
    let hostname = std::fs::read_to_string(dir.join("hostname")).unwrap_or_default();
    let mut out = String::new();
    for line in old.lines() {
        let first = line
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<IpAddr>().ok());
        let gone = remove.is_some_and(|a| {
            first == Some(IpAddr::V4(a.ip)) || (a.ip6.is_some() && first == a.ip6.map(IpAddr::V6))
        });
        if !gone {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some(a) = add {
        out.push_str(&berth_net::hosts_lines(hostname.trim(), a));
    }
    if let Err(e) = std::fs::write(&p, out) {
        tracing::warn!("updating {}: {e}", p.display());
    }
}

/// The published ports of a running container (those on all addresses of an IPv6-capable
/// attachment listed for `0.0.0.0` and `[::]`, as `docker port` lists them).
pub fn ports(c: &Container) -> Vec<berth_net::PortMapping> {
    if !running(c) {
        return Vec::new();
    }
    c.networks
        .iter()
        .flat_map(|a| berth_net::listed_ports(&a.ports, a.ip6.is_some()))
        .collect()
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

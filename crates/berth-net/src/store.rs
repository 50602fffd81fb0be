//! Network records, the address allocator, and connecting containers.

use std::ffi::OsString;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_sys::atomic::Durability;
use nix::fcntl::{Flock, FlockArg};

use crate::error::NetError;
use crate::model::{
    Attachment, ConnectOptions, Lease, Network, NetworkOptions, Protocol, Subnet, Subnet6,
    DEFAULT_BRIDGE, DEFAULT_BRIDGE_IFNAME, DEFAULT_NETWORK, DEFAULT_UPLINK_MTU,
};
use crate::nl::{InUse, Netlink};
use crate::{netns, nft};

/// How to start a network's DNS responder: `program args... NETWORKS_DIR NETWORK`, with `env`.
/// The default is this executable with `__dns` (the hidden `berth __dns` command).
#[derive(Debug, Clone)]
pub struct DnsCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

/// The networks under `<berth root>/networks/`.
#[derive(Debug, Clone)]
pub struct NetStore {
    dir: PathBuf,
    dns_command: Option<DnsCommand>,
}

/// `ipam/<name>.json`: the leases, and the address handed out last (allocation continues after
/// it, so a released address is reused only once the subnet wraps around, as Docker does).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Ipam {
    #[serde(default)]
    last: Option<Ipv4Addr>,
    #[serde(default)]
    leases: Vec<Lease>,
}

/// `nft.applied`: what berth last wrote to the kernel's `inet berth` table.
#[derive(serde::Serialize, serde::Deserialize)]
struct Applied {
    structure: String,
    ports: Vec<nft::PortElem>,
}

/// The store's lock, held by every change. Responders stopped under it are waited for only
/// once it is released ([`Drop`]), so that no command waits for a process while holding the
/// lock others need.
pub(crate) struct Locked {
    lock: Option<Flock<File>>,
    exiting: std::cell::RefCell<Vec<Exiting>>,
}

impl Drop for Locked {
    fn drop(&mut self) {
        drop(self.lock.take());
        for e in self.exiting.get_mut().drain(..) {
            e.wait(Duration::from_secs(2));
        }
    }
}

/// A process sent `SIGKILL`: `pid` with the start time it had.
struct Exiting {
    pid: i32,
    start: u64,
}

impl Exiting {
    /// Waits until the process has exited (a zombie counts: it holds no socket any more and is
    /// not ours to reap) or is gone, or `limit` passed.
    fn wait(self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_micros(100);
        while berth_sys::proc::alive(self.pid, Some(self.start)) && Instant::now() < deadline {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetError {
    let path = path.to_path_buf();
    move |source| NetError::Io { what, path, source }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && name.len() <= 64
        && c.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A network id: 64 hex digits from the kernel's random source (an error, never zeros, when
/// it cannot be read).
fn random_id() -> Result<String, NetError> {
    berth_sys::rand::hex_id(32).map_err(NetError::Random)
}

/// A short stable hash for interface names.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Writes `data` to `path` atomically, through a hidden temporary file beside it (so listings
/// of `*.json` never see it). No fsync, as before: the records describe kernel state that does
/// not outlive a reboot either, and connecting a container must stay cheap.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), NetError> {
    berth_sys::atomic::write(path, data, Durability::NoSync).map_err(|e| {
        let what = if e.path == path {
            "cannot rename into place"
        } else {
            "cannot write"
        };
        NetError::Io {
            what,
            path: e.path,
            source: e.source,
        }
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, NetError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| NetError::Corrupt {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("cannot read", path)(e)),
    }
}

pub(crate) fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

fn parse_mac(s: &str) -> Result<[u8; 6], NetError> {
    let bad = |why: &str| NetError::Invalid {
        what: "MAC address",
        value: s.to_string(),
        why: why.to_string(),
    };
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad("expected six hex bytes like 02:42:ac:11:00:02"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad("not hex"))?;
    }
    if m[0] & 1 == 1 {
        return Err(bad(
            "a multicast address cannot be assigned to an interface",
        ));
    }
    Ok(m)
}

fn write_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(io("cannot set", Path::new(path)))
}

impl NetStore {
    /// Opens (creating) `<berth_root>/networks`.
    pub fn open(berth_root: &Path) -> Result<NetStore, NetError> {
        let dir = berth_root.join("networks");
        for d in [dir.clone(), dir.join("ipam"), dir.join("dns")] {
            std::fs::create_dir_all(&d).map_err(io("cannot create", &d))?;
        }
        Ok(NetStore {
            dir,
            dns_command: None,
        })
    }

    /// Sets how DNS responders are started (tests; the default re-executes this binary).
    pub fn with_dns_command(mut self, cmd: DnsCommand) -> NetStore {
        self.dns_command = Some(cmd);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn lock(&self) -> Result<Locked, NetError> {
        let p = self.dir.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io("cannot open", &p))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| io("cannot lock", &p)(e.into()))?;
        Ok(Locked {
            lock: Some(lock),
            exiting: Default::default(),
        })
    }

    fn net_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }
    fn ipam_path(&self, name: &str) -> PathBuf {
        self.dir.join("ipam").join(format!("{name}.json"))
    }
    pub(crate) fn hosts_path(&self, name: &str) -> PathBuf {
        self.dir.join("dns").join(format!("{name}.hosts"))
    }
    fn pid_path(&self, name: &str) -> PathBuf {
        self.dir.join("dns").join(format!("{name}.pid"))
    }

    /// Finds a network by name, full ID or unique ID prefix.
    pub fn inspect(&self, name_or_id: &str) -> Result<Network, NetError> {
        if valid_name(name_or_id) {
            if let Some(n) = read_json::<Network>(&self.net_path(name_or_id))? {
                return Ok(n);
            }
        }
        let matches: Vec<Network> = self
            .list()?
            .into_iter()
            .filter(|n| name_or_id.len() >= 3 && n.id.starts_with(name_or_id))
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().unwrap()),
            _ => Err(NetError::NotFound(name_or_id.to_string())),
        }
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<Network>, NetError> {
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(io("cannot list", &self.dir))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Some(n) = read_json::<Network>(&p)? {
                    out.push(n);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The containers attached to a network.
    pub fn leases(&self, name: &str) -> Result<Vec<Lease>, NetError> {
        Ok(self.ipam(name)?.leases)
    }

    fn ipam(&self, name: &str) -> Result<Ipam, NetError> {
        Ok(read_json(&self.ipam_path(name))?.unwrap_or_default())
    }

    fn save_leases(&self, name: &str, leases: &[Lease]) -> Result<(), NetError> {
        let mut ipam = self.ipam(name)?;
        ipam.leases = leases.to_vec();
        self.save_ipam(name, &ipam)
    }

    fn save_ipam(&self, name: &str, ipam: &Ipam) -> Result<(), NetError> {
        let p = self.ipam_path(name);
        write_atomic(
            &p,
            &serde_json::to_vec_pretty(ipam).expect("leases serialise"),
        )
    }

    /// Creates a user-defined network (its bridge appears on first connect).
    pub fn create(&self, name: &str, opts: &NetworkOptions) -> Result<Network, NetError> {
        if !valid_name(name) {
            return Err(NetError::BadName(name.to_string()));
        }
        if !opts.driver.is_empty() && opts.driver != "bridge" {
            return Err(NetError::Invalid {
                what: "driver",
                value: opts.driver.clone(),
                why: "only the bridge driver is supported".into(),
            });
        }
        if !opts.ipv6 && (opts.subnet6.is_some() || opts.gateway6.is_some()) {
            return Err(NetError::Invalid {
                what: "IPv6 subnet",
                value: opts.subnet6.clone().unwrap_or_default(),
                why: "an IPv6 subnet needs --ipv6".into(),
            });
        }
        if let Some(m) = opts.mtu {
            if !(68..=65535).contains(&m) {
                return Err(NetError::Invalid {
                    what: "MTU",
                    value: m.to_string(),
                    why: "must be between 68 and 65535".into(),
                });
            }
        }
        let _l = self.lock()?;
        if self.net_path(name).exists() || name == DEFAULT_NETWORK {
            return Err(NetError::Exists(name.to_string()));
        }
        let existing = self.list()?;
        // What the namespace holds already: the host's addresses and routes, and the bridges
        // of other berth roots (made at their `network create`).
        let mut nl = Netlink::new()?;
        let in_use = nl.ipv4_in_use()?;
        let subnet = match &opts.subnet {
            Some(s) => {
                let s: Subnet = s.parse()?;
                if let Some(o) = existing.iter().find(|n| n.subnet.overlaps(&s)) {
                    return Err(NetError::Overlap {
                        subnet: s.to_string(),
                        other: o.name.clone(),
                        other_subnet: o.subnet.to_string(),
                    });
                }
                if let Some(u) = in_use.iter().find(|u| u.overlaps(s.addr, s.prefix)) {
                    return Err(NetError::HostOverlap {
                        subnet: s,
                        in_use: u.clone(),
                    });
                }
                s
            }
            // The first subnet of the pools that nothing overlaps: 10.89.0.0/24,
            // 10.89.1.0/24, ... by default, as podman does.
            None => self.free_subnet(name, &existing, &in_use)?,
        };
        let (first, last) = subnet.hosts();
        let gateway = match &opts.gateway {
            Some(g) => {
                let ip: Ipv4Addr = g.parse().map_err(|_| NetError::Invalid {
                    what: "gateway",
                    value: g.clone(),
                    why: "not an IPv4 address".into(),
                })?;
                if !(first..=last).contains(&u32::from(ip)) {
                    return Err(NetError::AddressOutside {
                        ip: ip.into(),
                        network: name.to_string(),
                        subnet: subnet.to_string(),
                    });
                }
                ip
            }
            None => Ipv4Addr::from(first),
        };
        let id = random_id()?;
        let (subnet6, gateway6) = if opts.ipv6 {
            let s6: Subnet6 = match &opts.subnet6 {
                Some(s) => s.parse()?,
                // A unique local /64 from the network ID, as RFC 4193 suggests.
                None => format!("fd{}:{}:{}::/64", &id[0..2], &id[2..6], &id[6..10]).parse()?,
            };
            if s6.prefix > 96 {
                return Err(NetError::Invalid {
                    what: "IPv6 subnet",
                    value: s6.to_string(),
                    why: "the prefix length must be at most 96".into(),
                });
            }
            if let Some(o) = existing.iter().find(|n| {
                n.subnet6
                    .is_some_and(|o| o.contains(s6.addr) || s6.contains(o.addr))
            }) {
                return Err(NetError::Overlap {
                    subnet: s6.to_string(),
                    other: o.name.clone(),
                    other_subnet: o.subnet6.map(|x| x.to_string()).unwrap_or_default(),
                });
            }
            let gw6 = match &opts.gateway6 {
                Some(g) => {
                    let ip: Ipv6Addr = g.parse().map_err(|_| NetError::Invalid {
                        what: "IPv6 gateway",
                        value: g.clone(),
                        why: "not an IPv6 address".into(),
                    })?;
                    if !s6.contains(ip) {
                        return Err(NetError::AddressOutside {
                            ip: ip.into(),
                            network: name.to_string(),
                            subnet: s6.to_string(),
                        });
                    }
                    ip
                }
                None => s6.nth(1),
            };
            (Some(s6), Some(gw6))
        } else {
            (None, None)
        };
        let net = Network {
            name: name.to_string(),
            bridge: format!("br-{}", &id[..12]),
            id,
            driver: "bridge".into(),
            subnet,
            gateway,
            internal: opts.internal,
            ipv6: opts.ipv6,
            subnet6,
            gateway6,
            dns: true,
            created: now(),
            labels: opts.labels.clone(),
            mtu: opts.mtu,
        };
        self.save_net(&net)?;
        // The bridge, with its gateway address and subnet route, is made now, as Docker makes
        // it: from here on the subnet is visibly taken in the namespace, so another berth root
        // choosing a subnet there skips it.
        if let Err(e) = self.ensure_bridge(&mut nl, &net) {
            let _ = std::fs::remove_file(self.net_path(name));
            return Err(e);
        }
        Ok(net)
    }

    /// `<berth root>/daemon.json`, where the address pools are set.
    fn settings_path(&self) -> PathBuf {
        self.dir
            .parent()
            .unwrap_or(&self.dir)
            .join(crate::pools::SETTINGS_FILE)
    }

    /// The first subnet of the address pools that overlaps neither another network of this
    /// root nor anything `in_use` in the namespace.
    fn free_subnet(
        &self,
        network: &str,
        existing: &[Network],
        in_use: &[InUse],
    ) -> Result<Subnet, NetError> {
        let path = self.settings_path();
        let pools = crate::pools::load(path.parent().unwrap_or(&self.dir))?;
        pools
            .iter()
            .flat_map(|p| p.subnets())
            .find(|s| {
                existing.iter().all(|n| !n.subnet.overlaps(s))
                    && in_use.iter().all(|u| !u.overlaps(s.addr, s.prefix))
            })
            .ok_or_else(|| NetError::PoolsExhausted {
                network: network.to_string(),
                pools: pools
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                settings: path,
            })
    }

    fn save_net(&self, net: &Network) -> Result<(), NetError> {
        write_atomic(
            &self.net_path(&net.name),
            &serde_json::to_vec_pretty(net).expect("network serialises"),
        )
    }

    /// The default `bridge` network (berth0, 10.88.0.0/16), recorded on first use.
    ///
    /// A recorded default network whose bridge is missing (after a reboot, or in a new
    /// namespace) and that no container uses has its subnet chosen again when something in
    /// the namespace overlaps it now, and so has one whose bridge name another root's bridge
    /// took (each bridge carries `berth network <id>` as its alias).
    pub fn default_bridge(&self) -> Result<Network, NetError> {
        let path = self.net_path(DEFAULT_NETWORK);
        // Its bridge: Some(true) when it is there and this network's (or unmarked, made by an
        // older berth), Some(false) when a bridge of that name is another root's.
        let own = |nl: &mut Netlink, n: &Network| -> Result<Option<bool>, NetError> {
            Ok(nl
                .link_alias(&n.bridge)?
                .map(|a| a.is_none_or(|a| a == bridge_alias(n))))
        };
        if let Some(n) = read_json::<Network>(&path)? {
            if own(&mut Netlink::new()?, &n)? == Some(true) {
                return Ok(n);
            }
        }
        let _l = self.lock()?;
        if let Some(mut n) = read_json::<Network>(&path)? {
            let mut nl = Netlink::new()?;
            let theirs = own(&mut nl, &n)? == Some(false);
            if !self.leases(DEFAULT_NETWORK)?.is_empty()
                || (!theirs
                    && nl
                        .ipv4_in_use()?
                        .iter()
                        .all(|u| !u.overlaps(n.subnet.addr, n.subnet.prefix)))
            {
                return Ok(n);
            }
            let (subnet, bridge) = self.default_subnet(&n.id)?;
            n.subnet = subnet;
            n.gateway = Ipv4Addr::from(subnet.hosts().0);
            n.bridge = bridge;
            self.save_net(&n)?;
            return Ok(n);
        }
        let id = random_id()?;
        let (subnet, bridge) = self.default_subnet(&id)?;
        let net = Network {
            name: DEFAULT_NETWORK.into(),
            id,
            driver: "bridge".into(),
            bridge,
            subnet,
            gateway: Ipv4Addr::from(subnet.hosts().0),
            internal: false,
            ipv6: false,
            subnet6: None,
            gateway6: None,
            dns: false,
            created: now(),
            labels: Vec::new(),
            mtu: None,
        };
        self.save_net(&net)?;
        Ok(net)
    }

    /// The default network's subnet and bridge: 10.88.0.0/16, unless something in the
    /// namespace (a host route or address, another root's bridge) or another network of this
    /// root overlaps it; then, as dockerd does for docker0, the first free subnet of the
    /// address pools. The bridge is `berth0`, or `br-<id12>` where another root's `berth0` is.
    fn default_subnet(&self, id: &str) -> Result<(Subnet, String), NetError> {
        let want: Subnet = DEFAULT_BRIDGE.parse()?;
        let mut existing = self.list()?;
        existing.retain(|n| n.name != DEFAULT_NETWORK);
        let mut nl = Netlink::new()?;
        let in_use = nl.ipv4_in_use()?;
        let taken = in_use
            .iter()
            .find(|u| u.overlaps(want.addr, want.prefix))
            .map(|u| u.to_string())
            .or_else(|| {
                existing
                    .iter()
                    .find(|n| n.subnet.overlaps(&want))
                    .map(|n| format!("network {} ({})", n.name, n.subnet))
            });
        // `berth0` present here is another root's (this one's default network has no bridge).
        let bridge = if nl.link_index(DEFAULT_BRIDGE_IFNAME)?.is_some() {
            format!("br-{}", &id[..12])
        } else {
            DEFAULT_BRIDGE_IFNAME.into()
        };
        let Some(taken) = taken else {
            return Ok((want, bridge));
        };
        let subnet = self.free_subnet(DEFAULT_NETWORK, &existing, &in_use)?;
        tracing::info!(
            "the default network takes {subnet} on {bridge}: {want} overlaps the {taken}"
        );
        Ok((subnet, bridge))
    }

    /// Removes a network without endpoints: its bridge, rules, DNS responder and records.
    pub fn remove(&self, name_or_id: &str) -> Result<Network, NetError> {
        let lock = self.lock()?;
        let net = self.inspect(name_or_id)?;
        if net.name == DEFAULT_NETWORK {
            return Err(NetError::Predefined(net.name));
        }
        self.remove_locked(&lock, &net)?;
        Ok(net)
    }

    fn remove_locked(&self, lock: &Locked, net: &Network) -> Result<(), NetError> {
        let leases = self.leases(&net.name)?;
        if !leases.is_empty() {
            return Err(NetError::InUse {
                network: net.name.clone(),
                containers: leases
                    .iter()
                    .map(|l| l.container_name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        self.stop_dns(lock, &net.name);
        let mut nl = Netlink::new()?;
        nl.del_link(&net.bridge)?;
        for p in [
            self.net_path(&net.name),
            self.ipam_path(&net.name),
            self.hosts_path(&net.name),
        ] {
            let _ = std::fs::remove_file(p);
        }
        self.sync_rules(true)
    }

    /// Removes a network, the predefined `bridge` included (it is re-created on next use).
    pub fn remove_any(&self, name_or_id: &str) -> Result<Network, NetError> {
        let lock = self.lock()?;
        let net = self.inspect(name_or_id)?;
        self.remove_locked(&lock, &net)?;
        Ok(net)
    }

    /// Removes every user-defined network without endpoints; returns their names.
    pub fn prune(&self) -> Result<Vec<String>, NetError> {
        let lock = self.lock()?;
        let mut out = Vec::new();
        for n in self.list()? {
            if n.name != DEFAULT_NETWORK && self.leases(&n.name)?.is_empty() {
                self.remove_locked(&lock, &n)?;
                out.push(n.name);
            }
        }
        Ok(out)
    }

    /// Brings the nftables table in line with the records (caller holds the lock). The table's
    /// structure is rewritten with `nft` only when networks changed (or `force`); published
    /// ports are added and removed in place over netlink. Every structural transaction makes the
    /// kernel wait for an RCU grace period (10-30 ms); map elements do not.
    fn sync_rules(&self, force: bool) -> Result<(), NetError> {
        let mut all = Vec::new();
        for n in self.list()? {
            let l = self.leases(&n.name)?;
            all.push((n, l));
        }
        let want = Applied {
            structure: nft::render(&all),
            ports: nft::port_elems(&all),
        };
        let path = self.dir.join("nft.applied");
        let had: Option<Applied> = if force {
            None
        } else {
            std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        };
        if let Some(had) = had.filter(|h| h.structure == want.structure) {
            let add: Vec<_> = want
                .ports
                .iter()
                .filter(|e| !had.ports.contains(e))
                .cloned()
                .collect();
            let del: Vec<_> = had
                .ports
                .iter()
                .filter(|e| !want.ports.contains(e))
                .cloned()
                .collect();
            if add.is_empty() && del.is_empty() {
                return Ok(());
            }
            let _ = std::fs::remove_file(&path);
            match nft::update_ports(&add, &del) {
                Ok(()) => return self.save_applied(&path, &want),
                // The table changed behind berth's back: rewrite it whole.
                Err(e) => tracing::debug!("updating published ports in place: {e}"),
            }
        }
        let _ = std::fs::remove_file(&path);
        nft::apply(&nft::script(&want.structure, &want.ports))?;
        self.save_applied(&path, &want)
    }

    fn save_applied(&self, path: &Path, a: &Applied) -> Result<(), NetError> {
        write_atomic(path, &serde_json::to_vec(a).expect("rules serialise"))
    }

    /// The bridge of `net`, created with its gateway address if missing, and the MTU for a new
    /// veth pair on it: `-o mtu=N` always; otherwise the host-local MTU, unless the bridge has
    /// ports already at a different MTU (veths of an older berth, which used 1500, or an MTU the
    /// administrator set), whose MTU it keeps, so that one bridge never mixes MTUs.
    fn ensure_bridge(&self, nl: &mut Netlink, net: &Network) -> Result<(u32, u32), NetError> {
        let want = net.link_mtu();
        if let Some((i, mtu)) = nl.link_mtu(&net.bridge)? {
            // A bridge takes its ports' smallest MTU (1500 once it has none left).
            let port_mtu = if net.mtu.is_none() && mtu != want && nl.has_ports(i)? {
                mtu
            } else {
                want
            };
            return Ok((i, port_mtu));
        }
        // A subnet that overlaps what the namespace holds now (a route or address that
        // appeared since the network was recorded) would shadow it or duplicate it.
        if let Some(u) = nl
            .ipv4_in_use()?
            .into_iter()
            .find(|u| u.overlaps(net.subnet.addr, net.subnet.prefix))
        {
            return Err(if net.name == DEFAULT_NETWORK {
                NetError::DefaultOverlap {
                    subnet: net.subnet,
                    in_use: u,
                    record: self.net_path(&net.name),
                }
            } else {
                NetError::HostOverlap {
                    subnet: net.subnet,
                    in_use: u,
                }
            });
        }
        let idx = match nl.add_bridge(&net.bridge, Some(want)) {
            Ok(i) => i,
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                nl.link_index(&net.bridge)?.unwrap_or_default()
            }
            Err(e) => return Err(e.into()),
        };
        // Marked as this network's, so that another root finding it knows it is not its own.
        nl.set_alias(idx, &bridge_alias(net))?;
        nl.add_addr(idx, net.gateway, net.subnet.prefix)?;
        if let (Some(s6), Some(gw6)) = (net.subnet6, net.gateway6) {
            nl.add_addr6(idx, gw6, s6.prefix)?;
            if !net.internal {
                write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
            }
        }
        // A missing bridge means the host lost berth's state (a reboot): rules too.
        let _ = std::fs::remove_file(self.dir.join("nft.applied"));
        // DNAT of 127.0.0.1 to a container needs loopback sources routable out of the bridge.
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge),
            "1",
        )?;
        if !net.internal {
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        }
        Ok((idx, want))
    }

    fn write_hosts(&self, net: &Network, leases: &[Lease]) -> Result<(), NetError> {
        if !net.dns {
            return Ok(());
        }
        let mut s = String::new();
        for l in leases {
            s.push_str(&format!("{} {}", l.ip, l.container_name));
            if l.container_id.len() >= 12 {
                s.push_str(&format!(" {}", &l.container_id[..12]));
            }
            for a in &l.aliases {
                s.push_str(&format!(" {a}"));
            }
            s.push('\n');
            if let Some(ip6) = l.ip6 {
                let line = s.lines().last().unwrap_or_default().to_string();
                let names = line.split_once(' ').map(|x| x.1).unwrap_or_default();
                s.push_str(&format!("{ip6} {names}\n"));
            }
        }
        write_atomic(&self.hosts_path(&net.name), s.as_bytes())
    }

    /// The responder's pid if it runs (pid file matching a live process with the same start time).
    pub fn dns_pid(&self, name: &str) -> Option<i32> {
        self.dns_pid_start(name).map(|(pid, _)| pid)
    }

    /// The responder's pid and start time if it runs.
    fn dns_pid_start(&self, name: &str) -> Option<(i32, u64)> {
        let s = std::fs::read_to_string(self.pid_path(name)).ok()?;
        let mut w = s.split_whitespace();
        let pid: i32 = w.next()?.parse().ok()?;
        let start: u64 = w.next()?.parse().ok()?;
        berth_sys::proc::alive(pid, Some(start)).then_some((pid, start))
    }

    fn ensure_dns(&self, net: &Network) -> Result<(), NetError> {
        if !net.dns || self.dns_pid(&net.name).is_some() {
            return Ok(());
        }
        let cmd = match &self.dns_command {
            Some(c) => c.clone(),
            None => DnsCommand {
                program: std::env::current_exe().map_err(io(
                    "cannot find this executable",
                    Path::new("/proc/self/exe"),
                ))?,
                args: vec!["__dns".into()],
                env: Vec::new(),
            },
        };
        let ready = self.dir.join("dns").join(format!("{}.ready", net.name));
        let _ = std::fs::remove_file(&ready);
        let mut c = std::process::Command::new(&cmd.program);
        c.args(&cmd.args)
            .arg(&self.dir)
            .arg(&net.name)
            .envs(cmd.env.iter().map(|(a, b)| (a, b)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // The responder must not be a child of this command: a short-lived `berth run` would
        // never reap it, and once killed it would stay a zombie as long as that command runs.
        // So the child forks again and exits at once (reaped below), and the grandchild, in a
        // session of its own, is the responder, reparented to init (or the nearest subreaper),
        // which reaps it. The grandchild's pid comes back over a pipe.
        let (pid_r, pid_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| io("cannot start the DNS responder", &cmd.program)(e.into()))?;
        let w = pid_w.as_raw_fd();
        // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
        // calls are allowed: fork(2), write(2), _exit(2) and setsid(2) are, and it allocates
        // nothing. The intermediate child exits without running any destructor.
        unsafe {
            c.pre_exec(move || {
                match libc::fork() {
                    -1 => return Err(std::io::Error::last_os_error()),
                    0 => {}
                    pid => {
                        let b = pid.to_ne_bytes();
                        libc::write(w, b.as_ptr().cast(), b.len());
                        libc::_exit(0);
                    }
                }
                libc::setsid();
                Ok(())
            });
        }
        let spawned = c.spawn();
        drop(pid_w);
        let mut child = spawned.map_err(io("cannot start the DNS responder", &cmd.program))?;
        let _ = child.wait();
        let mut b = [0u8; 4];
        let got = std::io::Read::read_exact(&mut File::from(pid_r), &mut b);
        let pid = match got {
            Ok(()) => i32::from_ne_bytes(b),
            Err(e) => return Err(io("cannot start the DNS responder", &cmd.program)(e)),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ready.exists() {
            if Instant::now() > deadline || !berth_sys::proc::alive(pid, None) {
                return Err(crate::dns::DnsError::NotReady {
                    network: net.name.clone(),
                }
                .into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // No start time (it died meanwhile) leaves a pid file that names no live responder.
        let start = berth_sys::proc::stat(pid)
            .map(|s| s.start_time.to_string())
            .unwrap_or_default();
        write_atomic(
            &self.pid_path(&net.name),
            format!("{pid} {start}\n").as_bytes(),
        )
    }

    /// Stops the network's responder (under the lock `l`, which waits for it to exit once it
    /// is released) and removes its pid file.
    fn stop_dns(&self, l: &Locked, name: &str) {
        if let Some((pid, start)) = self.dns_pid_start(name) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            l.exiting.borrow_mut().push(Exiting { pid, start });
        }
        let _ = std::fs::remove_file(self.pid_path(name));
        let _ = std::fs::remove_file(self.dir.join("dns").join(format!("{name}.ready")));
    }
}

/// The alias berth gives a network's bridge: `berth network <id>`.
fn bridge_alias(net: &Network) -> String {
    format!("berth network {}", net.id)
}

const V6_ANY: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// Whether a port can be published on the IPv6 host address `ip` for a container on `net`:
/// the kernel forwards it with ip6 DNAT, which needs an IPv6 address in the container, and
/// cannot forward IPv6 loopback (Linux has no `route_localnet` for IPv6).
fn check_v6_publish(net: &Network, ip: Ipv6Addr) -> Result<(), NetError> {
    let why = if net.subnet6.is_none() {
        format!(
            "network {} has no IPv6; publish on an IPv6 address from a network made with \
             `berth network create --ipv6 NAME` (and `--network NAME`), or on an IPv4 address",
            net.name
        )
    } else if ip.is_loopback() {
        "the kernel cannot forward IPv6 loopback into a container; publish on [::] or one of \
         the host's IPv6 addresses, or on 127.0.0.1"
            .into()
    } else {
        return Ok(());
    };
    Err(NetError::Invalid {
        what: "publish host address",
        value: ip.to_string(),
        why,
    })
}

fn check_port_free(ip: Option<IpAddr>, port: u16, proto: Protocol) -> Result<u16, NetError> {
    let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = SocketAddr::new(ip, port);
    let res = match proto {
        Protocol::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind(addr).and_then(|l| l.local_addr()),
    };
    res.map(|a| a.port()).map_err(|_| NetError::PortInUse {
        port,
        host_ip: ip.to_string(),
    })
}

/// Connects a container's network namespace (`netns_path`, a bind-mounted nsfs file) to a
/// network: veth pair, address, default route, published ports, DNS name. Called by the engine
/// after creating the namespace and before starting the container.
pub fn connect(
    store: &NetStore,
    network: &str,
    container_id: &str,
    container_name: &str,
    netns_path: &Path,
    opts: &ConnectOptions,
) -> Result<Attachment, NetError> {
    let net = if network == DEFAULT_NETWORK {
        store.default_bridge()?
    } else {
        store.inspect(network)?
    };
    let _l = store.lock()?;
    let mut ipam = store.ipam(&net.name)?;
    let mut leases = std::mem::take(&mut ipam.leases);
    if leases.iter().any(|l| l.container_id == container_id) {
        return Err(NetError::AlreadyConnected {
            container: container_name.to_string(),
            network: net.name.clone(),
        });
    }

    // Published ports: free on the host and not published by another container.
    let mut ports = opts.ports.clone();
    if net.internal && !ports.is_empty() {
        return Err(NetError::Invalid {
            what: "publish",
            value: net.name.clone(),
            why: "ports cannot be published on an internal network".into(),
        });
    }
    let mut taken: Vec<(u16, Protocol)> = Vec::new();
    if !ports.is_empty() {
        for n in store.list()? {
            for l in store.leases(&n.name)? {
                taken.extend(l.ports.iter().map(|p| (p.host_port, p.protocol)));
            }
        }
    }
    for p in &mut ports {
        if let Some(IpAddr::V6(ip)) = p.host_ip {
            check_v6_publish(&net, ip)?;
        }
        // Published on all addresses of a container with IPv6: free on both families.
        let both = p.host_ip.is_none() && net.subnet6.is_some();
        if p.host_port == 0 {
            let mut port = 0;
            for _ in 0..64 {
                let cand = check_port_free(p.host_ip, 0, p.protocol)?;
                if !taken.contains(&(cand, p.protocol))
                    && (!both || check_port_free(Some(V6_ANY), cand, p.protocol).is_ok())
                {
                    port = cand;
                    break;
                }
            }
            p.host_port = port;
        } else if taken.contains(&(p.host_port, p.protocol)) {
            return Err(NetError::PortInUse {
                port: p.host_port,
                host_ip: p
                    .host_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "0.0.0.0".into()),
            });
        } else {
            check_port_free(p.host_ip, p.host_port, p.protocol)?;
            if both {
                check_port_free(Some(V6_ANY), p.host_port, p.protocol)?;
            }
        }
        taken.push((p.host_port, p.protocol));
    }

    // The address.
    let (first, last) = net.subnet.hosts();
    let used =
        |ip: u32| ip == u32::from(net.gateway) || leases.iter().any(|l| u32::from(l.ip) == ip);
    let ip = match opts.ip {
        Some(IpAddr::V4(ip)) => {
            if !(first..=last).contains(&u32::from(ip)) {
                return Err(NetError::AddressOutside {
                    ip: ip.into(),
                    network: net.name.clone(),
                    subnet: net.subnet.to_string(),
                });
            }
            if let Some(l) = leases.iter().find(|l| l.ip == ip) {
                return Err(NetError::AddressInUse {
                    ip,
                    network: net.name.clone(),
                    holder: l.container_name.clone(),
                });
            }
            if ip == net.gateway {
                return Err(NetError::AddressInUse {
                    ip,
                    network: net.name.clone(),
                    holder: "the gateway".into(),
                });
            }
            ip
        }
        Some(ip @ IpAddr::V6(_)) => {
            return Err(NetError::AddressOutside {
                ip,
                network: net.name.clone(),
                subnet: net.subnet.to_string(),
            })
        }
        None => {
            let start = ipam
                .last
                .map(u32::from)
                .filter(|l| (first..last).contains(l))
                .map_or(first, |l| l + 1);
            (start..=last).chain(first..start).find(|i| !used(*i))
        }
        .map(Ipv4Addr::from)
        .ok_or_else(|| NetError::Exhausted {
            network: net.name.clone(),
            subnet: net.subnet.to_string(),
        })?,
    };
    // The IPv6 address has the IPv4 address's offset in its subnet (unique as that is).
    let ip6 = net.subnet6.map(|s6| {
        let off = u128::from(u32::from(ip) - u32::from(net.subnet.addr));
        let a = s6.nth(off);
        if Some(a) == net.gateway6 {
            s6.nth(off | 1 << 32)
        } else {
            a
        }
    });
    let mac = match &opts.mac {
        Some(m) => {
            parse_mac(m)?;
            m.to_lowercase()
        }
        None => mac_for(ip),
    };
    let mac_bytes = parse_mac(&mac)?;
    let host_ifname = format!(
        "vb{:012x}",
        fnv(&format!("{}/{container_id}", net.id)) >> 16
    );

    // Record the lease first: a crash from here on leaves something gc() can reclaim.
    let mut lease = Lease {
        ip,
        ip6,
        container_id: container_id.to_string(),
        container_name: container_name.to_string(),
        aliases: opts.aliases.clone(),
        mac: mac.clone(),
        host_ifname: host_ifname.clone(),
        ifname: String::new(),
        ports: ports.clone(),
    };
    leases.push(lease.clone());
    ipam.last = Some(ip);
    ipam.leases = leases.clone();
    store.save_ipam(&net.name, &ipam)?;

    let res = (|| -> Result<String, NetError> {
        let mut nl = Netlink::new()?;
        let (bridge, mtu) = store.ensure_bridge(&mut nl, &net)?;
        // What leaves the host through the containers' default route keeps the uplink's MTU.
        let route_mtu = net.route_mtu(nl.uplink_mtu()?, mtu);
        let ns = File::open(netns_path).map_err(io("cannot open network namespace", netns_path))?;
        // The container side is called eth0, eth1, ... in order of connection: the kernel
        // refuses a peer name already taken in the container's namespace, so try the next.
        let _ = nl.del_link(&host_ifname);
        let mut ifname = String::new();
        for i in 0..64 {
            let name = format!("eth{i}");
            match nl.add_veth(
                &host_ifname,
                bridge,
                &name,
                ns.as_raw_fd(),
                mac_bytes,
                Some(mtu),
            ) {
                Ok(()) => {
                    ifname = name;
                    break;
                }
                Err(e) if e.errno() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        nl.set_hairpin(&host_ifname)?;
        let (gw, prefix, ifn) = (net.gateway, net.subnet.prefix, ifname.clone());
        let v6 = ip6.zip(net.gateway6).zip(net.subnet6.map(|s| s.prefix));
        netns::in_netns(netns_path, move || -> Result<(), NetError> {
            let mut nl = Netlink::new()?;
            if let Some(lo) = nl.link_index("lo")? {
                nl.set_up(lo)?;
            }
            let idx = nl.link_index(&ifn)?.ok_or_else(|| NetError::Invalid {
                what: "interface",
                value: ifn.clone(),
                why: "vanished from the container's namespace".into(),
            })?;
            nl.add_addr(idx, ip, prefix)?;
            nl.set_up(idx)?;
            if !nl.has_default_route()? {
                nl.add_default_route(idx, gw, route_mtu)?;
            }
            if let Some(((ip6, gw6), p6)) = v6 {
                nl.add_addr6(idx, ip6, p6)?;
                // IPv6 links carry at least 1280 bytes (RFC 8200).
                nl.add_default_route6(idx, gw6, route_mtu.map(|m| m.max(1280)))?;
            }
            Ok(())
        })??;
        Ok(ifname)
    })();
    let ifname = match res {
        Ok(i) => i,
        Err(e) => {
            if let Ok(mut nl) = Netlink::new() {
                let _ = nl.del_link(&host_ifname);
            }
            leases.retain(|l| l.container_id != container_id);
            let _ = store.save_leases(&net.name, &leases);
            return Err(e);
        }
    };
    lease.ifname = ifname.clone();
    if let Some(l) = leases.iter_mut().find(|l| l.container_id == container_id) {
        *l = lease.clone();
    }
    let finish = (|| -> Result<(), NetError> {
        store.save_leases(&net.name, &leases)?;
        store.write_hosts(&net, &leases)?;
        store.sync_rules(false)
    })();
    if let Err(e) = finish {
        drop(_l);
        let _ = disconnect(store, &net.name, container_id);
        return Err(e);
    }
    // Without its responder (port 53 taken on the gateway address by another server, say) the
    // container still runs, resolving through the host's resolvers as on the default bridge.
    let dns_ok = match store.ensure_dns(&net) {
        Ok(()) => net.dns,
        Err(e) => {
            tracing::warn!(
                "network {}: no name resolution between containers: {e}",
                net.name
            );
            false
        }
    };
    Ok(Attachment {
        network: net.name.clone(),
        network_id: net.id.clone(),
        ip,
        prefix: net.subnet.prefix,
        gateway: net.gateway,
        ip6,
        prefix6: net.subnet6.map(|s| s.prefix),
        gateway6: net.gateway6,
        mac,
        ifname,
        host_ifname,
        dns_server: dns_ok.then_some(IpAddr::V4(net.gateway)),
        aliases: opts.aliases.clone(),
        ports,
    })
}

/// The uplink MTU of the calling thread's network namespace: that of the device of its IPv4
/// default route, or [`DEFAULT_UPLINK_MTU`] without one. Containers on networks with the
/// host-local MTU get it as their default route's MTU.
pub fn uplink_mtu() -> Result<u32, NetError> {
    Ok(Netlink::new()?.uplink_mtu()?.unwrap_or(DEFAULT_UPLINK_MTU))
}

fn delete_veths(gone: &[Lease]) -> Result<(), NetError> {
    let mut nl = Netlink::new()?;
    for l in gone {
        // Deleting the host end removes the pair, whether or not the namespace still exists.
        nl.del_link(&l.host_ifname)?;
    }
    Ok(())
}

/// Disconnects a container from a network. Idempotent: removes whatever is left of its veth,
/// lease, published ports and DNS name, even if its namespace is gone.
pub fn disconnect(store: &NetStore, network: &str, container_id: &str) -> Result<(), NetError> {
    let lock = store.lock()?;
    let net = match store.inspect(network) {
        Ok(n) => n,
        Err(NetError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut leases = store.leases(&net.name)?;
    let (gone, keep): (Vec<Lease>, Vec<Lease>) = leases
        .drain(..)
        .partition(|l| l.container_id == container_id);
    delete_veths(&gone)?;
    store.save_leases(&net.name, &keep)?;
    store.write_hosts(&net, &keep)?;
    store.sync_rules(false)?;
    if keep.is_empty() {
        store.stop_dns(&lock, &net.name);
    }
    Ok(())
}

/// Reclaims the leases, veths, rules and DNS names of containers not in `live_container_ids`
/// (containers killed with -9, or whose berth died before disconnecting). Returns how many.
pub fn gc(store: &NetStore, live_container_ids: &[String]) -> Result<usize, NetError> {
    gc_where(store, |id| !live_container_ids.iter().any(|l| l == id))
}

/// [`gc`] for the containers `is_gone` says are gone, asked under the store's lock, so a
/// container connecting concurrently (and thus not yet known to a list made earlier) is safe.
pub fn gc_where(store: &NetStore, is_gone: impl Fn(&str) -> bool) -> Result<usize, NetError> {
    let lock = store.lock()?;
    let mut n = 0;
    for net in store.list()? {
        let leases = store.leases(&net.name)?;
        let (keep, gone): (Vec<Lease>, Vec<Lease>) =
            leases.into_iter().partition(|l| !is_gone(&l.container_id));
        if gone.is_empty() {
            if keep.is_empty() {
                // A responder left running by a berth killed between its steps.
                store.stop_dns(&lock, &net.name);
            }
            continue;
        }
        n += gone.len();
        delete_veths(&gone)?;
        store.save_leases(&net.name, &keep)?;
        store.write_hosts(&net, &keep)?;
        if keep.is_empty() {
            store.stop_dns(&lock, &net.name);
        }
    }
    if n > 0 {
        store.sync_rules(true)?;
    }
    Ok(n)
}

/// Releases everything a container holds on every network (addresses, published ports, DNS
/// names, responders of networks left empty) for a container being removed, and returns the
/// networks it was on. Unlike [`disconnect`] it leaves the veth pairs alone: the caller removes
/// the container's namespace right after (`remove_netns`), and the kernel deletes them with it,
/// in the background, sparing the 20-30 ms a synchronous link deletion costs.
pub fn release(store: &NetStore, container_id: &str) -> Result<Vec<String>, NetError> {
    let lock = store.lock()?;
    let mut nets = Vec::new();
    for net in store.list()? {
        let leases = store.leases(&net.name)?;
        if !leases.iter().any(|l| l.container_id == container_id) {
            continue;
        }
        let keep: Vec<Lease> = leases
            .into_iter()
            .filter(|l| l.container_id != container_id)
            .collect();
        store.save_leases(&net.name, &keep)?;
        store.write_hosts(&net, &keep)?;
        if keep.is_empty() {
            store.stop_dns(&lock, &net.name);
        }
        nets.push(net.name);
    }
    if !nets.is_empty() {
        store.sync_rules(false)?;
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_pid_needs_the_recorded_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = NetStore::open(dir.path()).unwrap();
        let me = std::process::id() as i32;
        let start = berth_sys::proc::stat(me).unwrap().start_time;
        write_atomic(&store.pid_path("n"), format!("{me} {start}\n").as_bytes()).unwrap();
        assert_eq!(store.dns_pid("n"), Some(me));
        // The same pid with another start time is a recycled pid: not the responder.
        write_atomic(
            &store.pid_path("n"),
            format!("{me} {}\n", start + 1).as_bytes(),
        )
        .unwrap();
        assert_eq!(store.dns_pid("n"), None);
        // A pid file written when the responder died before its start time was read.
        write_atomic(&store.pid_path("n"), format!("{me} \n").as_bytes()).unwrap();
        assert_eq!(store.dns_pid("n"), None);
    }

    #[test]
    fn records_are_written_whole_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("front.json");
        write_atomic(&p, b"{}").unwrap();
        write_atomic(&p, b"{\"a\":1}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["front.json"]);
        let err = write_atomic(&dir.path().join("missing/x.json"), b"{}").unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Io {
                    what: "cannot write",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn network_ids_are_random_hex() {
        let (a, b) = (random_id().unwrap(), random_id().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

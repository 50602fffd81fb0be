//! The values berth's networking deals in: subnets, networks and their options, leases,
//! attachments, and published ports. A leaf: it uses no other module of this
//! crate, and every other module uses it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// The network containers join when nothing else is asked for.
pub const DEFAULT_NETWORK: &str = "bridge";
pub const DEFAULT_BRIDGE_IFNAME: &str = "berth0";
pub const DEFAULT_BRIDGE: &str = "10.88.0.0/16";

/// A value that does not parse (a subnet, a `--network` mode).
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} {value:?}: {why}")]
pub struct InvalidValue {
    /// What the value was meant to be ("subnet").
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

/// An IPv4 subnet, written `A.B.C.D/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }
    pub fn overlaps(&self, o: &Subnet) -> bool {
        let m = self.mask() & o.mask();
        u32::from(self.addr) & m == u32::from(o.addr) & m
    }
    /// First and last usable host addresses.
    pub fn hosts(&self) -> (u32, u32) {
        let base = u32::from(self.addr);
        let last = base | !self.mask();
        if self.prefix >= 31 {
            (base, last)
        } else {
            (base + 1, last - 1)
        }
    }
}

impl std::str::FromStr for Subnet {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Subnet, InvalidValue> {
        let bad = |why: &str| InvalidValue {
            what: "subnet",
            value: s.to_string(),
            why: why.to_string(),
        };
        let (a, p) = s.split_once('/').ok_or_else(|| bad("expected A.B.C.D/N"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| {
            if a.contains(':') {
                bad("IPv6 subnets are not supported yet")
            } else {
                bad("not an IPv4 address")
            }
        })?;
        let prefix: u8 = p.parse().map_err(|_| bad("bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix length must be between 8 and 30"));
        }
        let sub = Subnet { addr, prefix };
        if u32::from(addr) & !sub.mask() != 0 {
            let net = Ipv4Addr::from(u32::from(addr) & sub.mask());
            return Err(bad(&format!("host bits set; did you mean {net}/{prefix}?")));
        }
        Ok(sub)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv6 subnet, written `ADDR/N` (N from 48 to 120).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet6 {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    fn mask(&self) -> u128 {
        u128::MAX << (128 - self.prefix)
    }
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & self.mask() == u128::from(self.addr)
    }
    /// The address at `offset` inside the subnet.
    pub fn nth(&self, offset: u128) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) | (offset & !self.mask()))
    }
}

impl std::str::FromStr for Subnet6 {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Subnet6, InvalidValue> {
        let bad = |why: &str| InvalidValue {
            what: "IPv6 subnet",
            value: s.to_string(),
            why: why.to_string(),
        };
        let (a, p) = s.split_once('/').ok_or_else(|| bad("expected ADDR/N"))?;
        let addr: Ipv6Addr = a.parse().map_err(|_| bad("not an IPv6 address"))?;
        let prefix: u8 = p.parse().map_err(|_| bad("bad prefix length"))?;
        if !(48..=120).contains(&prefix) {
            return Err(bad("the prefix length must be between 48 and 120"));
        }
        let sub = Subnet6 { addr, prefix };
        if u128::from(addr) & !sub.mask() != 0 {
            return Err(bad("host bits set"));
        }
        Ok(sub)
    }
}

impl std::fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Subnet6 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet6 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet6, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What `berth network create` accepts.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub ipv6: bool,
    /// With `ipv6`: the IPv6 subnet (default: a /64 from fd00::/8 derived from the network ID)
    /// and its gateway (default: the subnet's first address).
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    /// Only "bridge" (the default when empty).
    pub driver: String,
    pub labels: Vec<(String, String)>,
    /// The MTU of the bridge and veth pairs (`-o mtu=N`), as Docker sets it: that MTU for all
    /// traffic, and no route MTU. Without it the network has a host-local MTU: see
    /// [`HOST_LOCAL_MTU`].
    pub mtu: Option<u32>,
}

/// The MTU of the bridge and veth pairs of a network created without `-o mtu=N`. Traffic that
/// stays on the host (container to container, host to container, published ports reached from
/// the host's 127.0.0.1) goes in large packets, near loopback's throughput; what leaves the host
/// keeps the uplink's MTU, because each container's default route carries it as a route MTU
/// (`ip route ... mtu N`), which TCP's MSS and path MTU follow. 65520 is the largest MTU a veth
/// pair and a bridge both take with room to spare (loopback's is 65536).
pub const HOST_LOCAL_MTU: u32 = 65520;

/// The route MTU when the host has no IPv4 default route to take it from: Ethernet's.
pub const DEFAULT_UPLINK_MTU: u32 = 1500;

/// A network's configuration, as stored in `<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub driver: String,
    /// The Linux bridge: `berth0` for the default network, `br-<id12>` otherwise.
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    pub ipv6: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Subnet6>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Whether containers resolve each other by name (user-defined networks).
    pub dns: bool,
    /// Seconds since the epoch.
    pub created: u64,
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    /// `-o mtu=N` (None: the host-local MTU, [`HOST_LOCAL_MTU`]). Records of older versions
    /// have none and get the host-local MTU the next time their bridge is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl Network {
    /// The MTU berth gives a new bridge and veth pairs: `-o mtu=N`, or [`HOST_LOCAL_MTU`].
    pub fn link_mtu(&self) -> u32 {
        self.mtu.unwrap_or(HOST_LOCAL_MTU)
    }

    /// The route MTU of the containers' default routes, given the host's `uplink` MTU (None: no
    /// default route) and the MTU of the container's interface: the uplink's, on networks with
    /// the host-local MTU where it is smaller than the interface's; None with `-o mtu=N`
    /// (Docker's layout) or where the interface's MTU is no larger anyway.
    pub fn route_mtu(&self, uplink: Option<u32>, link_mtu: u32) -> Option<u32> {
        let uplink = uplink.unwrap_or(DEFAULT_UPLINK_MTU);
        (self.mtu.is_none() && uplink < link_mtu).then_some(uplink)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One `-p` mapping. `host_port` 0 means "pick a free port" until [`connect`] resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    /// The host address as `docker port` shows it: `0.0.0.0` for all IPv4 addresses, IPv6
    /// addresses in brackets (`[::]`, `[2001:db8::1]`).
    pub fn host_addr(&self) -> String {
        match self.host_ip {
            None => "0.0.0.0".into(),
            Some(IpAddr::V4(ip)) => ip.to_string(),
            Some(IpAddr::V6(ip)) => format!("[{ip}]"),
        }
    }
}

impl std::fmt::Display for PortMapping {
    /// `80/tcp -> 0.0.0.0:8080`, as `docker port` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port,
            self.protocol,
            self.host_addr(),
            self.host_port
        )
    }
}

/// The PORTS column of `ps`: `0.0.0.0:8080->80/tcp, 127.0.0.1:49153->53/udp`.
pub fn ports_summary(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_addr(),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The mappings as `docker port` lists them: one published on all addresses of a container
/// with an IPv6 address (`ip6`) is listed for `0.0.0.0` and for `[::]`.
pub fn listed_ports(ports: &[PortMapping], ip6: bool) -> Vec<PortMapping> {
    let mut out = Vec::new();
    for p in ports {
        out.push(p.clone());
        if ip6 && p.host_ip.is_none() {
            out.push(PortMapping {
                host_ip: Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                ..p.clone()
            });
        }
    }
    out
}

/// How a container joins a network.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub ip: Option<IpAddr>,
    pub mac: Option<String>,
    pub aliases: Vec<String>,
    pub ports: Vec<PortMapping>,
}

/// One container's address on one network, as stored in `ipam/<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    pub container_id: String,
    pub container_name: String,
    pub aliases: Vec<String>,
    pub mac: String,
    /// The host end of the veth pair.
    pub host_ifname: String,
    /// The container end.
    pub ifname: String,
    pub ports: Vec<PortMapping>,
}

/// What the engine keeps about a container's attachment (serialisable into its record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub network: String,
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// On `--ipv6` networks.
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub prefix6: Option<u8>,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    pub mac: String,
    pub ifname: String,
    pub host_ifname: String,
    /// The resolver the container should use (user-defined networks: the gateway).
    pub dns_server: Option<IpAddr>,
    pub aliases: Vec<String>,
    /// The port mappings with their host ports resolved.
    pub ports: Vec<PortMapping>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn port_listings() {
        let mut v = crate::publish::parse_publish("8080:80").unwrap();
        v.extend(crate::publish::parse_publish("127.0.0.1:5353:53/udp").unwrap());
        assert_eq!(
            ports_summary(&v),
            "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp"
        );
        assert_eq!(v[1].to_string(), "53/udp -> 127.0.0.1:5353");
    }

    #[test]
    fn host_local_mtu_and_route_mtu() {
        // A record of an older berth: no "mtu" field.
        let old = r#"{"name":"app","id":"00","driver":"bridge","bridge":"br-00",
            "subnet":"10.89.0.0/24","gateway":"10.89.0.1","internal":false,"ipv6":false,
            "dns":true,"created":0}"#;
        let n: Network = serde_json::from_str(old).unwrap();
        assert_eq!((n.mtu, n.link_mtu()), (None, HOST_LOCAL_MTU));
        // The uplink's MTU on the default route, 1500 without one, none where the interface
        // is no larger.
        assert_eq!(n.route_mtu(Some(1400), 65520), Some(1400));
        assert_eq!(n.route_mtu(None, 65520), Some(DEFAULT_UPLINK_MTU));
        assert_eq!(n.route_mtu(Some(9000), 1500), None);
        assert_eq!(n.route_mtu(Some(65520), 65520), None);
        // -o mtu=N: Docker's layout, N everywhere, no route MTU.
        let d = Network {
            mtu: Some(1500),
            ..n
        };
        assert_eq!(d.link_mtu(), 1500);
        assert_eq!(d.route_mtu(Some(1400), 1500), None);
        assert!(serde_json::to_string(&d).unwrap().contains(r#""mtu":1500"#));
    }

    #[test]
    fn subnets() {
        let s: Subnet = "10.88.0.0/16".parse().unwrap();
        assert!(s.contains(Ipv4Addr::new(10, 88, 255, 1)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 0, 1)));
        assert!(s.overlaps(&"10.88.5.0/24".parse().unwrap()));
        assert_eq!(
            s.hosts(),
            (
                u32::from(Ipv4Addr::new(10, 88, 0, 1)),
                u32::from(Ipv4Addr::new(10, 88, 255, 254))
            )
        );
        for bad in [
            "10.88.0.1/16",
            "10.88.0.0",
            "fd00::/64",
            "10.0.0.0/4",
            "x/8",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }
}

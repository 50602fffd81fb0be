//! Synchronous rtnetlink requests (links, addresses, routes) over one socket bound in the calling
//! thread's network namespace. No async runtime: every request waits for the kernel's ACK.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink {what}: {source}")]
    Request {
        what: String,
        source: std::io::Error,
    },
    #[error("netlink {what}: cannot decode the kernel's reply: {detail}")]
    Decode { what: String, detail: String },
}

impl NlError {
    /// The errno of a refused request, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Request { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// A route socket in the calling thread's current network namespace.
    pub fn new() -> Result<Netlink, NlError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NlError::Socket)?;
        sock.bind_auto().map_err(NlError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NlError::Socket)?;
        Ok(Netlink { sock, seq: 1 })
    }

    /// Sends one request and returns the kernel's replies until its ACK (or error).
    fn request(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        self.seq += 1;
        hdr.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(|e| NlError::Request {
            what: what.to_string(),
            source: e,
        })?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(|e| NlError::Request {
                what: what.to_string(),
                source: e,
            })?;
            let mut off = 0;
            while off < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| NlError::Decode {
                        what: what.to_string(),
                        detail: e.to_string(),
                    })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(NlError::Request {
                                what: what.to_string(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    /// The link called `name`, or None.
    fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link_by(&format!("get link {name}"), msg)
    }

    /// The link asked for by `msg` (its name or index), or None.
    fn get_link_by(
        &mut self,
        what: &str,
        msg: LinkMessage,
    ) -> Result<Option<LinkMessage>, NlError> {
        match self.request(what, RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of the link called `name`, or None.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NlError> {
        Ok(self.get_link(name)?.map(|l| l.header.index))
    }

    /// The index and MTU of the link called `name`, or None.
    pub fn link_mtu(&mut self, name: &str) -> Result<Option<(u32, u32)>, NlError> {
        Ok(self
            .get_link(name)?
            .map(|l| (l.header.index, mtu_of(&l.attributes))))
    }

    /// The alias (`ip link set NAME alias TEXT`) of the link called `name`: None without such
    /// a link, Some(None) for a link without one.
    pub fn link_alias(&mut self, name: &str) -> Result<Option<Option<String>>, NlError> {
        Ok(self.get_link(name)?.map(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfAlias(s) => Some(s),
                _ => None,
            })
        }))
    }

    /// Sets the alias of the link with index `index`.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.request(
            &format!("set the alias of link {index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )?;
        Ok(())
    }

    /// Whether any link is a port of the bridge with index `bridge`. The dump asks the kernel
    /// for the bridge's ports alone (`IFLA_MASTER`, as `ip link show master BR`), so it costs
    /// the same however many links the host has; the replies are still checked.
    pub fn has_ports(&mut self, bridge: u32) -> Result<bool, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Controller(bridge));
        let replies = self.request(
            &format!("list the ports of bridge {bridge}"),
            RouteNetlinkMessage::GetLink(msg),
            netlink_packet_core::NLM_F_DUMP,
        )?;
        Ok(replies.iter().any(|r| match r {
            RouteNetlinkMessage::NewLink(l) => l
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == bridge)),
            _ => false,
        }))
    }

    /// The MTU of the way out of this namespace: that of the main table's IPv4 default route
    /// (with the lowest metric; the smallest over a multipath route's devices, and no more than
    /// the route's own `mtu`), or None without a default route (or one whose device cannot be
    /// told, as with nexthop objects).
    pub fn uplink_mtu(&mut self) -> Result<Option<u32>, NlError> {
        let best = self
            .default_routes()?
            .into_iter()
            .filter(|r| r.header.kind == RouteType::Unicast)
            .min_by_key(|r| {
                r.attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Priority(p) => Some(*p),
                        _ => None,
                    })
                    .unwrap_or(0)
            });
        let Some(route) = best else {
            return Ok(None);
        };
        let mut devices = Vec::new();
        let mut route_mtu = None;
        for a in &route.attributes {
            match a {
                RouteAttribute::Oif(i) => devices.push(*i),
                RouteAttribute::MultiPath(hops) => {
                    devices.extend(hops.iter().map(|h| h.interface_index))
                }
                RouteAttribute::Metrics(m) => {
                    route_mtu = m.iter().find_map(|m| match m {
                        RouteMetric::Mtu(v) if *v > 0 => Some(*v),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        let mut mtu = route_mtu;
        for i in devices {
            let mut msg = LinkMessage::default();
            msg.header.index = i;
            if let Some(l) = self.get_link_by(&format!("get link {i}"), msg)? {
                let m = mtu_of(&l.attributes);
                mtu = Some(mtu.map_or(m, |d| d.min(m)));
            }
        }
        Ok(mtu)
    }

    /// Creates a bridge, up.
    pub fn add_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<u32, NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.extend(mtu.map(LinkAttribute::Mtu));
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            &format!("create bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        self.link_index(name)?.ok_or_else(|| NlError::Decode {
            what: format!("create bridge {name}"),
            detail: "the new bridge has no index".into(),
        })
    }

    /// Creates a veth pair: `host` attached to `controller` and up, its peer `peer` created
    /// directly in the namespace `netns_fd` with the MAC address `mac`.
    pub fn add_veth(
        &mut self,
        host: &str,
        controller: u32,
        peer: &str,
        netns_fd: RawFd,
        mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<(), NlError> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.extend(mtu.map(LinkAttribute::Mtu));
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(netns_fd));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(mac.to_vec()));
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.extend(mtu.map(LinkAttribute::Mtu));
        msg.attributes.push(LinkAttribute::Controller(controller));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(
            &format!("create veth pair {host}/{peer}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Deletes the link `name`; Ok(false) if there was none.
    pub fn del_link(&mut self, name: &str) -> Result<bool, NlError> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Turns on hairpin mode of a bridge port, so a container reaches its own published ports.
    pub fn set_hairpin(&mut self, name: &str) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        // Port options change through RTM_NEWLINK on the existing link (as `ip link set` does).
        self.request(
            &format!("set hairpin mode on {name}"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )?;
        Ok(())
    }

    /// Sets the link up.
    pub fn set_up(&mut self, index: u32) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("set link {index} up"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )?;
        Ok(())
    }

    /// Adds `ip/prefix` to the link (Ok if it is there already).
    pub fn add_addr(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), NlError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(ip.into()));
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        if prefix < 31 {
            let bcast = u32::from(ip) | (u32::MAX >> prefix);
            msg.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(bcast)));
        }
        match self.request(
            &format!("add address {ip}/{prefix}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds `ip/prefix` (IPv6) to the link, without duplicate address detection (berth's
    /// allocator guarantees uniqueness, and DAD would leave it unusable for a second or more).
    pub fn add_addr6(&mut self, index: u32, ip: Ipv6Addr, prefix: u8) -> Result<(), NlError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.header.flags = AddressHeaderFlags::Nodad;
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        match self.request(
            &format!("add address {ip}/{prefix}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds an IPv6 default route via `gateway` out of link `index`, with the route MTU `mtu`
    /// if given (Ok if there is one).
    pub fn add_default_route6(
        &mut self,
        index: u32,
        gateway: Ipv6Addr,
        mtu: Option<u32>,
    ) -> Result<(), NlError> {
        let msg = default_route(
            AddressFamily::Inet6,
            RouteAddress::Inet6(gateway),
            index,
            mtu,
        );
        match self.request(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds a default route via `gateway` out of link `index`, with the route MTU `mtu` if
    /// given.
    pub fn add_default_route(
        &mut self,
        index: u32,
        gateway: Ipv4Addr,
        mtu: Option<u32>,
    ) -> Result<(), NlError> {
        let msg = default_route(AddressFamily::Inet, RouteAddress::Inet(gateway), index, mtu);
        self.request(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// The IPv4 prefixes in use in this namespace: every address (with its prefix length) and
    /// every non-default route of the main table, each with the device it is on. A subnet that
    /// overlaps one of them would shadow or duplicate it; this includes the bridges of other
    /// berth roots in the namespace, which hold their gateway addresses and subnet routes.
    pub fn ipv4_in_use(&mut self) -> Result<Vec<InUse>, NlError> {
        let mut names = std::collections::HashMap::new();
        for r in self.request(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            netlink_packet_core::NLM_F_DUMP,
        )? {
            if let RouteNetlinkMessage::NewLink(l) = r {
                if let Some(n) = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                }) {
                    names.insert(l.header.index, n);
                }
            }
        }
        let device = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}"));
        let mut out = Vec::new();
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        for r in self.request(
            "list addresses",
            RouteNetlinkMessage::GetAddress(msg),
            netlink_packet_core::NLM_F_DUMP,
        )? {
            let RouteNetlinkMessage::NewAddress(a) = r else {
                continue;
            };
            let ip = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = ip {
                out.push(InUse {
                    kind: InUseKind::Address,
                    ip,
                    prefix: a.header.prefix_len,
                    device: device(a.header.index),
                });
            }
        }
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        for r in self.request(
            "list routes",
            RouteNetlinkMessage::GetRoute(msg),
            netlink_packet_core::NLM_F_DUMP,
        )? {
            let RouteNetlinkMessage::NewRoute(r) = r else {
                continue;
            };
            let prefix = r.header.destination_prefix_length;
            if prefix == 0 || r.header.table != RouteHeader::RT_TABLE_MAIN {
                continue;
            }
            let mut dst = None;
            let mut oif = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if let Some(ip) = dst {
                out.push(InUse {
                    kind: InUseKind::Route,
                    ip,
                    prefix,
                    device: oif.map(device).unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// Whether the main table has an IPv4 default route.
    pub fn has_default_route(&mut self) -> Result<bool, NlError> {
        Ok(!self.default_routes()?.is_empty())
    }

    /// The main table's IPv4 default routes.
    fn default_routes(&mut self) -> Result<Vec<RouteMessage>, NlError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let replies = self.request(
            "list routes",
            RouteNetlinkMessage::GetRoute(msg),
            netlink_packet_core::NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.destination_prefix_length == 0
                        && r.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    Some(r)
                }
                _ => None,
            })
            .collect())
    }
}

/// What holds an IPv4 prefix in a network namespace ([`Netlink::ipv4_in_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InUseKind {
    /// An address of an interface (`ip addr`).
    Address,
    /// A route of the main table (`ip route`).
    Route,
}

/// An IPv4 prefix in use in a network namespace: `ip/prefix` on `device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub kind: InUseKind,
    /// The address, or the route's destination.
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The interface it is on (empty for a route without one, such as a blackhole).
    pub device: String,
}

impl InUse {
    /// Whether the prefix overlaps `addr/prefix`.
    pub fn overlaps(&self, addr: Ipv4Addr, prefix: u8) -> bool {
        let mask = |p: u8| {
            if p == 0 {
                0
            } else {
                u32::MAX << (32 - p.min(32))
            }
        };
        let m = mask(self.prefix) & mask(prefix);
        u32::from(self.ip) & m == u32::from(addr) & m
    }
}

impl std::fmt::Display for InUse {
    /// `address 10.89.0.1/24 on br0`, `route 10.88.0.0/16 dev eth1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            InUseKind::Address => {
                write!(f, "address {}/{} on {}", self.ip, self.prefix, self.device)
            }
            InUseKind::Route if self.device.is_empty() => {
                write!(f, "route {}/{}", self.ip, self.prefix)
            }
            InUseKind::Route => write!(f, "route {}/{} dev {}", self.ip, self.prefix, self.device),
        }
    }
}

/// The `IFLA_MTU` of a link (0 if the kernel left it out).
fn mtu_of(attrs: &[LinkAttribute]) -> u32 {
    attrs
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(0)
}

/// A main-table default route via `gateway` out of link `index`, with a route MTU
/// (`RTA_METRICS`/`RTAX_MTU`, as `ip route add ... mtu N` sets; not locked, so path-MTU
/// discovery can still lower it per destination) if `mtu` is given.
fn default_route(
    family: AddressFamily,
    gateway: RouteAddress,
    index: u32,
    mtu: Option<u32>,
) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes.push(RouteAttribute::Gateway(gateway));
    msg.attributes.push(RouteAttribute::Oif(index));
    if let Some(m) = mtu {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(m)]));
    }
    msg
}

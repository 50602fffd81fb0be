//! berth's nftables rules: one `inet berth` table made from the network and lease records.
//!
//! The table's structure (chains, per-network NAT and filter rules, and four maps of published
//! ports) changes only when networks come and go; it is swapped in as one atomic transaction
//! with `nft -f -`, so the kernel's rules always match the records and nothing is ever left
//! half-applied. Published ports are elements of those maps: a container's ports are added and
//! removed as one nf_tables netlink batch written here (no `nft` process, whose start alone
//! costs 4-9 ms, and no chain rebuilt, which makes the kernel wait for an RCU grace period).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use crate::model::{Lease, Network, Protocol};

pub const TABLE: &str = "berth";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft (install the nftables package): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused berth's rules: {stderr}")]
    Refused { stderr: String },
    #[error("nftables netlink: {0}")]
    Netlink(std::io::Error),
}

/// One published port: an element of one of the table's maps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortElem {
    /// The host address; None: all of the family's addresses.
    pub host_ip: Option<IpAddr>,
    pub protocol: Protocol,
    pub host_port: u16,
    /// The container's address (its family is the map's) and port.
    pub ip: IpAddr,
    pub port: u16,
}

impl PortElem {
    /// `pub4` (all IPv4 addresses), `pub4a` (one IPv4 address), `pub6`, `pub6a`.
    pub fn map(&self) -> &'static str {
        match (self.ip.is_ipv4(), self.host_ip.is_some()) {
            (true, false) => "pub4",
            (true, true) => "pub4a",
            (false, false) => "pub6",
            (false, true) => "pub6a",
        }
    }

    /// The element in nft's syntax: `[ADDR . ]PROTO . PORT : IP . PORT`.
    pub fn text(&self) -> String {
        let addr = self.host_ip.map(|a| format!("{a} . ")).unwrap_or_default();
        format!(
            "{addr}{} . {} : {} . {}",
            self.protocol, self.host_port, self.ip, self.port
        )
    }

    /// The key and data as the kernel stores them: each field of a concatenation padded to
    /// 4 bytes, ports in network byte order.
    fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(24);
        if let Some(a) = self.host_ip {
            push_ip(&mut k, a);
        }
        let proto = match self.protocol {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        };
        k.extend_from_slice(&[proto, 0, 0, 0]);
        push_port(&mut k, self.host_port);
        k
    }

    fn data(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(20);
        push_ip(&mut d, self.ip);
        push_port(&mut d, self.port);
        d
    }
}

fn push_ip(v: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => v.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => v.extend_from_slice(&a.octets()),
    }
}

fn push_port(v: &mut Vec<u8>, p: u16) {
    v.extend_from_slice(&p.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
}

/// The map elements of every published port of these networks.
pub fn port_elems(nets: &[(Network, Vec<Lease>)]) -> Vec<PortElem> {
    let mut out = Vec::new();
    for (net, leases) in nets {
        if net.internal {
            continue;
        }
        for l in leases {
            for p in &l.ports {
                let e = |host_ip, ip| PortElem {
                    host_ip,
                    protocol: p.protocol,
                    host_port: p.host_port,
                    ip,
                    port: p.container_port,
                };
                // IPv4: a given address, or all of them (no address, or 0.0.0.0).
                match p.host_ip {
                    Some(IpAddr::V4(a)) if !a.is_unspecified() => {
                        out.push(e(Some(a.into()), l.ip.into()))
                    }
                    None | Some(IpAddr::V4(_)) => out.push(e(None, l.ip.into())),
                    Some(IpAddr::V6(_)) => {}
                }
                // IPv6, for a container with an IPv6 address: a given address, or all of them
                // (no address, or ::) but loopback, which the kernel does not route out of `lo`.
                let Some(ip6) = l.ip6 else { continue };
                match p.host_ip {
                    Some(IpAddr::V6(a)) if !a.is_unspecified() => {
                        out.push(e(Some(a.into()), ip6.into()))
                    }
                    None | Some(IpAddr::V6(_)) => out.push(e(None, ip6.into())),
                    Some(IpAddr::V4(_)) => {}
                }
            }
        }
    }
    out
}

const MAPS: [(&str, &str); 4] = [
    (
        "pub4",
        "inet_proto . inet_service : ipv4_addr . inet_service",
    ),
    (
        "pub4a",
        "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
    ),
    (
        "pub6",
        "inet_proto . inet_service : ipv6_addr . inet_service",
    ),
    (
        "pub6a",
        "ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service",
    ),
];

/// The `inet berth` table for these networks, without the published ports (empty: no table
/// at all). [`script`] adds the ports.
pub fn render(nets: &[(Network, Vec<Lease>)]) -> String {
    let mut s = String::new();
    // Make sure the table exists so that the delete below cannot fail, then replace it.
    let _ = writeln!(s, "table inet {TABLE} {{}}\ndelete table inet {TABLE}");
    if nets.is_empty() {
        return s;
    }
    let bridges: Vec<&str> = nets.iter().map(|(n, _)| n.bridge.as_str()).collect();
    let _ = writeln!(s, "table inet {TABLE} {{");

    // Published ports: one lookup per map.
    for (name, ty) in MAPS {
        let _ = writeln!(s, "  map {name} {{\n    type {ty}\n  }}");
    }
    s.push_str(
        "  chain ports {\n    \
         dnat ip to ip daddr . meta l4proto . th dport map @pub4a\n    \
         meta nfproto ipv4 dnat ip to meta l4proto . th dport map @pub4\n    \
         dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6a\n    \
         ip6 daddr != ::1 dnat ip6 to meta l4proto . th dport map @pub6\n  }\n",
    );
    s.push_str(
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    \
         fib daddr type local jump ports\n  }\n",
    );
    s.push_str(
        "  chain output {\n    type nat hook output priority -100; policy accept;\n    \
         fib daddr type local jump ports\n  }\n",
    );

    // Source NAT: egress, localhost and hairpin traffic to published ports.
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    for (net, _) in nets {
        let (b, sub) = (&net.bridge, &net.subnet);
        let _ = writeln!(
            s,
            "    oifname \"{b}\" ct status dnat ip saddr 127.0.0.0/8 masquerade"
        );
        let _ = writeln!(
            s,
            "    oifname \"{b}\" ct status dnat ip saddr {sub} masquerade"
        );
        if let Some(s6) = net.subnet6 {
            let _ = writeln!(
                s,
                "    oifname \"{b}\" ct status dnat ip6 saddr {s6} masquerade"
            );
        }
        if !net.internal {
            let _ = writeln!(
                s,
                "    ip saddr {sub} ip daddr != {sub} oifname != \"{b}\" masquerade"
            );
            if let Some(s6) = net.subnet6 {
                let _ = writeln!(
                    s,
                    "    ip6 saddr {s6} ip6 daddr != {s6} oifname != \"{b}\" masquerade"
                );
            }
        }
    }
    s.push_str("  }\n");

    // route_localnet (needed to DNAT 127.0.0.1 into containers) would also let containers
    // reach the host's loopback services through the gateway: drop that.
    let set = bridges
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "  chain input {{\n    type filter hook input priority filter; policy accept;\n    \
         iifname {{ {set} }} ip daddr 127.0.0.0/8 ct state != {{ established, related }} drop\n  }}"
    );

    // Forwarding: internal networks stay inside their bridge; networks are isolated from each
    // other except for published ports.
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    for (net, _) in nets {
        if net.internal {
            let b = &net.bridge;
            let _ = writeln!(s, "    iifname \"{b}\" oifname != \"{b}\" drop");
            let _ = writeln!(s, "    oifname \"{b}\" iifname != \"{b}\" drop");
        }
    }
    s.push_str("    ct status dnat accept\n");
    if bridges.len() > 1 {
        for b in &bridges {
            let _ = writeln!(
                s,
                "    iifname \"{b}\" oifname {{ {set} }} oifname != \"{b}\" drop"
            );
        }
    }
    s.push_str("  }\n}\n");
    s
}

/// [`render`]'s table with these published ports in its maps: the whole `nft -f` script.
pub fn script(structure: &str, elems: &[PortElem]) -> String {
    let mut s = structure.to_string();
    for (name, _) in MAPS {
        let v: Vec<String> = elems
            .iter()
            .filter(|e| e.map() == name)
            .map(PortElem::text)
            .collect();
        if !v.is_empty() {
            let _ = writeln!(s, "add element inet {TABLE} {name} {{ {} }}", v.join(", "));
        }
    }
    s
}

/// Applies a script made by [`script`] as one transaction.
pub fn apply(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Refused {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

// nf_tables over netlink (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_INET: u8 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

/// Appends a netlink attribute (4-byte aligned).
fn nla(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
}

fn nla_str(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    nla(buf, ty, &v);
}

/// Appends one netlink message: header, nfgenmsg, attributes.
fn nlmsg(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) {
    let len = 16 + 4 + attrs.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[family, 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

/// The attributes of a NEWSETELEM (`with_data`) or DELSETELEM for elements of one map.
fn elem_attrs(map: &str, elems: &[&PortElem], with_data: bool) -> Vec<u8> {
    let mut list = Vec::new();
    for e in elems {
        let mut el = Vec::new();
        let mut key = Vec::new();
        nla(&mut key, NFTA_DATA_VALUE, &e.key());
        nla(&mut el, NFTA_SET_ELEM_KEY | NLA_F_NESTED, &key);
        if with_data {
            let mut data = Vec::new();
            nla(&mut data, NFTA_DATA_VALUE, &e.data());
            nla(&mut el, NFTA_SET_ELEM_DATA | NLA_F_NESTED, &data);
        }
        nla(&mut list, NFTA_LIST_ELEM | NLA_F_NESTED, &el);
    }
    let mut a = Vec::new();
    nla_str(&mut a, NFTA_SET_ELEM_LIST_TABLE, TABLE);
    nla_str(&mut a, NFTA_SET_ELEM_LIST_SET, map);
    nla(&mut a, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list);
    a
}

/// The batch that removes `del` and adds `add` (one transaction); returns it and how many
/// messages in it ask for an ACK.
fn elem_batch(add: &[PortElem], del: &[PortElem], seq0: u32) -> (Vec<u8>, Vec<u32>) {
    let mut buf = Vec::new();
    let req = libc::NLM_F_REQUEST as u16;
    let ack = libc::NLM_F_ACK as u16;
    let mut seq = seq0;
    let mut acked = Vec::new();
    nlmsg(
        &mut buf,
        NFNL_MSG_BATCH_BEGIN,
        req,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    for (elems, ty, flags) in [
        (del, NFT_MSG_DELSETELEM, req | ack),
        (
            add,
            NFT_MSG_NEWSETELEM,
            req | ack | libc::NLM_F_CREATE as u16,
        ),
    ] {
        for (map, _) in MAPS {
            let these: Vec<&PortElem> = elems.iter().filter(|e| e.map() == map).collect();
            if these.is_empty() {
                continue;
            }
            seq += 1;
            let attrs = elem_attrs(map, &these, ty == NFT_MSG_NEWSETELEM);
            nlmsg(
                &mut buf,
                NFNL_SUBSYS_NFTABLES << 8 | ty,
                flags,
                seq,
                NFPROTO_INET,
                0,
                &attrs,
            );
            acked.push(seq);
        }
    }
    seq += 1;
    nlmsg(
        &mut buf,
        NFNL_MSG_BATCH_END,
        req,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    (buf, acked)
}

/// Removes `del` from and adds `add` to the published-port maps of the table in place, as one
/// nf_tables transaction over netlink. Fails (changing nothing) if the table is missing, an
/// element to delete is not there or one to add is there with other data: the caller then
/// rewrites the whole table.
pub fn update_ports(add: &[PortElem], del: &[PortElem]) -> Result<(), NftError> {
    if add.is_empty() && del.is_empty() {
        return Ok(());
    }
    let sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_NETFILTER)
        .map_err(NftError::Netlink)?;
    // The kernel answers every message of a batch; never wait forever all the same.
    let tv = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: a valid socket and a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(NftError::Netlink(std::io::Error::last_os_error()));
    }
    let seq0 = std::process::id().wrapping_shl(8);
    let (batch, mut waiting) = elem_batch(add, del, seq0);
    let kernel = netlink_sys::SocketAddr::new(0, 0);
    sock.send_to(&batch, &kernel, 0)
        .map_err(NftError::Netlink)?;
    let mut first_err = None;
    let mut buf = vec![0u8; 65536];
    while !waiting.is_empty() {
        let n = sock.recv(&mut &mut buf[..], 0).map_err(NftError::Netlink)?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if len < 16 || off + len > n {
                break;
            }
            if ty == libc::NLMSG_ERROR as u16 && len >= 20 {
                let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                // The header of the message this answers follows the code.
                let seq = if len >= 32 {
                    u32::from_ne_bytes(buf[off + 28..off + 32].try_into().unwrap())
                } else {
                    0
                };
                waiting.retain(|s| *s != seq);
                if code != 0 {
                    // The whole batch is aborted: no need to wait for the other answers (an
                    // error about the batch itself answers no message that asked for an ACK).
                    first_err.get_or_insert(std::io::Error::from_raw_os_error(-code));
                    waiting.clear();
                }
            }
            off += (len + 3) & !3;
        }
    }
    match first_err {
        Some(e) => Err(NftError::Netlink(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PortMapping;

    fn net(ipv6: bool) -> Network {
        Network {
            name: "six".into(),
            id: "0".repeat(64),
            driver: "bridge".into(),
            bridge: "br-six".into(),
            subnet: "10.89.0.0/24".parse().unwrap(),
            gateway: "10.89.0.1".parse().unwrap(),
            internal: false,
            ipv6,
            subnet6: ipv6.then(|| "fd00:1::/64".parse().unwrap()),
            gateway6: ipv6.then(|| "fd00:1::1".parse().unwrap()),
            dns: true,
            created: 0,
            labels: vec![],
            mtu: None,
        }
    }

    fn lease(ip6: bool, ports: &[&str]) -> Lease {
        Lease {
            ip: "10.89.0.2".parse().unwrap(),
            ip6: ip6.then(|| "fd00:1::2".parse().unwrap()),
            container_id: "c".into(),
            container_name: "c".into(),
            aliases: vec![],
            mac: String::new(),
            host_ifname: "vb0".into(),
            ifname: "eth0".into(),
            ports: ports
                .iter()
                .flat_map(|p| crate::publish::parse_publish(p).unwrap())
                .collect::<Vec<PortMapping>>(),
        }
    }

    #[test]
    fn published_ports_per_family() {
        let nets = [(
            net(true),
            vec![lease(
                true,
                &["8080:80", "[2001:db8::1]:8081:81", "0.0.0.0:8082:82/udp"],
            )],
        )];
        let elems = port_elems(&nets);
        let texts: Vec<(String, &str)> = elems.iter().map(|e| (e.text(), e.map())).collect();
        assert_eq!(
            texts,
            [
                ("tcp . 8080 : 10.89.0.2 . 80".to_string(), "pub4"),
                ("tcp . 8080 : fd00:1::2 . 80".to_string(), "pub6"),
                (
                    "2001:db8::1 . tcp . 8081 : fd00:1::2 . 81".to_string(),
                    "pub6a"
                ),
                ("udp . 8082 : 10.89.0.2 . 82".to_string(), "pub4"),
            ]
        );
        let s = script(&render(&nets), &elems);
        for want in [
            "add element inet berth pub4 { tcp . 8080 : 10.89.0.2 . 80, udp . 8082 : 10.89.0.2 . 82 }",
            "add element inet berth pub6a { 2001:db8::1 . tcp . 8081 : fd00:1::2 . 81 }",
            "oifname \"br-six\" ct status dnat ip6 saddr fd00:1::/64 masquerade",
        ] {
            assert!(s.contains(want), "{want} missing from\n{s}");
        }
        // The structure does not depend on the ports.
        assert_eq!(
            render(&nets),
            render(&[(net(true), vec![lease(true, &[])])])
        );
        // Without an IPv6 address, IPv4 only.
        let v4 = port_elems(&[(net(false), vec![lease(false, &["8080:80"])])]);
        assert_eq!(v4.len(), 1);
    }

    #[test]
    fn netlink_elements_as_the_kernel_wants_them() {
        let e = PortElem {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            protocol: Protocol::Tcp,
            host_port: 9000,
            ip: "10.88.0.3".parse().unwrap(),
            port: 80,
        };
        assert_eq!(e.key(), [127, 0, 0, 1, 6, 0, 0, 0, 0x23, 0x28, 0, 0]);
        assert_eq!(e.data(), [10, 88, 0, 3, 0, 80, 0, 0]);
        let one = std::slice::from_ref(&e);
        let (b, acked) = elem_batch(one, one, 7);
        // begin, DELSETELEM, NEWSETELEM, end; the middle two ask for an ACK.
        assert_eq!(acked, [8, 9]);
        let mut off = 0;
        let mut types = Vec::new();
        while off < b.len() {
            let len = u32::from_ne_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            types.push(u16::from_ne_bytes(b[off + 4..off + 6].try_into().unwrap()));
            off += len;
        }
        assert_eq!(off, b.len());
        assert_eq!(types, [0x10, 10 << 8 | 14, 10 << 8 | 12, 0x11]);
    }
}

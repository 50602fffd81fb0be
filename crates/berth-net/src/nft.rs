//! berth's nftables rules: one `inet berth` table, rebuilt from the network and lease records and
//! swapped in as one atomic transaction (`nft -f -`), so the kernel's rules always match the
//! records and nothing is ever left half-applied or orphaned.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use std::net::IpAddr;

use crate::{Lease, Network, Protocol};

pub const TABLE: &str = "berth";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft (install the nftables package): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused berth's rules: {stderr}")]
    Refused { stderr: String },
}

/// The `inet berth` table for these networks and their leases (empty: no table at all).
pub fn render(nets: &[(Network, Vec<Lease>)]) -> String {
    let mut s = String::new();
    // Make sure the table exists so that the delete below cannot fail, then replace it.
    let _ = writeln!(s, "table inet {TABLE} {{}}\ndelete table inet {TABLE}");
    if nets.is_empty() {
        return s;
    }
    let bridges: Vec<&str> = nets.iter().map(|(n, _)| n.bridge.as_str()).collect();
    let _ = writeln!(s, "table inet {TABLE} {{");

    // Published ports.
    s.push_str("  chain ports {\n");
    for (net, leases) in nets {
        if net.internal {
            continue;
        }
        for l in leases {
            for p in &l.ports {
                let proto = match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                };
                let (hp, cp) = (p.host_port, p.container_port);
                // IPv4: a given address, or all of them (no address, or 0.0.0.0).
                let v4 = match p.host_ip {
                    Some(IpAddr::V4(ip)) if !ip.is_unspecified() => Some(format!("ip daddr {ip}")),
                    None | Some(IpAddr::V4(_)) => Some("meta nfproto ipv4".to_string()),
                    Some(IpAddr::V6(_)) => None,
                };
                if let Some(m) = v4 {
                    let _ = writeln!(s, "    {m} {proto} dport {hp} dnat ip to {}:{cp}", l.ip);
                }
                // IPv6, for a container with an IPv6 address: a given address, or all of them
                // (no address, or ::) but loopback, which the kernel does not route out of `lo`.
                let v6 = match p.host_ip {
                    Some(IpAddr::V6(ip)) if !ip.is_unspecified() => Some(format!("ip6 daddr {ip}")),
                    None | Some(IpAddr::V6(_)) => Some("ip6 daddr != ::1".to_string()),
                    Some(IpAddr::V4(_)) => None,
                };
                if let (Some(m), Some(ip6)) = (v6, l.ip6) {
                    let _ = writeln!(s, "    {m} {proto} dport {hp} dnat ip6 to [{ip6}]:{cp}");
                }
            }
        }
    }
    s.push_str("  }\n");
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

/// Applies a script made by [`render`] as one transaction.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortMapping;

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
                .flat_map(|p| crate::parse_publish(p).unwrap())
                .collect::<Vec<PortMapping>>(),
        }
    }

    #[test]
    fn published_ports_per_family() {
        let s = render(&[(
            net(true),
            vec![lease(
                true,
                &["8080:80", "[2001:db8::1]:8081:81", "0.0.0.0:8082:82/udp"],
            )],
        )]);
        for want in [
            "meta nfproto ipv4 tcp dport 8080 dnat ip to 10.89.0.2:80",
            "ip6 daddr != ::1 tcp dport 8080 dnat ip6 to [fd00:1::2]:80",
            "ip6 daddr 2001:db8::1 tcp dport 8081 dnat ip6 to [fd00:1::2]:81",
            "meta nfproto ipv4 udp dport 8082 dnat ip to 10.89.0.2:82",
            "oifname \"br-six\" ct status dnat ip6 saddr fd00:1::/64 masquerade",
        ] {
            assert!(s.contains(want), "{want} missing from\n{s}");
        }
        assert!(!s.contains("dport 8081 dnat ip to"), "{s}");
        assert!(!s.contains("udp dport 8082 dnat ip6"), "{s}");
        // Without an IPv6 address, IPv4 only.
        let s = render(&[(net(false), vec![lease(false, &["8080:80"])])]);
        assert!(!s.contains("ip6"), "{s}");
    }
}

//! berth's nftables rules: one `inet berth` table, rebuilt from the network and lease records and
//! swapped in as one atomic transaction (`nft -f -`), so the kernel's rules always match the
//! records and nothing is ever left half-applied or orphaned.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

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
                let daddr = match p.host_ip {
                    Some(std::net::IpAddr::V4(ip)) if !ip.is_unspecified() => {
                        format!("ip daddr {ip} ")
                    }
                    _ => "meta nfproto ipv4 ".to_string(),
                };
                let proto = match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                };
                let _ = writeln!(
                    s,
                    "    {daddr}{proto} dport {} dnat ip to {}:{}",
                    p.host_port, l.ip, p.container_port
                );
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

//! The `/etc/resolv.conf` and `/etc/hosts` a container gets from its network attachments.

use std::net::{IpAddr, Ipv4Addr};

use crate::model::Attachment;

/// `/etc/resolv.conf` for a container. `dns`, `search` and `options` are `--dns`,
/// `--dns-search` and `--dns-option`; a resolver on loopback in the host's file is replaced by
/// Docker's public fallbacks (the container cannot reach the host's loopback), and on user-defined
/// networks the network's own DNS responder comes first.
pub fn resolv_conf_for(
    attachments: &[Attachment],
    host_resolv: &str,
    dns: &[IpAddr],
    search: &[String],
    options: &[String],
) -> String {
    let mut host_ns = Vec::new();
    let mut host_search = Vec::new();
    let mut host_opts = Vec::new();
    for line in host_resolv.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                if let Some(ip) = w.next().and_then(|s| s.parse::<IpAddr>().ok()) {
                    host_ns.push(ip)
                }
            }
            Some("search") | Some("domain") => host_search.extend(w.map(str::to_string)),
            Some("options") => host_opts.extend(w.map(str::to_string)),
            _ => {}
        }
    }
    let mut servers: Vec<IpAddr> = if let Some(d) = attachments.iter().find_map(|a| a.dns_server) {
        // The responder forwards everything else to --dns or the host's resolvers itself.
        vec![d]
    } else if !dns.is_empty() {
        dns.to_vec()
    } else {
        host_ns.retain(|ip| !ip.is_loopback());
        host_ns
    };
    if servers.is_empty() {
        servers = vec![
            IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
            IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
        ];
    }
    let search = if search.is_empty() {
        host_search
    } else {
        search.to_vec()
    };
    let opts = if options.is_empty() {
        host_opts
    } else {
        options.to_vec()
    };
    let mut out = String::new();
    if !search.is_empty() && search.iter().all(|s| s != ".") {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !opts.is_empty() {
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    out
}

/// `/etc/hosts` for a container: loopback lines, the container's own addresses with its
/// hostname, and `--add-host` entries.
pub fn hosts_file(
    hostname: &str,
    attachments: &[Attachment],
    extra: &[(String, IpAddr)],
) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    for a in attachments {
        out.push_str(&hosts_lines(hostname, a));
    }
    out
}

/// The `/etc/hosts` lines of one attachment: its addresses with the hostname and the
/// attachment's aliases.
pub fn hosts_lines(hostname: &str, a: &Attachment) -> String {
    let mut names = hostname.to_string();
    for al in &a.aliases {
        if al != hostname {
            names.push(' ');
            names.push_str(al);
        }
    }
    let mut out = format!("{}\t{names}\n", a.ip);
    if let Some(ip6) = a.ip6 {
        out.push_str(&format!("{ip6}\t{names}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(dns: Option<&str>) -> Attachment {
        Attachment {
            network: "n".into(),
            network_id: "0".repeat(64),
            ip: Ipv4Addr::new(10, 89, 0, 2),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            ip6: None,
            prefix6: None,
            gateway6: None,
            mac: "02:42:0a:59:00:02".into(),
            ifname: "eth0".into(),
            host_ifname: "vb0".into(),
            dns_server: dns.map(|d| d.parse().unwrap()),
            aliases: vec![],
            ports: vec![],
        }
    }

    #[test]
    fn resolv_conf() {
        let host = "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n";
        // Default bridge: the host's resolvers minus loopback ones.
        assert_eq!(
            resolv_conf_for(&[att(None)], host, &[], &[], &[]),
            "search corp.example\nnameserver 192.0.2.53\noptions edns0\n"
        );
        // Only a loopback resolver: Docker's public fallbacks.
        assert_eq!(
            resolv_conf_for(&[], "nameserver 127.0.0.53\n", &[], &[], &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        // --dns, --dns-search, --dns-option win.
        let dns = ["192.0.2.1".parse().unwrap()];
        assert_eq!(
            resolv_conf_for(&[], host, &dns, &["a.test".into()], &["ndots:2".into()]),
            "search a.test\nnameserver 192.0.2.1\noptions ndots:2\n"
        );
        // User-defined network: its responder.
        assert!(
            resolv_conf_for(&[att(Some("10.89.0.1"))], host, &[], &[], &[])
                .contains("nameserver 10.89.0.1\n")
        );
    }

    #[test]
    fn hosts() {
        let h = hosts_file(
            "web",
            &[att(None)],
            &[("db.test".into(), "192.0.2.9".parse().unwrap())],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("192.0.2.9\tdb.test\n"));
        assert!(h.ends_with("10.89.0.2\tweb\n"));
    }
}

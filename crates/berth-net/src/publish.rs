//! `-p/--publish` parsing: `[hostip:][hostport:]ctrport[/tcp|udp]`, ports or ranges.

use std::net::IpAddr;

use crate::model::{PortMapping, Protocol};

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid publish spec {spec:?}: {why} (expected [hostip:][hostport:]containerport[/tcp|udp])"
)]
pub struct PublishError {
    pub spec: String,
    pub why: String,
}

fn range(s: &str, spec: &str) -> Result<(u16, u16), PublishError> {
    let err = |why: String| PublishError {
        spec: spec.to_string(),
        why,
    };
    let port = |p: &str| -> Result<u16, PublishError> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(err(format!("{p:?} is not a port (1-65535)"))),
            Ok(n) => Ok(n),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(err(format!("the range {s} ends before it starts")));
            }
            Ok((a, b))
        }
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
    }
}

/// Parses one `-p` value into its mappings (a range gives one mapping per port).
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, PublishError> {
    let err = |why: &str| PublishError {
        spec: spec.to_string(),
        why: why.to_string(),
    };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Protocol::Tcp),
        Some((r, "udp")) => (r, Protocol::Udp),
        Some((_, p)) => return Err(err(&format!("unknown protocol {p:?}"))),
        None => (spec, Protocol::Tcp),
    };
    // The host IP may be an IPv6 address in brackets.
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r.split_once("]:").ok_or_else(|| err("unclosed '['"))?;
        let ip: IpAddr = ip.parse().map_err(|_| err("bad host IP"))?;
        (Some(ip), r)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => {
                let ip = if parts[0].is_empty() {
                    None
                } else {
                    Some(parts[0].parse().map_err(|_| err("bad host IP"))?)
                };
                (ip, &rest[parts[0].len() + 1..])
            }
            _ => return Err(err("too many ':'")),
        }
    };
    let (host, ctr) = match rest.split_once(':') {
        Some((h, c)) => (if h.is_empty() { None } else { Some(h) }, c),
        None => (None, rest),
    };
    let (c0, c1) = range(ctr, spec)?;
    let (h0, h1) = match host {
        Some(h) => range(h, spec)?,
        None => (0, 0),
    };
    if host.is_some() && h1 - h0 != c1 - c0 && h0 != h1 {
        return Err(err("the host and container ranges differ in size"));
    }
    if host.is_some() && h0 == h1 && c0 != c1 {
        return Err(err("a single host port cannot map a container port range"));
    }
    Ok((0..=(c1 - c0))
        .map(|i| PortMapping {
            host_ip,
            host_port: if host.is_some() { h0 + i } else { 0 },
            container_port: c0 + i,
            protocol,
        })
        .collect())
}

/// `-P`: every port of the image's `ExposedPorts` ("80/tcp", "53/udp", "8080") on a random
/// host port.
pub fn publish_all<S: AsRef<str>>(exposed: &[S]) -> Result<Vec<PortMapping>, PublishError> {
    let mut out = Vec::new();
    for e in exposed {
        let e = e.as_ref();
        for mut m in parse_publish(e)? {
            if m.host_ip.is_some() || m.host_port != 0 {
                return Err(PublishError {
                    spec: e.to_string(),
                    why: "an exposed port is PORT[/PROTO]".into(),
                });
            }
            m.host_port = 0;
            out.push(m);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PortMapping {
        let mut v = parse_publish(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.remove(0)
    }

    #[test]
    fn forms() {
        let m = one("8080:80");
        assert_eq!((m.host_ip, m.host_port, m.container_port), (None, 8080, 80));
        assert_eq!(m.protocol, Protocol::Tcp);
        let m = one("127.0.0.1:8080:80/udp");
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(m.protocol, Protocol::Udp);
        let m = one("80");
        assert_eq!((m.host_port, m.container_port), (0, 80));
        let m = one("127.0.0.1::80");
        assert_eq!((m.host_port, m.container_port), (0, 80));
        let m = one("[::1]:9000:90");
        assert_eq!(m.host_ip, Some("::1".parse().unwrap()));
        let v = parse_publish("8000-8002:9000-9002").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!((v[2].host_port, v[2].container_port), (8002, 9002));
    }

    #[test]
    fn exposed_ports() {
        let v = publish_all(&["80/tcp", "53/udp", "8080"]).unwrap();
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|m| m.host_port == 0));
        assert_eq!(v[1].protocol, Protocol::Udp);
        assert!(publish_all(&["1:2"]).is_err());
    }

    #[test]
    fn errors_name_the_spec() {
        for bad in [
            "", "x", "0", "70000", "1:2:3:4", "80/sctp", "9-8", "80:90-91", "a:80:80",
        ] {
            let e = parse_publish(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}

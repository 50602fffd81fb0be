//! The DNS responder of a user-defined network: answers A queries for container names and
//! aliases from `dns/<network>.hosts` (re-read when it changes) on the bridge's gateway
//! address, port 53 (UDP and TCP), and forwards every other query to the host's resolvers.
//!
//! It runs as its own detached process (`berth __dns NETWORKS_DIR NETWORK`), started by the
//! first connect (by a double fork, in a session of its own: no berth command is its parent,
//! so init or a subreaper reaps it) and killed by the last disconnect or `network rm`, which
//! wait for it to exit only once the networks' lock is released; it also exits by itself once
//! its network's record is gone.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::model::Network;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS responder of network {network} did not start (see `berth __dns`)")]
    NotReady { network: String },
    #[error("DNS responder: cannot read network {path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error("DNS responder: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

const TTL: u32 = 60;

/// A parsed query: the ID, flags, the lower-cased name, its type and the question's bytes.
#[derive(Debug, PartialEq)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    pub name: String,
    pub qtype: u16,
    question_end: usize,
}

/// Parses a standard query with one question (no name compression, as queries are sent).
pub fn parse_query(p: &[u8]) -> Option<Query> {
    if p.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([p[0], p[1]]);
    let flags = u16::from_be_bytes([p[2], p[3]]);
    let qd = u16::from_be_bytes([p[4], p[5]]);
    if flags & 0x8000 != 0 || qd != 1 || (flags >> 11) & 0xf != 0 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *p.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let l = p.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
    let _class = u16::from_be_bytes([*p.get(i + 2)?, *p.get(i + 3)?]);
    Some(Query {
        id,
        flags,
        name: labels.join("."),
        qtype,
        question_end: i + 4,
    })
}

/// The response to `q` (whose bytes are `p`) with these A or AAAA records and rcode.
pub fn response(p: &[u8], q: &Query, answers: &[IpAddr], rcode: u16) -> Vec<u8> {
    let mut r = Vec::with_capacity(q.question_end + 16 * answers.len());
    r.extend_from_slice(&q.id.to_be_bytes());
    // QR, opcode copied, AA, RD copied, RA.
    let flags = 0x8000 | (q.flags & 0x7800) | 0x0400 | (q.flags & 0x0100) | 0x0080 | rcode;
    r.extend_from_slice(&flags.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&p[12..q.question_end]);
    for a in answers {
        let (rtype, data) = match a {
            IpAddr::V4(a) => (1u16, a.octets().to_vec()),
            IpAddr::V6(a) => (28u16, a.octets().to_vec()),
        };
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
    }
    r
}

struct Records {
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    map: HashMap<String, Vec<IpAddr>>,
}

impl Records {
    fn refresh(&mut self) {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        self.map.clear();
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let Some(ip) = w.next().and_then(|s| s.parse::<IpAddr>().ok()) else {
                continue;
            };
            for name in w {
                self.map
                    .entry(name.to_ascii_lowercase())
                    .or_default()
                    .push(ip);
            }
        }
    }
}

/// The resolvers to forward to: `BERTH_DNS_UPSTREAMS` (comma-separated) if set, else the
/// nameservers of /etc/resolv.conf.
fn upstreams(own: Ipv4Addr) -> Vec<SocketAddr> {
    let list: Vec<IpAddr> = match std::env::var("BERTH_DNS_UPSTREAMS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("nameserver"))
                    .then(|| w.next()?.parse().ok())
                    .flatten()
            })
            .collect(),
    };
    list.into_iter()
        .filter(|ip| *ip != IpAddr::V4(own))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Asks the upstream resolvers in turn (UDP, 2 s each); their reply, or SERVFAIL.
fn ask_upstream(query: &[u8], ups: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in ups {
        let bind: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.connect(up).is_err() || s.send(query).is_err() {
            continue;
        }
        let mut buf = [0u8; 4096];
        if let Ok(n) = s.recv(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    let q = parse_query(query)?;
    Some(response(query, &q, &[], 2))
}

/// The answer from the network's own names, or None when the name is not one of them.
fn local_answer(records: &Mutex<Records>, p: &[u8], q: &Query) -> Option<Vec<u8>> {
    let mut r = records.lock().unwrap_or_else(|e| e.into_inner());
    r.refresh();
    let ips = r.map.get(q.name.trim_end_matches('.'))?;
    // A (1), AAAA (28) and ANY (255) get the addresses; other types of a known name: no data.
    let ans: Vec<IpAddr> = ips
        .iter()
        .filter(|ip| match q.qtype {
            1 => ip.is_ipv4(),
            28 => ip.is_ipv6(),
            255 => true,
            _ => false,
        })
        .copied()
        .collect();
    Some(response(p, q, &ans, 0))
}

/// Full answer to one query: local names first, then the upstreams.
fn answer(records: &Mutex<Records>, p: &[u8], ups: &[SocketAddr]) -> Option<Vec<u8>> {
    let q = parse_query(p)?;
    local_answer(records, p, &q).or_else(|| ask_upstream(p, ups))
}

/// DNS over TCP (RFC 7766 framing: a 2-byte length before each message), one thread per
/// connection, closed after 10 s idle.
fn serve_tcp(listener: TcpListener, records: Arc<Mutex<Records>>, ups: Arc<Vec<SocketAddr>>) {
    for conn in listener.incoming().flatten() {
        let (records, ups) = (records.clone(), ups.clone());
        std::thread::spawn(move || {
            let mut c = conn;
            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
            loop {
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    return;
                }
                let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                if c.read_exact(&mut q).is_err() {
                    return;
                }
                let Some(r) = answer(&records, &q, &ups) else {
                    return;
                };
                let mut out = (r.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&r);
                if c.write_all(&out).is_err() {
                    return;
                }
            }
        });
    }
}

/// Runs the responder until its network is removed. Never returns.
pub fn dns_server_main(networks_dir: &Path, network: &str) -> ! {
    match serve(networks_dir, network) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("berth __dns: {e}");
            std::process::exit(1)
        }
    }
}

fn serve(dir: &Path, network: &str) -> Result<(), DnsError> {
    let net_path = dir.join(format!("{network}.json"));
    let net: Network = std::fs::read(&net_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|why| DnsError::Config {
            path: net_path.clone(),
            why,
        })?;
    let addr = SocketAddr::new(IpAddr::V4(net.gateway), 53);
    // A responder of this network killed a moment ago (its last container left as another
    // joined) may still be exiting: its port is free once it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let sock = loop {
        match UdpSocket::bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            r => break r.map_err(|source| DnsError::Bind { addr, source })?,
        }
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = std::fs::write(
        dir.join("dns").join(format!("{network}.ready")),
        std::process::id().to_string(),
    );
    let ups = Arc::new(upstreams(net.gateway));
    let records = Arc::new(Mutex::new(Records {
        path: dir.join("dns").join(format!("{network}.hosts")),
        stamp: None,
        map: HashMap::new(),
    }));
    if let Ok(l) = TcpListener::bind(addr) {
        let (r, u) = (records.clone(), ups.clone());
        std::thread::spawn(move || serve_tcp(l, r, u));
    }
    let mut buf = [0u8; 4096];
    loop {
        let (n, client) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !net_path.exists() {
                    return Ok(());
                }
                continue;
            }
            Err(_) => continue,
        };
        let p = &buf[..n];
        let Some(q) = parse_query(p) else {
            continue;
        };
        if let Some(r) = local_answer(&records, p, &q) {
            let _ = sock.send_to(&r, client);
        } else if let Ok(s) = sock.try_clone() {
            // Upstream answers may take a while: one thread each, the loop keeps serving.
            let (p, ups) = (p.to_vec(), ups.clone());
            std::thread::spawn(move || {
                if let Some(r) = ask_upstream(&p, &ups) {
                    let _ = s.send_to(&r, client);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn answers_a_query() {
        let p = query("Web.1", 1);
        let q = parse_query(&p).unwrap();
        assert_eq!((q.id, q.name.as_str(), q.qtype), (0x1234, "web.1", 1));
        let r = response(&p, &q, &[Ipv4Addr::new(10, 89, 0, 2).into()], 0);
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([r[2], r[3]]) & 0x8000, 0x8000);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 2]);
        assert_eq!(&r[12..p.len()], &p[12..]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_query(&[0; 5]).is_none());
        let mut p = query("a", 1);
        p[2] |= 0x80; // a response, not a query
        assert!(parse_query(&p).is_none());
        let p = query("a", 1);
        assert!(parse_query(&p[..p.len() - 2]).is_none());
    }
}

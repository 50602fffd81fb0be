//! A private "host" for every network test: the test re-executes its own binary under
//! `unshare --net --mount --pid --fork`, so the machine's namespace, addresses, routes,
//! `ip_forward` and nftables rules are never touched, no packet leaves the namespaces the test
//! makes, and every process the test starts (busybox servers, DNS responders) is killed by the
//! kernel when the test's PID namespace ends, even after a panic.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_net::{DnsCommand, NetStore};

const INNER: &str = "BERTH_NET_TEST_HOST";
const DNS_CHILD: &str = "BERTH_NET_DNS_CHILD";

/// Runs `f` inside a fresh test host (network, mount and PID namespaces of its own).
pub fn in_test_host(test: &str, f: impl FnOnce(&TestHost)) {
    match std::env::var(INNER) {
        Ok(t) if t == test => {
            let host = TestHost::setup();
            f(&host);
            return;
        }
        Ok(_) => return,
        Err(_) => {}
    }
    if std::env::var(DNS_CHILD).is_ok() {
        return;
    }
    berth_testutil::netns_host::run_in_private_host(test, INNER, false);
}

/// The DNS responder entry point: the test binary re-executed as `berth __dns` would be.
pub fn dns_child_entry() {
    if std::env::var(DNS_CHILD).is_err() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let n = args.len();
    berth_net::dns::dns_server_main(Path::new(&args[n - 2]), &args[n - 1]);
}

/// DNS responders run as this test binary (`dns_child`), forwarding to the "internet"
/// namespace only, never to the machine's resolvers.
pub fn dns_command() -> DnsCommand {
    DnsCommand {
        program: std::env::current_exe().unwrap(),
        args: vec!["--exact".into(), "dns_child".into(), "--nocapture".into()],
        env: vec![
            (DNS_CHILD.into(), "1".into()),
            ("BERTH_DNS_UPSTREAMS".into(), INTERNET.into()),
        ],
    }
}

pub struct TestHost {
    pub root: tempfile::TempDir,
    pub store: NetStore,
}

pub const UPLINK_HOST: &str = "198.18.0.1";
pub const INTERNET: &str = "198.18.0.2";

pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs a shell command, panicking with its output if it fails; returns stdout.
pub fn ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl TestHost {
    fn setup() -> TestHost {
        // Private /run (for /run/netns, which `ip -n` uses) in this test's mount namespace.
        ok("mount -t tmpfs berth-test-run /run && mkdir -p /run/netns");
        ok("ip link set lo up");
        let root = tempfile::Builder::new()
            .prefix("berth-net-test")
            .tempdir()
            .unwrap();
        let store = NetStore::open(root.path())
            .unwrap()
            .with_dns_command(dns_command());
        TestHost { root, store }
    }

    /// A "container": a network namespace at /run/netns/NAME.
    pub fn netns(&self, name: &str) -> PathBuf {
        let p = PathBuf::from(format!("/run/netns/{name}"));
        berth_net::create_netns(&p).unwrap();
        p
    }

    /// A second namespace standing in for the internet, reached over a veth pair:
    /// the test host is 198.18.0.1, the internet 198.18.0.2, serving /cgi-bin/ip (the client
    /// address it sees) over HTTP on port 80.
    pub fn internet(&self) -> PathBuf {
        let ns = self.netns("internet");
        ok("ip link add uplink type veth peer name eth0 netns internet");
        ok(&format!(
            "ip addr add {UPLINK_HOST}/24 dev uplink && ip link set uplink up && \
             ip -n internet addr add {INTERNET}/24 dev eth0 && ip -n internet link set eth0 up"
        ));
        let www = self.root.path().join("www");
        std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
        std::fs::write(www.join("index.html"), "hello from the internet\n").unwrap();
        let cgi = www.join("cgi-bin/ip");
        std::fs::write(
            &cgi,
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .unwrap();
        ok(&format!("chmod 755 {}", cgi.display()));
        spawn_in(
            &ns,
            &format!("busybox httpd -f -p {INTERNET}:80 -h {}", www.display()),
        );
        wait_port(&ns, INTERNET, 80);
        ns
    }
}

/// Starts a long-running command inside a namespace (killed, and reaped, with the test's PID
/// namespace).
#[allow(clippy::zombie_processes)]
pub fn spawn_in(ns: &Path, cmd: &str) {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["sh", "-c", cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

/// Runs a command inside a namespace.
pub fn run_in(ns: &Path, cmd: &str) -> Output {
    sh(&format!("nsenter --net={} sh -c '{cmd}'", ns.display()))
}

pub fn ok_in(ns: &Path, cmd: &str) -> String {
    let o = run_in(ns, cmd);
    assert!(
        o.status.success(),
        "`{cmd}` in {} failed: {}\n{}{}",
        ns.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits until an HTTP server answers on ip:port inside `ns`.
pub fn wait_port(ns: &Path, ip: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let o = run_in(
            ns,
            &format!("timeout 2 busybox wget -q -O /dev/null http://{ip}:{port}/"),
        );
        if o.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {ip}:{port} in {}", ns.display());
}

/// A snapshot of the test host's network state.
pub fn snapshot() -> String {
    ok("ip -d link; ip addr; ip route; ip -6 route; nft list ruleset")
}

impl TestHost {
    /// Runs a berth DNS responder inside the "internet" namespace on 198.18.0.2:53, answering
    /// `NAME -> IP` pairs, as the upstream resolver the network responders forward to.
    pub fn internet_dns(&self, inet: &Path, records: &[(&str, &str)]) {
        self.dns_server_in(inet, "upstream", INTERNET, records);
    }

    /// A berth DNS responder on `ip`:53 inside namespace `ns` answering `records`.
    pub fn dns_server_in(&self, ns: &Path, tag: &str, ip: &str, records: &[(&str, &str)]) {
        let dir = self.root.path().join(tag);
        std::fs::create_dir_all(dir.join("dns")).unwrap();
        let net = serde_json::json!({"name": "up", "id": "0".repeat(64), "driver": "bridge",
            "bridge": "none", "subnet": "198.18.0.0/24", "gateway": INTERNET, "internal": false,
            "ipv6": false, "dns": true, "created": 0});
        let mut net = net;
        net["gateway"] = serde_json::json!(ip);
        std::fs::write(dir.join("up.json"), net.to_string()).unwrap();
        let hosts: String = records
            .iter()
            .map(|(n, ip)| format!("{ip} {n}\n"))
            .collect();
        std::fs::write(dir.join("dns/up.hosts"), hosts).unwrap();
        let exe = std::env::current_exe().unwrap();
        spawn_in(
            ns,
            &format!(
                "{DNS_CHILD}=1 BERTH_DNS_UPSTREAMS= exec {} --exact dns_child --nocapture {} up",
                exe.display(),
                dir.display()
            ),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dir.join("dns/up.ready").exists() {
            assert!(
                Instant::now() < deadline,
                "the upstream DNS responder did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

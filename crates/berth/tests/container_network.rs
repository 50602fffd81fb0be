//! Container networking end to end through the CLI: bridge networks, NAT, published ports, name
//! resolution, teardown.
//!
//! Every test runs inside a private "test host": the test re-executes its own binary under
//! `unshare --net --mount --pid --fork --mount-proc --propagation private`, so berth's bridges,
//! nftables rules and `ip_forward` live in that namespace and die with it, and the machine's own
//! network is never touched. Inside it, the registry fixture listens on its 127.0.0.1, and a
//! second namespace, "internet" (198.18.0.2, over a veth from the test host's 198.18.0.1), serves
//! HTTP and stands in for the outside world. A shell is the namespace's PID 1, so processes
//! orphaned by a killed monitor are reaped, and everything left is killed with the namespace.

mod container_support;

use container_support::{text, Env};
use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const INNER: &str = "BERTH_CTR_NET_TEST_HOST";
const UPLINK: &str = "198.18.0.1";
const INTERNET: &str = "198.18.0.2";

/// Runs `f` inside a fresh test host (network, mount and PID namespaces of its own).
fn in_test_host(test: &str, f: impl FnOnce(&Env)) {
    match std::env::var(INNER) {
        Ok(t) if t == test => {
            setup_host();
            let env = Env::new();
            internet(&env);
            f(&env);
            return;
        }
        Ok(_) => return,
        Err(_) => {}
    }
    berth_testutil::netns_host::run_in_private_host(test, INNER, true);
}

fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The stdout of a command that must have succeeded (`what` names it otherwise).
fn succeeded(what: &str, o: Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}): {}{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn ok(cmd: &str) -> String {
    succeeded(&format!("`{cmd}`"), sh(cmd))
}

fn setup_host() {
    // A private /run (for /run/netns) in this test's mount namespace.
    ok("mount -t tmpfs berth-test-run /run && mkdir -p /run/netns && ip link set lo up");
}

/// The "internet": a namespace on a veth pair, serving `/index.html` and `/cgi-bin/ip` (the
/// client address it sees) on 198.18.0.2:80.
fn internet(env: &Env) {
    let www = env.root.with_file_name("www");
    std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
    std::fs::write(www.join("index.html"), "hello from the internet\n").unwrap();
    std::fs::write(
        www.join("cgi-bin/ip"),
        "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
    )
    .unwrap();
    ok(&format!(
        "chmod 755 {www}/cgi-bin/ip && ip netns add internet && \
         ip link add uplink type veth peer name eth0 netns internet && \
         ip addr add {UPLINK}/24 dev uplink && ip link set uplink up && \
         ip -n internet link set lo up && \
         ip -n internet addr add {INTERNET}/24 dev eth0 && ip -n internet link set eth0 up",
        www = www.display()
    ));
    #[allow(clippy::zombie_processes)]
    Command::new("ip")
        .args(["netns", "exec", "internet", "busybox", "httpd", "-f", "-p"])
        .arg(format!("{INTERNET}:80"))
        .arg("-h")
        .arg(&www)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_http(&format!("http://{INTERNET}/"), "ip netns exec internet");
}

/// Waits until `url` answers (fetched with busybox wget, after `prefix`); returns the body.
fn wait_http(url: &str, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = sh(&format!("{prefix} timeout 2 busybox wget -q -O - {url}"));
        if o.status.success() {
            return text(&o.stdout);
        }
        assert!(
            Instant::now() < deadline,
            "nothing answers at {url}: {}",
            text(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test host's network state, without what changes by itself (carrier, timers, DAD).
fn snapshot() -> String {
    let raw = ok("ip -d link; ip addr; ip route; nft list ruleset");
    let mut out = String::new();
    for line in raw.lines() {
        let mut words = line.split_whitespace();
        let mut kept = Vec::new();
        while let Some(w) = words.next() {
            if w.ends_with("_timer") || w == "state" {
                words.next();
                continue;
            }
            if w == "tentative" || w == "linkdown" {
                continue;
            }
            kept.push(w.replace("NO-CARRIER,", ""));
        }
        out.push_str(&kept.join(" "));
        out.push('\n');
    }
    out
}

/// The state once the veths of containers removed so far are gone (the kernel deletes them with
/// their namespaces, in the background).
fn settled_snapshot() -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok("ip -o link").contains(" master ") {
        assert!(
            Instant::now() < deadline,
            "veths left: {}",
            ok("ip -o link")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    snapshot()
}

/// Waits until the test host's state is `want` (veths of removed namespaces go asynchronously).
fn assert_state(want: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = snapshot();
        if now == want {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: the test host's network differs\n--- want\n{want}\n--- now\n{now}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// berth with its real default network (the shared support sets `none` for the host tests).
fn berth(env: &Env, args: &[&str]) -> Output {
    env.cmd()
        .env_remove("BERTH_DEFAULT_NETWORK")
        .env("BERTH_DNS_UPSTREAMS", INTERNET)
        .args(args)
        .output()
        .unwrap()
}

fn bok(env: &Env, args: &[&str]) -> String {
    succeeded(&format!("berth {args:?}"), berth(env, args))
}

/// `berth run --rm FLAGS IMAGE CMD...` (asserting success).
fn run(env: &Env, flags: &[&str], cmd: &[&str]) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(flags);
    a.push(&env.image);
    a.extend_from_slice(cmd);
    bok(env, &a)
}

fn run_d(env: &Env, flags: &[&str], cmd: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(flags);
    a.push(&env.image);
    a.extend_from_slice(cmd);
    bok(env, &a).trim().to_string()
}

fn inspect(env: &Env, c: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&bok(env, &["inspect", c])).unwrap();
    v[0].clone()
}

/// The IPv4 address of container `c` on network `net`, from `berth inspect`.
fn ip_on(env: &Env, c: &str, net: &str) -> String {
    inspect(env, c)["NetworkSettings"]["Networks"][net]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("{c} has no address on {net}"))
        .to_string()
}

/// A page fetched with wget from a container run with `flags`.
fn fetch(env: &Env, flags: &[&str], url: &str) -> String {
    run(env, flags, &["timeout", "3", "wget", "-q", "-O", "-", url])
}

const HTTPD: &str = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && \
                     exec httpd -f -p 80 -h /www";

#[test]
fn user_network_resolves_names_and_aliases_internal_has_no_egress() {
    in_test_host(
        "user_network_resolves_names_and_aliases_internal_has_no_egress",
        |env| {
            let before = snapshot();
            bok(
                env,
                &["network", "create", "--subnet", "10.89.7.0/24", "app"],
            );
            bok(env, &["network", "create", "--internal", "sealed"]);
            run_d(
                env,
                &["--name", "web", "--network", "app", "--network-alias", "db"],
                &["sleep", "300"],
            );
            let n = &inspect(env, "web")["NetworkSettings"]["Networks"]["app"];
            let ip = n["IPAddress"].as_str().unwrap().to_string();
            assert!(ip.starts_with("10.89.7."), "{n}");
            assert_eq!(n["Gateway"], "10.89.7.1");
            assert_eq!(n["IPPrefixLen"], 24);
            assert!(
                n["MacAddress"].as_str().unwrap().starts_with("02:42:"),
                "{n}"
            );

            // By address, by name, by alias, from a second container on the network.
            let out = run(
                env,
                &["--network", "app"],
                &[
                    "sh",
                    "-c",
                    &format!(
                        "ping -c1 -W2 {ip} && ping -c1 -W2 web && ping -c1 -W2 db && \
                         nslookup web && cat /etc/resolv.conf"
                    ),
                ],
            );
            assert!(out.contains(&format!("PING web ({ip})")), "{out}");
            assert!(out.contains(&format!("PING db ({ip})")), "{out}");
            assert!(out.contains("nameserver 10.89.7.1"), "{out}");
            // The network's responder forwards other names (here, to the "internet").
            // Egress through the NAT from the user network; none from the internal one.
            let out = fetch(env, &["--network", "app"], &format!("http://{INTERNET}/"));
            assert_eq!(out, "hello from the internet\n");
            let sealed = berth(
                env,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "sealed",
                    &env.image,
                    "sh",
                    "-c",
                    // Not as PID 1, which SIGTERM from `timeout` could not stop.
                    &format!("timeout 2 wget -q -O - http://{INTERNET}/; rc=$?; exit $rc"),
                ],
            );
            assert!(!sealed.status.success(), "{}", text(&sealed.stdout));
            // An internal network's containers still reach each other.
            run_d(
                env,
                &["--name", "inner", "--network", "sealed"],
                &["sleep", "300"],
            );
            run(
                env,
                &["--network", "sealed"],
                &["ping", "-c1", "-W2", "inner"],
            );

            // connect / disconnect a running container.
            bok(
                env,
                &["network", "create", "--subnet", "10.89.8.0/24", "extra"],
            );
            bok(
                env,
                &["network", "connect", "--alias", "side", "extra", "web"],
            );
            let v = inspect(env, "web");
            let ip2 = v["NetworkSettings"]["Networks"]["extra"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(ip2.starts_with("10.89.8."), "{v}");
            let addrs = bok(env, &["exec", "web", "ip", "-4", "-o", "addr"]);
            assert!(addrs.contains(&format!("inet {ip2}/24")), "{addrs}");
            let out = run(
                env,
                &["--network", "extra"],
                &["ping", "-c1", "-W2", "side"],
            );
            assert!(out.contains(&format!("PING side ({ip2})")), "{out}");
            let net: serde_json::Value =
                serde_json::from_str(&bok(env, &["network", "inspect", "extra"])).unwrap();
            assert_eq!(net[0]["Containers"].as_object().unwrap().len(), 1, "{net}");
            bok(env, &["network", "disconnect", "extra", "web"]);
            let addrs = bok(env, &["exec", "web", "ip", "-4", "-o", "addr"]);
            assert!(!addrs.contains(&ip2), "{addrs}");
            assert!(inspect(env, "web")["NetworkSettings"]["Networks"]["extra"].is_null());
            bok(env, &["network", "rm", "extra"]);

            let rm = berth(env, &["network", "rm", "app"]);
            assert!(!rm.status.success(), "a network in use was removed");
            assert!(
                text(&rm.stderr).contains("active endpoints"),
                "{}",
                text(&rm.stderr)
            );
            bok(env, &["rm", "-f", "web", "inner"]);
            bok(env, &["network", "rm", "app", "sealed"]);
            assert_state(&before, "after rm and network rm");
        },
    );
}

#[test]
fn default_bridge_nat_etc_files_and_modes() {
    in_test_host("default_bridge_nat_etc_files_and_modes", |env| {
        // Out through the NAT: the server sees the test host's address.
        let out = fetch(env, &[], &format!("http://{INTERNET}/cgi-bin/ip"));
        assert_eq!(out.trim(), UPLINK);

        // /etc files on the default bridge: own address with the hostname, the host's
        // resolvers minus loopback ones (or --dns), --add-host, --dns-search.
        let out = run(
            env,
            &[
                "-h",
                "box",
                "--add-host",
                "db.test:192.0.2.9",
                "--dns",
                INTERNET,
                "--dns-search",
                "corp.test",
            ],
            &[
                "sh",
                "-c",
                "cat /etc/hosts /etc/resolv.conf; ip -4 -o addr show eth0; ip route",
            ],
        );
        assert!(out.contains("192.0.2.9\tdb.test"), "{out}");
        assert!(out.contains(&format!("nameserver {INTERNET}")), "{out}");
        assert!(out.contains("search corp.test"), "{out}");
        assert!(out.contains("default via 10.88.0.1"), "{out}");
        let ip = out
            .lines()
            .find(|l| l.contains("inet 10.88."))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("no address: {out}"))
            .to_string();
        assert!(out.contains(&format!("{ip}\tbox")), "{out}");
        let out = run(env, &[], &["cat", "/etc/resolv.conf"]);
        assert!(!out.contains("nameserver 127."), "{out}");

        // --ip and --mac-address.
        let out = run(
            env,
            &["--ip", "10.88.5.5", "--mac-address", "02:42:0a:58:05:55"],
            &[
                "sh",
                "-c",
                "ip -o addr show eth0; cat /sys/class/net/eth0/address",
            ],
        );
        assert!(out.contains("inet 10.88.5.5/16"), "{out}");
        assert!(out.contains("02:42:0a:58:05:55"), "{out}");

        // none: only lo, and it is up.
        let out = run(
            env,
            &["--network", "none"],
            &[
                "sh",
                "-c",
                "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo up",
            ],
        );
        assert_eq!(out, "lo\nup\n");

        // host: the host's interfaces and /etc/hosts.
        let out = run(env, &["--network", "host"], &["ls", "/sys/class/net"]);
        assert!(out.contains("uplink") && out.contains("berth0"), "{out}");
        let hosts = run(env, &["--network", "host"], &["cat", "/etc/hosts"]);
        assert_eq!(hosts, std::fs::read_to_string("/etc/hosts").unwrap());

        // container:NAME shares that container's interfaces.
        let id = run_d(env, &["--name", "a"], &["sleep", "300"]);
        let mac = inspect(env, &id)["NetworkSettings"]["Networks"]["bridge"]["MacAddress"]
            .as_str()
            .unwrap()
            .to_string();
        let out = run(
            env,
            &["--network", "container:a"],
            &["cat", "/sys/class/net/eth0/address"],
        );
        assert_eq!(out.trim(), mac);
        bok(env, &["rm", "-f", "a"]);

        // An --ipv6 network: a global IPv6 address and route besides the IPv4 ones.
        bok(env, &["network", "create", "--ipv6", "six"]);
        let id = run_d(
            env,
            &["--network", "six", "--name", "s6"],
            &["sleep", "300"],
        );
        let n = &inspect(env, &id)["NetworkSettings"]["Networks"]["six"];
        let ip6 = n["GlobalIPv6Address"].as_str().unwrap().to_string();
        assert!(ip6.starts_with("fd"), "{n}");
        let out = bok(
            env,
            &["exec", "s6", "ip", "-6", "-o", "addr", "show", "eth0"],
        );
        assert!(out.contains(&format!("inet6 {ip6}/")), "{out}");
        bok(env, &["rm", "-f", "s6"]);
        bok(env, &["network", "rm", "six"]);

        // ls, prune.
        bok(env, &["network", "create", "idle"]);
        let ls = bok(env, &["network", "ls"]);
        assert!(ls.contains(" bridge ") && ls.contains(" idle "), "{ls}");
        let pruned = bok(env, &["network", "prune", "-f"]);
        assert!(
            pruned.contains("idle") && !pruned.contains("bridge"),
            "{pruned}"
        );
        assert!(!bok(env, &["network", "ls"]).contains(" idle "));
        let rm = berth(env, &["network", "rm", "bridge"]);
        assert_eq!(rm.status.code(), Some(125));
    });
}

#[test]
fn published_ports_answer_everywhere_and_conflicts_are_refused() {
    in_test_host(
        "published_ports_answer_everywhere_and_conflicts_are_refused",
        |env| {
            run_d(
                env,
                &["--name", "web", "-h", "web", "-p", "8080:80"],
                &["sh", "-c", HTTPD],
            );
            // From the test host's loopback, from outside it, from another container.
            let body = wait_http("http://127.0.0.1:8080/", "");
            assert_eq!(body, "hello from web\n");
            let body = wait_http(&format!("http://{UPLINK}:8080/"), "ip netns exec internet");
            assert_eq!(body, "hello from web\n");
            let out = fetch(env, &[], &format!("http://{UPLINK}:8080/"));
            assert_eq!(out, "hello from web\n");
            assert_eq!(bok(env, &["port", "web"]), "80/tcp -> 0.0.0.0:8080\n");
            let ps = bok(env, &["ps"]);
            assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");
            let v = inspect(env, "web");
            assert_eq!(
                v["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
                "8080"
            );

            // -p 80: a random host port, shown by `berth port`.
            run_d(
                env,
                &["--name", "rnd", "-h", "rnd", "-p", "80"],
                &["sh", "-c", HTTPD],
            );
            let hp = bok(env, &["port", "rnd", "80/tcp"]);
            let port: u16 = hp.trim().rsplit(':').next().unwrap().parse().unwrap();
            assert!(port > 0 && port != 8080, "{hp}");
            let body = wait_http(&format!("http://127.0.0.1:{port}/"), "");
            assert_eq!(body, "hello from rnd\n");

            // A port in use, by a process or by another container: refused before starting.
            let _l = std::net::TcpListener::bind("0.0.0.0:8181").unwrap();
            for p in ["8181:80", "8080:80"] {
                let out = berth(
                    env,
                    &[
                        "run", "-d", "--name", "late", "-p", p, &env.image, "sleep", "300",
                    ],
                );
                assert_eq!(out.status.code(), Some(125), "{}", text(&out.stdout));
                let port = p.split(':').next().unwrap();
                let err = text(&out.stderr);
                assert!(err.contains(&format!("port {port}")), "{err}");
                let st = inspect(env, "late");
                assert_eq!(st["State"]["Running"], false, "{st}");
                bok(env, &["rm", "-f", "late"]);
            }
            // A stopped container holds no port (as with Docker); start connects it again.
            bok(env, &["stop", "-t", "0", "web"]);
            assert_eq!(bok(env, &["port", "web"]), "");
            run_d(
                env,
                &["--name", "web2", "-h", "web2", "-p", "8080:80"],
                &["sh", "-c", HTTPD],
            );
            assert_eq!(wait_http("http://127.0.0.1:8080/", ""), "hello from web2\n");
            let again = berth(env, &["start", "web"]);
            assert!(!again.status.success(), "started with its port taken");
            assert!(
                text(&again.stderr).contains("port 8080"),
                "{}",
                text(&again.stderr)
            );
            bok(env, &["rm", "-f", "web2"]);
            bok(env, &["start", "web"]);
            assert_eq!(wait_http("http://127.0.0.1:8080/", ""), "hello from web\n");
            bok(env, &["rm", "-f", "web", "rnd"]);
            let gone = sh("timeout 1 busybox wget -q -O - http://127.0.0.1:8080/");
            assert!(!gone.status.success());
        },
    );
}

#[test]
fn twenty_parallel_containers_get_distinct_addresses_and_rm_undoes_all() {
    in_test_host(
        "twenty_parallel_containers_get_distinct_addresses_and_rm_undoes_all",
        |env| {
            // The default bridge and its rules exist from the first container on.
            run(env, &[], &["true"]);
            let before = settled_snapshot();
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let mut c = env.cmd();
                    c.env_remove("BERTH_DEFAULT_NETWORK")
                        .args(["run", "-d", "--name", &format!("p{i}"), "-p"])
                        .arg(format!("{}:80", 9000 + i))
                        .args([&env.image, "sleep", "300"])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped());
                    c.spawn().unwrap()
                })
                .collect();
            for h in handles {
                let o = h.wait_with_output().unwrap();
                assert!(o.status.success(), "{}", text(&o.stderr));
            }
            let mut ips = HashSet::new();
            for i in 0..20 {
                let ip = ip_on(env, &format!("p{i}"), "bridge");
                assert!(ip.starts_with("10.88."), "{ip}");
                ips.insert(ip);
            }
            assert_eq!(ips.len(), 20, "{ips:?}");
            let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
            let mut a = vec!["rm", "-f"];
            a.extend(names.iter().map(String::as_str));
            bok(env, &a);
            assert_state(&before, "after removing 20 containers");
            let leases =
                std::fs::read_to_string(env.root.join("networks/ipam/bridge.json")).unwrap();
            assert!(!leases.contains("container_id"), "{leases}");
        },
    );
}

#[test]
fn killed_monitor_leaves_nothing_after_rm() {
    in_test_host("killed_monitor_leaves_nothing_after_rm", |env| {
        run(env, &[], &["true"]);
        let before = settled_snapshot();
        let id = run_d(env, &["--name", "k", "-p", "8090:80"], &["sleep", "300"]);
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(env.container_dir(&id).join("config.json")).unwrap(),
        )
        .unwrap();
        let monitor = rec["state"]["monitor_pid"].as_i64().unwrap() as i32;
        assert!(monitor > 0);
        assert_ne!(snapshot(), before);
        unsafe { libc::kill(monitor, libc::SIGKILL) };
        wait_dead(monitor);
        bok(env, &["ps", "-a"]);
        bok(env, &["rm", "-f", "k"]);
        assert_state(&before, "after kill -9 of the monitor and rm -f");
        let leases = std::fs::read_to_string(env.root.join("networks/ipam/bridge.json")).unwrap();
        assert!(!leases.contains(&id), "{leases}");
        assert!(!env.root.join("netns").join(&id).exists());

        // A container and its monitor killed, and its record lost (berth killed during rm):
        // the next `ps` reclaims the lease, the rules and the namespace.
        let id = run_d(env, &["--name", "k2", "-p", "8091:80"], &["sleep", "300"]);
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(env.container_dir(&id).join("config.json")).unwrap(),
        )
        .unwrap();
        for p in ["monitor_pid", "pid"] {
            let pid = rec["state"][p].as_i64().unwrap() as i32;
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_dead(pid);
        }
        bok(env, &["ps", "-a"]);
        // What berth's rm does before it removes the record, minus the network release (the
        // `ps` above found the container dead and unmounted its root already).
        let rootfs = env.run_dir(&id).join("bundle/rootfs");
        assert!(rootfs.is_dir(), "{}", rootfs.display());
        assert!(container_support::mounts_under(&rootfs).is_empty());
        std::fs::remove_dir_all(env.container_dir(&id)).unwrap();
        bok(env, &["ps", "-a"]);
        // The transient files of a container without a record go too.
        assert!(!env.run_dir(&id).exists());
        assert_state(&before, "after a lost record");
        let leases = std::fs::read_to_string(env.root.join("networks/ipam/bridge.json")).unwrap();
        assert!(!leases.contains(&id), "{leases}");
        assert!(!env.root.join("netns").join(&id).exists());
    });
}

/// Waits (up to 10 s) until a process sent SIGKILL is gone or a zombie: the signal is
/// delivered asynchronously, and berth must not be asked about it before it died.
fn wait_dead(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s)
                if !s
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z')) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
    panic!("process {pid} did not die after SIGKILL");
}

/// Pushes the busybox image with `ExposedPorts` to the test registry; returns its reference.
fn push_exposed(env: &Env, ports: &[&str]) -> String {
    let layout = env.root.with_file_name("exposed-layout");
    berth_testutil::fixtures::exposed_ports_layout(&layout, ports).unwrap();
    let registry = env.image.split('/').next().unwrap();
    let image = format!("{registry}/exposed:latest");
    berth_testutil::push(&layout, "latest", &image, &Default::default()).unwrap();
    bok(env, &["pull", "-q", &image]);
    image
}

/// `berth port` lines as (container port/proto, host address, host port).
fn port_lines(env: &Env, c: &str) -> Vec<(String, String, u16)> {
    bok(env, &["port", c])
        .lines()
        .map(|l| {
            let (ctr, host) = l.split_once(" -> ").unwrap_or_else(|| panic!("{l}"));
            let (addr, port) = host.rsplit_once(':').unwrap();
            (ctr.to_string(), addr.to_string(), port.parse().unwrap())
        })
        .collect()
}

#[test]
fn publish_all_and_ipv6_published_ports() {
    in_test_host("publish_all_and_ipv6_published_ports", |env| {
        // -P: every ExposedPorts entry of the image on a random host port of its own.
        let image = push_exposed(env, &["80/tcp", "81/tcp", "53/udp"]);
        bok(
            env,
            &[
                "run",
                "-d",
                "--name",
                "all",
                "-P",
                &image,
                "sh",
                "-c",
                "mkdir -p /www && echo port80 > /www/index.html && httpd -p 80 -h /www && \
                 mkdir -p /w81 && echo port81 > /w81/index.html && exec httpd -f -p 81 -h /w81",
            ],
        );
        let mut lines = port_lines(env, "all");
        lines.sort();
        let ctr: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(ctr, ["53/udp", "80/tcp", "81/tcp"], "{lines:?}");
        let hosts: HashSet<u16> = lines.iter().map(|l| l.2).collect();
        assert_eq!(hosts.len(), 3, "{lines:?}");
        for (c, addr, port) in &lines {
            assert_eq!(addr, "0.0.0.0");
            assert!(*port >= 1024, "{lines:?}");
            if let Some(n) = c.strip_suffix("/tcp") {
                let body = wait_http(&format!("http://127.0.0.1:{port}/"), "");
                assert_eq!(body, format!("port{n}\n"));
                let one = bok(env, &["port", "all", c]);
                assert_eq!(one, format!("0.0.0.0:{port}\n"));
            }
        }
        bok(env, &["rm", "-f", "all"]);

        // IPv6: the test host and the "internet" get global addresses.
        ok("ip addr add 2001:db8::1/64 dev uplink nodad && \
            ip -n internet addr add 2001:db8::2/64 dev eth0 nodad");
        // Refused with what to do: on a network without IPv6, and on IPv6 loopback.
        let no6 = berth(
            env,
            &[
                "run",
                "-d",
                "-p",
                "[2001:db8::1]:8091:80",
                &env.image,
                "true",
            ],
        );
        assert_eq!(no6.status.code(), Some(125));
        assert!(
            text(&no6.stderr).contains("--ipv6"),
            "{}",
            text(&no6.stderr)
        );
        bok(env, &["network", "create", "--ipv6", "six"]);
        let lo6 = berth(
            env,
            &[
                "run",
                "-d",
                "--network",
                "six",
                "-p",
                "[::1]:8090:80",
                &env.image,
                "true",
            ],
        );
        assert_eq!(lo6.status.code(), Some(125));
        assert!(
            text(&lo6.stderr).contains("IPv6 loopback"),
            "{}",
            text(&lo6.stderr)
        );
        for c in berth(env, &["ps", "-aq"]).stdout.split(|b| *b == b'\n') {
            if !c.is_empty() {
                bok(env, &["rm", "-f", &text(c)]);
            }
        }

        // On all addresses (both families) and on one IPv6 address.
        run_d(
            env,
            &[
                "--network",
                "six",
                "--name",
                "w6",
                "-h",
                "w6",
                "-p",
                "8088:80",
            ],
            &["sh", "-c", HTTPD],
        );
        run_d(
            env,
            &[
                "--network",
                "six",
                "--name",
                "one6",
                "-h",
                "one6",
                "-p",
                "[2001:db8::1]:8089:80",
            ],
            &["sh", "-c", HTTPD],
        );
        let mut lines = port_lines(env, "w6");
        lines.sort();
        assert_eq!(
            lines,
            [
                ("80/tcp".to_string(), "0.0.0.0".to_string(), 8088),
                ("80/tcp".to_string(), "[::]".to_string(), 8088)
            ]
        );
        assert_eq!(
            bok(env, &["port", "one6"]),
            "80/tcp -> [2001:db8::1]:8089\n"
        );
        let ps = bok(env, &["ps"]);
        assert!(ps.contains("[::]:8088->80/tcp"), "{ps}");
        // From the test host, from outside it, and from another container (hairpin).
        for (url, prefix) in [
            ("http://[2001:db8::1]:8088/", ""),
            ("http://[2001:db8::1]:8088/", "ip netns exec internet"),
            ("http://127.0.0.1:8088/", ""),
        ] {
            assert_eq!(wait_http(url, prefix), "hello from w6\n", "{prefix} {url}");
        }
        assert_eq!(
            wait_http("http://[2001:db8::1]:8089/", "ip netns exec internet"),
            "hello from one6\n"
        );
        let out = fetch(env, &["--network", "six"], "http://[2001:db8::1]:8088/");
        assert_eq!(out, "hello from w6\n");
        // Only that address: not on the host's IPv4 ones.
        let v4 = sh("timeout 2 busybox wget -q -O - http://127.0.0.1:8089/");
        assert!(!v4.status.success());
        bok(env, &["rm", "-f", "w6", "one6"]);
        let gone = sh("timeout 2 busybox wget -q -O - http://[2001:db8::1]:8088/");
        assert!(!gone.status.success());
        bok(env, &["network", "rm", "six"]);
    });
}

#[test]
fn connect_before_start_hosts_follow_and_container_mode_hostname() {
    in_test_host(
        "connect_before_start_hosts_follow_and_container_mode_hostname",
        |env| {
            bok(
                env,
                &["network", "create", "--subnet", "10.89.9.0/24", "one"],
            );
            bok(
                env,
                &["network", "create", "--subnet", "10.89.10.0/24", "two"],
            );
            // A created, never started container: the endpoint is recorded, set up at start.
            bok(
                env,
                &[
                    "create", "--name", "cc", "-h", "cc", &env.image, "sleep", "300",
                ],
            );
            bok(env, &["network", "connect", "--alias", "ali", "one", "cc"]);
            let v = inspect(env, "cc");
            assert!(v["NetworkSettings"]["Networks"]["one"].is_object(), "{v}");
            let again = berth(env, &["network", "connect", "one", "cc"]);
            assert!(!again.status.success(), "connected twice");
            bok(env, &["start", "cc"]);
            let ip1 = ip_on(env, "cc", "one");
            assert!(ip1.starts_with("10.89.9."), "{ip1}");
            let addrs = bok(env, &["exec", "cc", "ip", "-4", "-o", "addr"]);
            assert!(addrs.contains(&format!("inet {ip1}/24")), "{addrs}");
            assert!(addrs.contains("inet 10.88."), "{addrs}");
            let hosts = bok(env, &["exec", "cc", "cat", "/etc/hosts"]);
            assert!(hosts.contains(&format!("{ip1}\tcc ali\n")), "{hosts}");
            let out = run(env, &["--network", "one"], &["ping", "-c1", "-W2", "ali"]);
            assert!(out.contains(&format!("PING ali ({ip1})")), "{out}");

            // Running: /etc/hosts gains the new address and aliases, and loses them again.
            bok(env, &["network", "connect", "--alias", "deux", "two", "cc"]);
            let ip2 = ip_on(env, "cc", "two");
            let hosts = bok(env, &["exec", "cc", "cat", "/etc/hosts"]);
            assert!(hosts.contains(&format!("{ip2}\tcc deux\n")), "{hosts}");
            bok(env, &["network", "disconnect", "two", "cc"]);
            let hosts = bok(env, &["exec", "cc", "cat", "/etc/hosts"]);
            assert!(!hosts.contains(&ip2), "{hosts}");
            assert!(hosts.contains(&format!("{ip1}\tcc ali\n")), "{hosts}");

            // The connection outlives a restart; the disconnection too.
            bok(env, &["stop", "-t", "0", "cc"]);
            bok(env, &["start", "cc"]);
            let v = inspect(env, "cc");
            let nets = v["NetworkSettings"]["Networks"].as_object().unwrap();
            let mut names: Vec<&String> = nets.keys().collect();
            names.sort();
            assert_eq!(names, ["bridge", "one"], "{v}");
            let out = run(env, &["--network", "one"], &["ping", "-c1", "-W2", "ali"]);
            assert!(out.contains("PING ali (10.89.9."), "{out}");

            // disconnect before the first start: it never joins.
            bok(env, &["create", "--name", "cd", &env.image, "sleep", "300"]);
            bok(env, &["network", "connect", "two", "cd"]);
            bok(env, &["network", "disconnect", "two", "cd"]);
            let lone = berth(env, &["network", "disconnect", "two", "cd"]);
            assert!(!lone.status.success());
            bok(env, &["start", "cd"]);
            let v = inspect(env, "cd");
            assert!(v["NetworkSettings"]["Networks"]["two"].is_null(), "{v}");
            let addrs = bok(env, &["exec", "cd", "ip", "-4", "-o", "addr"]);
            assert!(!addrs.contains("10.89.10."), "{addrs}");

            // --network container:NAME: that container's network, hostname and /etc files;
            // flags that would change them are refused, as Docker refuses them.
            let ip1 = ip_on(env, "cc", "one");
            let out = run(
                env,
                &["--network", "container:cc"],
                &[
                    "sh",
                    "-c",
                    "hostname; cat /etc/hostname; echo $HOSTNAME; cat /etc/hosts; ip -4 -o addr",
                ],
            );
            assert!(out.starts_with("cc\ncc\ncc\n"), "{out}");
            assert!(out.contains(&format!("{ip1}\tcc ali")), "{out}");
            assert!(out.contains(&format!("inet {ip1}/24")), "{out}");
            for flags in [
                ["-h", "other"],
                ["--dns", "192.0.2.1"],
                ["--add-host", "x:192.0.2.1"],
            ] {
                let mut a = vec!["run", "--rm", "--network", "container:cc"];
                a.extend(flags);
                a.extend([env.image.as_str(), "true"]);
                let o = berth(env, &a);
                assert_eq!(o.status.code(), Some(125), "{flags:?}");
                assert!(
                    text(&o.stderr).contains("conflicting options"),
                    "{}",
                    text(&o.stderr)
                );
            }
            bok(env, &["rm", "-f", "cc", "cd"]);
            bok(env, &["network", "rm", "one", "two"]);
        },
    );
}

/// The MSS of the test host's TCP connection to `127.0.0.1:port` (`ss`'s `mss:N`).
fn mss_to_local_port(port: u16) -> u32 {
    let out = ok(&format!("ss -tinH state established dst 127.0.0.1:{port}"));
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("mss:"))
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no connection to port {port}: {out}"))
}

/// A running container's eth0 MTU and the `mtu` of its IPv4 default route (None: none), read
/// with the test host's iproute2 in the container's namespace (busybox's `ip` leaves route MTUs
/// out).
fn container_mtus(env: &Env, id: &str) -> (u32, Option<u32>) {
    let ns = env.root.join("netns").join(id);
    let out = ok(&format!(
        "nsenter --net={} sh -c 'ip -o link show eth0; ip -4 route'",
        ns.display()
    ));
    let after = |line: &str, key: &str| -> Option<u32> {
        let mut w = line.split_whitespace();
        w.find(|x| *x == key)?;
        w.next().and_then(|v| v.parse().ok())
    };
    let mut lines = out.lines();
    let link = after(lines.next().unwrap_or_default(), "mtu").expect("eth0's MTU");
    let mut route = None;
    for l in lines {
        if l.starts_with("default ") {
            route = after(l, "mtu");
        } else {
            assert!(!l.contains(" mtu "), "an on-link route with an MTU: {out}");
        }
    }
    (link, route)
}

#[test]
fn host_local_mtu_by_default_and_docker_mtu_on_request() {
    in_test_host(
        "host_local_mtu_by_default_and_docker_mtu_on_request",
        |env| {
            // The "internet" takes large packets: only the test host's uplink limits the path.
            ok("ip -n internet link set eth0 mtu 65520");
            let net_options = |net: &str| {
                let v: serde_json::Value =
                    serde_json::from_str(&bok(env, &["network", "inspect", net])).unwrap();
                v[0]["Options"].clone()
            };

            // The default bridge: 65520 on the link, 1500 on the default route (the test host
            // has no default route of its own).
            let web = run_d(
                env,
                &["--name", "web", "-h", "web", "-p", "8080:80"],
                &["sh", "-c", HTTPD],
            );
            assert_eq!(container_mtus(env, &web), (65520, Some(1500)));
            let o = net_options("bridge");
            assert_eq!(o["berth.network.bridge.mtu"], "65520", "{o}");
            assert_eq!(o["berth.network.route.mtu"], "1500", "{o}");
            assert!(o.get("com.docker.network.driver.mtu").is_none(), "{o}");
            // The published port from the host's 127.0.0.1: large segments.
            assert_eq!(wait_http("http://127.0.0.1:8080/", ""), "hello from web\n");
            let c = std::net::TcpStream::connect("127.0.0.1:8080").unwrap();
            let mss = mss_to_local_port(8080);
            assert!(mss > 9000, "MSS {mss}");
            drop(c);
            // Out through the NAT with the route MTU in place.
            let out = fetch(env, &[], &format!("http://{INTERNET}/cgi-bin/ip"));
            assert_eq!(out.trim(), UPLINK);

            // A default route through an uplink with MTU 1400: containers started from now on
            // carry 1400 on their default route.
            ok(&format!(
                "ip link set uplink mtu 1400 && ip route add default via {INTERNET} dev uplink"
            ));
            let id = run_d(env, &["--name", "narrow"], &["sleep", "300"]);
            assert_eq!(container_mtus(env, &id), (65520, Some(1400)));
            assert_eq!(net_options("bridge")["berth.network.route.mtu"], "1400");
            let page = fetch(env, &[], &format!("http://{INTERNET}/"));
            assert_eq!(page, "hello from the internet\n");
            // Containers still reach each other over the bridge.
            let web_ip = ip_on(env, "web", "bridge");
            let body = bok(
                env,
                &[
                    "exec",
                    "narrow",
                    "wget",
                    "-q",
                    "-O",
                    "-",
                    &format!("http://{web_ip}/"),
                ],
            );
            assert_eq!(body, "hello from web\n");

            // -o mtu=1500: Docker's layout, that MTU everywhere and no route MTU.
            bok(env, &["network", "create", "-o", "mtu=1500", "docker"]);
            let id = run_d(
                env,
                &["--network", "docker", "--name", "d"],
                &["sleep", "300"],
            );
            assert_eq!(container_mtus(env, &id), (1500, None));
            let o = net_options("docker");
            assert_eq!(o["com.docker.network.driver.mtu"], "1500", "{o}");
            assert!(o.get("berth.network.route.mtu").is_none(), "{o}");
            let out = fetch(
                env,
                &["--network", "docker"],
                &format!("http://{INTERNET}/cgi-bin/ip"),
            );
            assert_eq!(out.trim(), UPLINK);

            bok(env, &["rm", "-f", "web", "narrow", "d"]);
            bok(env, &["network", "rm", "docker"]);
        },
    );
}

/// berth on a second root (`root`), with the same settings as [`berth`].
fn berth_at(env: &Env, root: &std::path::Path, args: &[&str]) -> Output {
    let _ = env;
    let mut c = Command::new(container_support::BERTH);
    container_support::set_runtime(&mut c);
    c.arg("--root").arg(root).stdin(Stdio::null());
    c.env_remove("BERTH_DEFAULT_NETWORK")
        .env("BERTH_DNS_UPSTREAMS", INTERNET)
        .args(args)
        .output()
        .unwrap()
}

/// Removes every container of a second root, even when the test fails.
struct RootGuard<'a> {
    env: &'a Env,
    root: std::path::PathBuf,
}

impl Drop for RootGuard<'_> {
    fn drop(&mut self) {
        let ids = berth_at(self.env, &self.root, &["ps", "-aq", "--no-trunc"]);
        for id in text(&ids.stdout).split_whitespace() {
            let _ = berth_at(self.env, &self.root, &["rm", "-f", id]);
        }
        let _ = berth_at(self.env, &self.root, &["network", "prune", "-f"]);
    }
}

#[test]
fn subnets_avoid_the_host_and_other_roots() {
    in_test_host("subnets_avoid_the_host_and_other_roots", |env| {
        // A host bridge on 10.89.0.1/24 and a host route over the default network's subnet.
        ok(
            "ip link add hostbr type bridge && ip addr add 10.89.0.1/24 dev hostbr && \
            ip link set hostbr up && ip link add d0 type veth peer name d0p && ip link set d0p up && ip link set d0 up && \
            ip route add 10.88.0.0/16 dev d0",
        );
        let subnet = |root: &std::path::Path, net: &str| -> String {
            let o = berth_at(env, root, &["network", "inspect", net]);
            let v: serde_json::Value = serde_json::from_str(&succeeded("inspect", o)).unwrap();
            v[0]["IPAM"]["Config"][0]["Subnet"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let root2 = env.root.with_file_name("root2");
        let _guard = RootGuard {
            env,
            root: root2.clone(),
        };
        succeeded(
            "pull on the second root",
            berth_at(env, &root2, &["pull", "-q", &env.image]),
        );
        bok(env, &["network", "create", "lan"]);
        succeeded(
            "network create on the second root",
            berth_at(env, &root2, &["network", "create", "lan"]),
        );
        let (s1, s2) = (subnet(&env.root, "lan"), subnet(&root2, "lan"));
        assert_ne!(s1, "10.89.0.0/24");
        assert_ne!(s2, "10.89.0.0/24");
        assert_ne!(s1, s2);
        // The default network avoids the route too.
        let d = subnet(&env.root, "bridge");
        assert!(!d.starts_with("10.88."), "{d}");
        let out = run(env, &[], &["ip", "-4", "-o", "addr", "show", "eth0"]);
        assert!(!out.contains(" 10.88."), "{out}");

        // Name lookups work on both roots' networks at once.
        for (root, name) in [(&env.root, "one"), (&root2, "two")] {
            succeeded(
                "run -d",
                berth_at(
                    env,
                    root,
                    &[
                        "run",
                        "-d",
                        "--name",
                        name,
                        "--network",
                        "lan",
                        &env.image,
                        "sleep",
                        "60",
                    ],
                ),
            );
        }
        for (root, name) in [(&env.root, "one"), (&root2, "two")] {
            let o = berth_at(
                env,
                root,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "lan",
                    &env.image,
                    "nslookup",
                    name,
                ],
            );
            let out = succeeded(&format!("nslookup {name}"), o);
            assert!(out.contains("Name:"), "{out}");
        }

        // An explicit subnet that overlaps the host is refused, naming what it overlaps.
        let o = berth(
            env,
            &["network", "create", "--subnet", "10.88.1.0/24", "bad"],
        );
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(err.contains("route 10.88.0.0/16 dev d0"), "{err}");
        let o = berth(
            env,
            &["network", "create", "--subnet", "10.89.0.128/25", "bad"],
        );
        let err = text(&o.stderr);
        assert!(err.contains("10.89.0.1/24 on hostbr"), "{err}");
    });
}

#[test]
fn last_container_of_a_user_network_goes_at_once() {
    in_test_host("last_container_of_a_user_network_goes_at_once", |env| {
        bok(env, &["network", "create", "quick"]);
        // The first run also makes the bridge and the rules.
        run(env, &["--network", "quick"], &["true"]);
        for _ in 0..3 {
            let t = Instant::now();
            run(env, &["--network", "quick"], &["true"]);
            let took = t.elapsed();
            // A regression bound, not a benchmark: the responder's wait took 2 s.
            assert!(took < Duration::from_secs(1), "run --rm took {took:?}");
        }
        // A listing meanwhile does not wait for the network's lock.
        let mut c = env.cmd();
        c.env_remove("BERTH_DEFAULT_NETWORK").args([
            "run",
            "--rm",
            "--network",
            "quick",
            &env.image,
            "sleep",
            "0.3",
        ]);
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut slowest = Duration::ZERO;
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            let t = Instant::now();
            bok(env, &["ps", "-a"]);
            slowest = slowest.max(t.elapsed());
            assert!(start.elapsed() < Duration::from_secs(20));
        }
        assert!(child.wait().unwrap().success());
        assert!(slowest < Duration::from_secs(1), "ps -a took {slowest:?}");
        // No responder is left, and none is a zombie of a berth command.
        let ps = ok("ps -eo stat,args");
        assert!(
            !ps.lines().any(|l| l.contains("__dns")),
            "responders left: {ps}"
        );
    });
}

//! Bridge networks end to end, each test inside its own private test host (see common/).

mod common;

use std::collections::HashSet;
use std::net::IpAddr;

use berth_net::{connect, disconnect, gc, parse_publish, ConnectOptions, NetworkOptions};
use common::*;

/// Not a test: the entry point of the DNS responders the tests start.
#[test]
fn dns_child() {
    dns_child_entry();
}

/// Not a test: a separate process connecting one container (as concurrent `berth run`s do).
#[test]
fn connect_child() {
    let Ok(spec) = std::env::var("BERTH_NET_CONNECT_CHILD") else {
        return;
    };
    let v: Vec<&str> = spec.split(',').collect();
    let store = berth_net::NetStore::open(std::path::Path::new(v[0]))
        .unwrap()
        .with_dns_command(dns_command());
    let a = connect(
        &store,
        v[1],
        v[2],
        v[2],
        std::path::Path::new(v[3]),
        &Default::default(),
    )
    .unwrap();
    println!("IP={}", a.ip);
}

fn publish(specs: &[&str]) -> ConnectOptions {
    ConnectOptions {
        ports: specs
            .iter()
            .flat_map(|s| parse_publish(s).unwrap())
            .collect(),
        ..Default::default()
    }
}

fn user_net(h: &TestHost, name: &str, internal: bool) -> berth_net::Network {
    h.store
        .create(
            name,
            &NetworkOptions {
                internal,
                ..Default::default()
            },
        )
        .unwrap()
}

#[test]
fn containers_ping_each_other_and_resolve_names() {
    in_test_host("containers_ping_each_other_and_resolve_names", |h| {
        let net = user_net(h, "app", false);
        let (c1, c2) = (h.netns("c1"), h.netns("c2"));
        let a1 = connect(
            &h.store,
            "app",
            "id1aaaaaaaaaaaa",
            "web",
            &c1,
            &Default::default(),
        )
        .unwrap();
        let opts = ConnectOptions {
            aliases: vec!["db-alias".into()],
            ..Default::default()
        };
        let a2 = connect(&h.store, "app", "id2bbbbbbbbbbbb", "db", &c2, &opts).unwrap();
        assert_ne!(a1.ip, a2.ip);
        assert!(net.subnet.contains(a1.ip) && net.subnet.contains(a2.ip));
        assert_eq!(a1.dns_server, Some(IpAddr::V4(net.gateway)));
        assert_eq!(a1.ifname, "eth0");

        // Inside: eth0 with the address, lo up, a default route via the gateway.
        let addr = ok_in(
            &c1,
            "ip -4 addr show eth0; ip route; ip link show lo; ip link show eth0",
        );
        assert!(addr.contains(&format!("{}/{}", a1.ip, a1.prefix)), "{addr}");
        assert!(
            addr.contains(&format!("default via {}", net.gateway)),
            "{addr}"
        );
        assert!(addr.contains("LOOPBACK,UP"), "{addr}");
        assert!(addr.contains(&a1.mac), "{addr}");

        ok_in(&c1, &format!("busybox ping -c 1 -W 2 {}", a2.ip));
        ok_in(&c2, &format!("busybox ping -c 1 -W 2 {}", a1.ip));

        // Names and aliases through the network's DNS responder on the gateway.
        let gw = net.gateway;
        for (ns, name, want) in [
            (&c1, "db", a2.ip),
            (&c1, "db-alias", a2.ip),
            (&c2, "web", a1.ip),
            (&c2, "WEB", a1.ip),
        ] {
            let out = ok_in(ns, &format!("busybox nslookup -type=a {name} {gw}"));
            assert!(out.contains(&format!("Address: {want}")), "{name}: {out}");
        }
        // Ping by name, with the resolv.conf berth writes for the container.
        let resolv = berth_net::resolv_conf_for(
            std::slice::from_ref(&a1),
            "nameserver 127.0.0.53\n",
            &[],
            &[],
            &[],
        );
        assert_eq!(resolv, format!("nameserver {gw}\n"));

        // Over TCP too.
        let want = a2.ip;
        let got = berth_net::in_netns(&c1, move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Write};
            let mut q = vec![
                0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, b'd', b'b', 0, 0, 1, 0, 1,
            ];
            let mut msg = (q.len() as u16).to_be_bytes().to_vec();
            msg.append(&mut q);
            let mut c = std::net::TcpStream::connect((gw, 53))?;
            c.write_all(&msg)?;
            let mut len = [0u8; 2];
            c.read_exact(&mut len)?;
            let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
            c.read_exact(&mut r)?;
            Ok(r)
        })
        .unwrap()
        .unwrap();
        assert_eq!(&got[..2], &[0xab, 0xcd]);
        assert_eq!(&got[got.len() - 4..], &want.octets());

        // Containers use the responder through the resolv.conf berth writes: ping by name.
        let rc = h.root.path().join("resolv.conf");
        std::fs::write(&rc, &resolv).unwrap();
        let by_name = format!(
            "unshare -m sh -c \"mount --bind {} /etc/resolv.conf && busybox ping -c 1 -W 2 db\"",
            rc.display()
        );
        let out = ok_in(&c1, &by_name);
        assert!(out.contains(&a2.ip.to_string()), "{out}");

        // A name nobody has: not answered with an address.
        let o = run_in(&c1, &format!("busybox nslookup -type=a nosuch {gw}"));
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("Address: 10."),
            "{o:?}"
        );

        // After disconnect the name is gone, and the last disconnect stops the responder.
        disconnect(&h.store, "app", "id2bbbbbbbbbbbb").unwrap();
        let o = run_in(&c1, &format!("busybox nslookup -type=a db {gw}"));
        assert!(!String::from_utf8_lossy(&o.stdout).contains(&a2.ip.to_string()));
        assert!(h.store.dns_pid("app").is_some());
        disconnect(&h.store, "app", "id1aaaaaaaaaaaa").unwrap();
        assert!(h.store.dns_pid("app").is_none());
        h.store.remove("app").unwrap();
    });
}

#[test]
fn egress_goes_through_masquerade() {
    in_test_host("egress_goes_through_masquerade", |h| {
        let _inet = h.internet();
        let c1 = h.netns("c1");
        let a = connect(&h.store, "bridge", "id1", "c1", &c1, &Default::default()).unwrap();
        assert_eq!(a.gateway.to_string(), "10.88.0.1");
        assert!(ok("ip -d link show berth0").contains("bridge"));
        assert_eq!(ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
        let seen = ok_in(
            &c1,
            &format!("timeout 5 busybox wget -q -O - http://{INTERNET}/cgi-bin/ip"),
        );
        assert_eq!(
            seen.trim(),
            UPLINK_HOST,
            "the server must see the host's address"
        );
        let page = ok_in(
            &c1,
            &format!("timeout 5 busybox wget -q -O - http://{INTERNET}/"),
        );
        assert_eq!(page, "hello from the internet\n");
        disconnect(&h.store, "bridge", "id1").unwrap();
    });
}

#[test]
fn dns_forwards_other_names_upstream() {
    in_test_host("dns_forwards_other_names_upstream", |h| {
        let inet = h.internet();
        h.internet_dns(&inet, &[("www.example.test", "198.18.0.2")]);
        let net = user_net(h, "app", false);
        let c1 = h.netns("c1");
        connect(&h.store, "app", "id1", "web", &c1, &Default::default()).unwrap();
        let gw = net.gateway;
        let out = ok_in(
            &c1,
            &format!("busybox nslookup -type=a www.example.test {gw}"),
        );
        assert!(out.contains("Address: 198.18.0.2"), "{out}");
        // Its own names still come from the network.
        let out = ok_in(&c1, &format!("busybox nslookup -type=a web {gw}"));
        assert!(out.contains("Address: 10.89.0.2"), "{out}");
    });
}

#[test]
fn internal_network_has_no_egress() {
    in_test_host("internal_network_has_no_egress", |h| {
        let _inet = h.internet();
        user_net(h, "priv", true);
        let (c1, c2) = (h.netns("c1"), h.netns("c2"));
        let a1 = connect(&h.store, "priv", "id1", "c1", &c1, &Default::default()).unwrap();
        connect(&h.store, "priv", "id2", "c2", &c2, &Default::default()).unwrap();
        ok_in(&c2, &format!("busybox ping -c 1 -W 2 {}", a1.ip));
        let o = run_in(
            &c1,
            &format!("timeout 3 busybox wget -q -O - http://{INTERNET}/"),
        );
        assert!(
            !o.status.success(),
            "an internal network reached the internet"
        );
        // Publishing on an internal network is refused.
        let opts = publish(&["8080:80"]);
        let c3 = h.netns("c3");
        assert!(connect(&h.store, "priv", "id3", "c3", &c3, &opts).is_err());
    });
}

#[test]
fn published_ports_from_localhost_outside_and_containers() {
    in_test_host(
        "published_ports_from_localhost_outside_and_containers",
        |h| {
            let inet = h.internet();
            user_net(h, "app", false);
            let (srv, cli) = (h.netns("srv"), h.netns("cli"));
            let www = h.root.path().join("site");
            std::fs::create_dir_all(&www).unwrap();
            std::fs::write(www.join("index.html"), "container page\n").unwrap();
            let opts = publish(&["8080:80", "127.0.0.1::80"]);
            let a = connect(&h.store, "app", "srvid", "srv", &srv, &opts).unwrap();
            let random = a.ports[1].host_port;
            assert_ne!(random, 0);
            assert_eq!(a.ports[0].to_string(), "80/tcp -> 0.0.0.0:8080");
            spawn_in(
                &srv,
                &format!("busybox httpd -f -p 80 -h {}", www.display()),
            );
            wait_port(&srv, "127.0.0.1", 80);
            let get = |ns: Option<&std::path::Path>, url: String| -> String {
                let cmd = format!("timeout 5 busybox wget -q -O - {url}");
                match ns {
                    Some(ns) => ok_in(ns, &cmd),
                    None => ok(&cmd),
                }
            };
            // From the host itself: loopback and its own external address.
            assert_eq!(
                get(None, "http://127.0.0.1:8080/".into()),
                "container page\n"
            );
            assert_eq!(
                get(None, format!("http://127.0.0.1:{random}/")),
                "container page\n"
            );
            assert_eq!(
                get(None, format!("http://{UPLINK_HOST}:8080/")),
                "container page\n"
            );
            // From outside the host.
            assert_eq!(
                get(Some(&inet), format!("http://{UPLINK_HOST}:8080/")),
                "container page\n"
            );
            // From another container (hairpin through the host's address and the gateway).
            connect(&h.store, "app", "cliid", "cli", &cli, &Default::default()).unwrap();
            assert_eq!(
                get(Some(&cli), format!("http://{UPLINK_HOST}:8080/")),
                "container page\n"
            );
            assert!(ok(&format!("ip -d link show {}", a.host_ifname)).contains("hairpin on"));
            assert_eq!(
                get(Some(&srv), format!("http://{UPLINK_HOST}:8080/")),
                "container page\n"
            );

            // route_localnet does not open the host's loopback services to containers: a
            // container routing 127.0.0.1 through its gateway reaches nothing (a UDP probe, since
            // TCP could not complete its handshake anyway).
            let probe = std::net::UdpSocket::bind("127.0.0.1:53").unwrap();
            probe
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let gw = h.store.inspect("app").unwrap().gateway;
            ok_in(
                &cli,
                &format!(
                    "ip route del local 127.0.0.0/8 dev lo table local && \
                 ip route del local 127.0.0.1 dev lo table local && \
                 ip route add 127.0.0.1/32 via {gw} dev eth0"
                ),
            );
            let _ = run_in(&cli, "timeout 2 busybox nslookup probe 127.0.0.1");
            let mut buf = [0u8; 512];
            let got = probe.recv_from(&mut buf);
            assert!(
                got.is_err(),
                "a container reached the host's loopback: {got:?}"
            );

            // A port already in use on the host is refused before anything is set up.
            let _busy = std::net::TcpListener::bind("0.0.0.0:9090").unwrap();
            let c3 = h.netns("c3");
            let mut opts = publish(&["9090:80"]);
            let e = connect(&h.store, "app", "id3", "c3", &c3, &opts).unwrap_err();
            assert_eq!(e.to_string(), "port 9090 is already in use on 0.0.0.0");
            // ... and so is one another container publishes already.
            opts = publish(&["8080:80"]);
            let e = connect(&h.store, "app", "id3", "c3", &c3, &opts).unwrap_err();
            assert_eq!(e.to_string(), "port 8080 is already in use on 0.0.0.0");
            assert_eq!(h.store.leases("app").unwrap().len(), 2);

            // After disconnect the port answers no more.
            disconnect(&h.store, "app", "srvid").unwrap();
            assert!(!sh("timeout 3 busybox wget -q -O - http://127.0.0.1:8080/")
                .status
                .success());
            assert!(!ok("nft list ruleset").contains("dport 8080"));
        },
    );
}

#[test]
fn parallel_connects_get_distinct_addresses() {
    in_test_host("parallel_connects_get_distinct_addresses", |h| {
        user_net(h, "many", false);
        let nss: Vec<_> = (0..20).map(|i| h.netns(&format!("p{i}"))).collect();
        // Ten connects from threads and ten from separate processes, all at once.
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (10..20)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args(["--exact", "connect_child", "--nocapture"])
                    .env_remove("BERTH_NET_TEST_HOST")
                    .env(
                        "BERTH_NET_CONNECT_CHILD",
                        format!(
                            "{},many,id{i},{}",
                            h.root.path().display(),
                            nss[i].display()
                        ),
                    )
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut atts: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = nss[..10]
                .iter()
                .enumerate()
                .map(|(i, ns)| {
                    let store = h.store.clone();
                    s.spawn(move || {
                        connect(
                            &store,
                            "many",
                            &format!("id{i}"),
                            &format!("c{i}"),
                            ns,
                            &Default::default(),
                        )
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        let mut child_ips = Vec::new();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            let text = String::from_utf8_lossy(&out.stdout);
            let ip = text
                .lines()
                .find_map(|l| l.strip_prefix("IP="))
                .unwrap_or_else(|| panic!("no address from a child: {text}"));
            child_ips.push(ip.parse::<std::net::Ipv4Addr>().unwrap());
        }
        let leases = h.store.leases("many").unwrap();
        for i in 10..20 {
            let l = leases
                .iter()
                .find(|l| l.container_id == format!("id{i}"))
                .unwrap();
            assert!(child_ips.contains(&l.ip));
            atts.push(berth_net::Attachment {
                network: "many".into(),
                network_id: String::new(),
                ip: l.ip,
                prefix: 24,
                gateway: l.ip,
                ip6: None,
                prefix6: None,
                gateway6: None,
                mac: l.mac.clone(),
                ifname: l.ifname.clone(),
                host_ifname: l.host_ifname.clone(),
                dns_server: None,
                aliases: vec![],
                ports: vec![],
            });
        }
        let ips: HashSet<_> = atts.iter().map(|a| a.ip).collect();
        assert_eq!(ips.len(), 20, "{ips:?}");
        assert_eq!(h.store.leases("many").unwrap().len(), 20);
        // Every one of them really has its address.
        for (a, ns) in atts.iter().zip(&nss) {
            assert!(ok_in(ns, "ip -4 addr show eth0").contains(&a.ip.to_string()));
        }
        // Released on disconnect, but not handed out again right away: allocation goes on after
        // the last address given, as Docker's does.
        disconnect(&h.store, "many", "id0").unwrap();
        let again = connect(&h.store, "many", "idx", "cx", &nss[0], &Default::default()).unwrap();
        assert!(!ips.contains(&again.ip), "{} reused at once", again.ip);
    });
}

#[test]
fn teardown_restores_the_host() {
    in_test_host("teardown_restores_the_host", |h| {
        let _inet = h.internet();
        let before = snapshot();
        let v6 = NetworkOptions {
            ipv6: true,
            ..Default::default()
        };
        h.store.create("tmp", &v6).unwrap();
        let (c1, c2) = (h.netns("c1"), h.netns("c2"));
        let opts = publish(&["8081:80"]);
        connect(&h.store, "tmp", "id1", "c1", &c1, &opts).unwrap();
        connect(&h.store, "tmp", "id2", "c2", &c2, &Default::default()).unwrap();
        assert_ne!(snapshot(), before);
        disconnect(&h.store, "tmp", "id1").unwrap();
        disconnect(&h.store, "tmp", "id1").unwrap(); // idempotent
                                                     // c2 is killed -9 with its namespace: gc reclaims what it held.
        berth_net::remove_netns(&c2).unwrap();
        assert_eq!(gc(&h.store, &["id1".to_string()]).unwrap(), 1);
        assert!(h.store.leases("tmp").unwrap().is_empty());
        assert!(h.store.dns_pid("tmp").is_none());
        h.store.remove("tmp").unwrap();
        berth_net::remove_netns(&c1).unwrap();
        // A removed container's release leaves its veth to go with its namespace.
        user_net(h, "tmp2", false);
        let c3 = h.netns("c3");
        let a3 = connect(&h.store, "tmp2", "id3", "c3", &c3, &publish(&["8082:80"])).unwrap();
        assert_eq!(
            berth_net::release(&h.store, "id3").unwrap(),
            vec!["tmp2".to_string()]
        );
        assert!(!ok("nft list ruleset").contains("8082"));
        berth_net::remove_netns(&c3).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while sh(&format!("ip link show {}", a3.host_ifname))
            .status
            .success()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the veth outlived its namespace"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        h.store.remove("tmp2").unwrap();
        let after = snapshot();
        assert_eq!(before, after);
        // Disconnecting from a removed network is fine too.
        disconnect(&h.store, "tmp", "id1").unwrap();
    });
}

#[test]
fn static_address_mac_second_network_and_cli() {
    in_test_host("static_address_mac_second_network_and_cli", |h| {
        let out = berth_net::cli::create(
            &h.store,
            "front",
            &NetworkOptions {
                subnet: Some("172.30.0.0/24".into()),
                gateway: Some("172.30.0.254".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(out.trim().len(), 64);
        let e = h
            .store
            .create(
                "clash",
                &NetworkOptions {
                    subnet: Some("172.30.0.128/25".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("overlaps with network front"), "{e}");
        assert!(h.store.create("front", &Default::default()).is_err());
        assert!(h.store.create("bad name", &Default::default()).is_err());
        let back = NetworkOptions {
            mtu: Some(9000),
            ..Default::default()
        };
        h.store.create("back", &back).unwrap();

        let (c1, c2) = (h.netns("c1"), h.netns("c2"));
        let opts = ConnectOptions {
            ip: Some("172.30.0.10".parse().unwrap()),
            mac: Some("02:aa:bb:cc:dd:ee".into()),
            ..Default::default()
        };
        let a = connect(&h.store, "front", "id1", "one", &c1, &opts).unwrap();
        assert_eq!(a.ip.to_string(), "172.30.0.10");
        assert_eq!(a.gateway.to_string(), "172.30.0.254");
        let link = ok_in(&c1, "ip link show eth0; ip route");
        assert!(link.contains("02:aa:bb:cc:dd:ee"), "{link}");
        assert!(link.contains("default via 172.30.0.254"), "{link}");
        // The same address again, or one outside the subnet, is refused.
        let e = connect(&h.store, "front", "id2", "two", &c2, &opts).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        let bad = ConnectOptions {
            ip: Some("10.1.1.1".parse().unwrap()),
            ..Default::default()
        };
        assert!(connect(&h.store, "front", "id2", "two", &c2, &bad).is_err());
        assert!(connect(&h.store, "front", "id1", "one", &c1, &Default::default()).is_err());

        // A second network: eth1, and the default route stays on the first.
        let b = connect(&h.store, "back", "id1", "one", &c1, &Default::default()).unwrap();
        assert_eq!(b.ifname, "eth1");
        assert!(ok_in(&c1, "ip link show eth1").contains("mtu 9000"));
        assert!(ok_in(&c1, "ip link show eth0").contains("mtu 65520"));
        let routes = ok_in(&c1, "ip route");
        assert_eq!(routes.matches("default").count(), 1, "{routes}");
        // Networks are isolated from each other.
        let c = connect(&h.store, "back", "id2", "two", &c2, &Default::default()).unwrap();
        ok_in(&c1, &format!("busybox ping -c 1 -W 2 {}", c.ip));
        let d = h.netns("c3");
        connect(&h.store, "front", "id3", "three", &d, &Default::default()).unwrap();
        ok_in(&d, &format!("busybox ping -c 1 -W 2 {}", a.ip));
        assert!(!run_in(&d, &format!("busybox ping -c 1 -W 1 {}", c.ip))
            .status
            .success());

        // A full subnet says so (a /30 holds the gateway and one container).
        let tiny = NetworkOptions {
            subnet: Some("172.31.0.0/30".into()),
            ..Default::default()
        };
        h.store.create("tiny", &tiny).unwrap();
        let (t1, t2) = (h.netns("t1"), h.netns("t2"));
        connect(&h.store, "tiny", "t1", "t1", &t1, &Default::default()).unwrap();
        let e = connect(&h.store, "tiny", "t2", "t2", &t2, &Default::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no free address left in network tiny (172.31.0.0/30)"
        );
        disconnect(&h.store, "tiny", "t1").unwrap();
        h.store.remove("tiny").unwrap();

        // The command bodies.
        let ls = berth_net::cli::ls(&h.store, false, false).unwrap();
        for n in ["NETWORK ID", "bridge", "front", "back"] {
            assert!(ls.contains(n), "{ls}");
        }
        assert_eq!(
            berth_net::cli::ls(&h.store, true, false)
                .unwrap()
                .lines()
                .count(),
            3
        );
        let v: serde_json::Value =
            serde_json::from_str(&berth_net::cli::inspect(&h.store, &["front".into()]).unwrap())
                .unwrap();
        assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "172.30.0.0/24");
        assert_eq!(v[0]["Containers"]["id1"]["IPv4Address"], "172.30.0.10/24");
        let e = berth_net::cli::rm(&h.store, &["front".into()]).unwrap_err();
        assert!(e.to_string().contains("active endpoints"), "{e}");
        assert!(h.store.remove("bridge").is_err());
        for (n, id) in [
            ("front", "id1"),
            ("front", "id3"),
            ("back", "id1"),
            ("back", "id2"),
        ] {
            disconnect(&h.store, n, id).unwrap();
        }
        assert_eq!(
            berth_net::cli::prune(&h.store).unwrap(),
            "Deleted Networks:\nback\nfront\n"
        );
        assert!(h.store.inspect("front").is_err());
    });
}

#[test]
fn network_none_has_only_loopback() {
    in_test_host("network_none_has_only_loopback", |_h| {
        let p = std::path::PathBuf::from("/run/netns/none");
        berth_net::create_netns(&p).unwrap();
        let links = ok_in(&p, "ip -o link");
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(links.contains("lo: <LOOPBACK,UP"), "{links}");
        ok_in(&p, "busybox ping -c 1 -W 1 127.0.0.1");
        assert!(ok_in(&p, "ip route").trim().is_empty());
        berth_net::remove_netns(&p).unwrap();
        assert!(!p.exists());
        berth_net::remove_netns(&p).unwrap(); // idempotent
    });
}

#[test]
fn ipv6_network() {
    in_test_host("ipv6_network", |h| {
        let inet = h.internet();
        ok("ip addr add 2001:db8:1::1/64 dev uplink nodad && \
            ip -n internet addr add 2001:db8:1::2/64 dev eth0 nodad");
        let www = h.root.path().join("www");
        spawn_in(
            &inet,
            &format!("busybox httpd -f -p 8000 -h {}", www.display()),
        );
        let net = h
            .store
            .create(
                "v6",
                &NetworkOptions {
                    ipv6: true,
                    subnet6: Some("fd00:be:e7::/64".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(net.gateway6.unwrap().to_string(), "fd00:be:e7::1");
        let (c1, c2) = (h.netns("c1"), h.netns("c2"));
        let a1 = connect(&h.store, "v6", "id1", "one", &c1, &Default::default()).unwrap();
        let a2 = connect(&h.store, "v6", "id2", "two", &c2, &Default::default()).unwrap();
        assert_eq!(a1.ip6.unwrap().to_string(), "fd00:be:e7::2");
        assert_eq!(a2.ip6.unwrap().to_string(), "fd00:be:e7::3");
        let addrs = ok_in(&c1, "ip -6 addr show eth0; ip -6 route");
        assert!(addrs.contains("fd00:be:e7::2/64"), "{addrs}");
        assert!(addrs.contains("default via fd00:be:e7::1"), "{addrs}");
        // The host-local MTU on the link, the uplink's (1500: the test host has no default
        // route) on the IPv6 default route too.
        let default6 = ok_in(&c1, "ip -6 route show default");
        assert!(default6.contains(" mtu 1500 "), "{default6}");
        assert_eq!(link_mtu(Some(&c1), "eth0"), 65520);
        ok_in(
            &c1,
            &format!("busybox ping -6 -c 1 -W 2 {}", a2.ip6.unwrap()),
        );
        // Egress over IPv6 is masqueraded too.
        let seen = ok_in(
            &c1,
            "timeout 5 busybox wget -q -O - http://[2001:db8:1::2]:8000/cgi-bin/ip",
        );
        // (busybox httpd writes IPv6 clients in brackets)
        assert_eq!(seen.trim(), "[2001:db8:1::1]");
        // Names resolve to both families.
        let out = ok_in(
            &c2,
            &format!("busybox nslookup -type=aaaa one {}", net.gateway),
        );
        assert!(out.contains("fd00:be:e7::2"), "{out}");
        let v: serde_json::Value =
            serde_json::from_str(&berth_net::cli::inspect(&h.store, &["v6".into()]).unwrap())
                .unwrap();
        assert_eq!(v[0]["IPAM"]["Config"][1]["Subnet"], "fd00:be:e7::/64");
        assert_eq!(v[0]["Containers"]["id1"]["IPv6Address"], "fd00:be:e7::2/64");
        assert!(h
            .store
            .create(
                "v6b",
                &NetworkOptions {
                    ipv6: true,
                    subnet6: Some("fd00:be:e7::/64".into()),
                    ..Default::default()
                }
            )
            .is_err());
    });
}

#[test]
fn published_udp_port() {
    in_test_host("published_udp_port", |h| {
        user_net(h, "app", false);
        let c1 = h.netns("c1");
        let opts = publish(&["5353:53/udp"]);
        let a = connect(&h.store, "app", "id1", "dns", &c1, &opts).unwrap();
        // A DNS server in the container, asked through the published UDP port.
        h.dns_server_in(
            &c1,
            "ctr-dns",
            &a.ip.to_string(),
            &[("svc.test", "192.0.2.7")],
        );
        let q = [
            0x77, 0x01, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b's', b'v', b'c', 4, b't', b'e', b's',
            b't', 0, 0, 1, 0, 1,
        ];
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        s.send_to(&q, "127.0.0.1:5353").unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        assert_eq!(from.to_string(), "127.0.0.1:5353");
        assert_eq!(&buf[..2], &[0x77, 0x01]);
        assert_eq!(&buf[n - 4..n], &[192, 0, 2, 7]);
        // TCP on the same port number was not published.
        assert!(std::net::TcpStream::connect("127.0.0.1:5353").is_err());
    });
}

#[test]
fn published_ports_change_in_place_over_netlink() {
    in_test_host("published_ports_change_in_place_over_netlink", |h| {
        use berth_net::nft::{self, PortElem};
        let e = |port: u16| PortElem {
            host_ip: None,
            protocol: berth_net::Protocol::Tcp,
            host_port: port,
            ip: "10.88.0.5".parse().unwrap(),
            port: 80,
        };
        let e6 = PortElem {
            host_ip: Some("2001:db8::1".parse().unwrap()),
            protocol: berth_net::Protocol::Udp,
            host_port: 53,
            ip: "fd00::5".parse().unwrap(),
            port: 5353,
        };
        // No table yet: refused, nothing made.
        assert!(nft::update_ports(&[e(8080)], &[]).is_err());
        assert_eq!(ok("nft list ruleset"), "");
        // A network's table, then elements added and removed in place.
        let net = user_net(h, "n", false);
        nft::apply(&nft::render(&[(net, vec![])])).unwrap();
        nft::update_ports(&[e(8080), e(8081), e6.clone()], &[]).unwrap();
        let pub4 = ok("nft list map inet berth pub4");
        assert!(pub4.contains("tcp . 8080 : 10.88.0.5 . 80"), "{pub4}");
        assert!(pub4.contains("tcp . 8081 : 10.88.0.5 . 80"), "{pub4}");
        let pub6a = ok("nft list map inet berth pub6a");
        assert!(
            pub6a.contains("2001:db8::1 . udp . 53 : fd00::5 . 5353"),
            "{pub6a}"
        );
        nft::update_ports(&[e(8082)], &[e(8080), e6.clone()]).unwrap();
        let pub4 = ok("nft list map inet berth pub4");
        assert!(!pub4.contains("8080") && pub4.contains("8081"), "{pub4}");
        assert!(pub4.contains("8082"), "{pub4}");
        assert!(!ok("nft list map inet berth pub6a").contains("fd00::5"));
        // One failing part (an element that is not there) aborts the whole transaction.
        let err = nft::update_ports(&[e(8083)], &[e(8080)]).unwrap_err();
        assert!(err.to_string().contains("No such file"), "{err}");
        assert!(!ok("nft list map inet berth pub4").contains("8083"));
        ok("nft delete table inet berth");
    });
}

/// The MSS TCP uses on a connected socket (`TCP_MAXSEG`: the path MTU less the IP and TCP
/// headers and options).
fn maxseg(s: &std::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket and an int-sized buffer with its length.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
    v as u32
}

/// More than a TCP segment in any Ethernet frame, jumbo frames included (the MSS of a fresh
/// connection is also held to half the peer's window, ~32 KiB, so not all of the 65520 shows).
const LARGE_MSS: u32 = 9000;

/// A TCP connection to `addr` made from inside the namespace `ns`.
fn connect_from(ns: &std::path::Path, addr: &str) -> std::net::TcpStream {
    let addr = addr.to_string();
    berth_net::in_netns(ns, move || std::net::TcpStream::connect(addr))
        .unwrap()
        .unwrap_or_else(|e| panic!("connecting from {}: {e}", ns.display()))
}

/// Asserts the MSS of a TCP connection from `ns` to the "internet" is in `want`.
fn assert_mss_to_internet(ns: &std::path::Path, want: std::ops::RangeInclusive<u32>) {
    let m = maxseg(&connect_from(ns, &format!("{INTERNET}:80")));
    assert!(want.contains(&m), "MSS to the internet {m}, want {want:?}");
}

/// The MTU of a link, from `ip link show` inside `ns`, or on the test host.
fn link_mtu(ns: Option<&std::path::Path>, dev: &str) -> u32 {
    let out = match ns {
        Some(ns) => ok_in(ns, &format!("ip -o link show {dev}")),
        None => ok(&format!("ip -o link show {dev}")),
    };
    let mut w = out.split_whitespace();
    w.find(|x| *x == "mtu")
        .and_then(|_| w.next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no MTU for {dev}: {out}"))
}

/// The `mtu N` of the container's IPv4 default route (None: the route has no MTU of its own),
/// checking that its on-link subnet route has none.
fn route_mtus(ns: &std::path::Path) -> Option<u32> {
    let routes = ok_in(ns, "ip -4 route");
    let default = routes
        .lines()
        .find(|l| l.starts_with("default "))
        .unwrap_or_else(|| panic!("no default route: {routes}"));
    for l in routes.lines().filter(|l| !l.starts_with("default ")) {
        assert!(
            !l.contains(" mtu "),
            "an on-link route with an MTU: {routes}"
        );
    }
    let mut w = default.split_whitespace();
    w.find(|x| *x == "mtu")
        .map(|_| w.next().and_then(|m| m.parse().ok()).expect("mtu N"))
}

fn inspect_options(h: &TestHost, net: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&berth_net::cli::inspect(&h.store, &[net.into()]).unwrap()).unwrap();
    v[0]["Options"].clone()
}

#[test]
fn host_local_mtu_with_the_uplink_mtu_on_the_default_route() {
    in_test_host(
        "host_local_mtu_with_the_uplink_mtu_on_the_default_route",
        |h| {
            use std::net::{TcpListener, TcpStream};
            let inet = h.internet();
            // The "internet" takes large packets: only the test host's uplink limits the path.
            ok("ip -n internet link set eth0 mtu 65520");

            // No default route on the test host: the route MTU is Ethernet's 1500.
            let c1 = h.netns("c1");
            let a1 = connect(&h.store, "bridge", "id1", "c1", &c1, &publish(&["8080:80"])).unwrap();
            assert_eq!(link_mtu(Some(&c1), "eth0"), 65520);
            assert_eq!(link_mtu(None, &a1.host_ifname), 65520);
            assert_eq!(link_mtu(None, "berth0"), 65520);
            assert_eq!(route_mtus(&c1), Some(1500));
            let o = inspect_options(h, "bridge");
            assert_eq!(o["berth.network.bridge.mtu"], "65520", "{o}");
            assert_eq!(o["berth.network.route.mtu"], "1500", "{o}");
            assert!(o.get("com.docker.network.driver.mtu").is_none(), "{o}");

            // Traffic that stays on the host goes in large segments: the host to the published
            // port on 127.0.0.1, both ways.
            let srv = berth_net::in_netns(&c1, || TcpListener::bind("0.0.0.0:80"))
                .unwrap()
                .unwrap();
            let cli = TcpStream::connect("127.0.0.1:8080").unwrap();
            let (inside, from) = srv.accept().unwrap();
            assert_eq!(from.ip().to_string(), "10.88.0.1");
            assert!(maxseg(&cli) > LARGE_MSS, "host side MSS {}", maxseg(&cli));
            assert!(
                maxseg(&inside) > LARGE_MSS,
                "container MSS {}",
                maxseg(&inside)
            );
            // What leaves the host keeps 1500 (MSS 1460 less options), though both ends take
            // 65520, and it gets there through the NAT.
            assert_mss_to_internet(&c1, 1400..=1460);
            let seen = ok_in(
                &c1,
                &format!("timeout 5 busybox wget -q -O - http://{INTERNET}/cgi-bin/ip"),
            );
            assert_eq!(seen.trim(), UPLINK_HOST);

            // A default route through an uplink with MTU 1400: containers connected from now on
            // carry 1400 on their default route, and keep the large MTU between each other.
            ok(&format!(
                "ip link set uplink mtu 1400 && ip route add default via {INTERNET} dev uplink"
            ));
            let c2 = h.netns("c2");
            connect(&h.store, "bridge", "id2", "c2", &c2, &Default::default()).unwrap();
            assert_eq!(link_mtu(Some(&c2), "eth0"), 65520);
            assert_eq!(route_mtus(&c2), Some(1400));
            assert_eq!(
                inspect_options(h, "bridge")["berth.network.route.mtu"],
                "1400"
            );
            assert_mss_to_internet(&c2, 1300..=1360);
            let page = ok_in(
                &c2,
                &format!("timeout 5 busybox wget -q -O - http://{INTERNET}/"),
            );
            assert_eq!(page, "hello from the internet\n");
            let c2c = connect_from(&c2, &format!("{}:80", a1.ip));
            assert!(
                maxseg(&c2c) > LARGE_MSS,
                "container to container MSS {}",
                maxseg(&c2c)
            );
            drop(c2c);

            // `-o mtu=1500`: Docker's layout, that MTU everywhere and no route MTU.
            let d = NetworkOptions {
                mtu: Some(1500),
                ..Default::default()
            };
            let dn = h.store.create("docker", &d).unwrap();
            let c3 = h.netns("c3");
            connect(&h.store, "docker", "id3", "c3", &c3, &Default::default()).unwrap();
            assert_eq!(link_mtu(Some(&c3), "eth0"), 1500);
            assert_eq!(link_mtu(None, &dn.bridge), 1500);
            assert_eq!(route_mtus(&c3), None);
            let o = inspect_options(h, "docker");
            assert_eq!(o["com.docker.network.driver.mtu"], "1500", "{o}");
            assert!(o.get("berth.network.route.mtu").is_none(), "{o}");

            // A bridge an older berth made (MTU 1500, a container's veth on it at 1500): new
            // containers take its MTU while it has ports, so the bridge never mixes MTUs...
            // (`network create` makes the bridge now: it is made again as that berth made it.)
            let old = user_net(h, "old", false);
            ok(&format!(
                "ip link del {b} && ip link add {b} type bridge && ip addr add {gw}/24 dev {b} && \
                 ip link set {b} up && ip link add vold type veth peer name vold1 && \
                 ip link set vold master {b} && ip link set vold up",
                b = old.bridge,
                gw = old.gateway
            ));
            let c4 = h.netns("c4");
            connect(&h.store, "old", "id4", "c4", &c4, &Default::default()).unwrap();
            assert_eq!(link_mtu(Some(&c4), "eth0"), 1500);
            assert_eq!(route_mtus(&c4), Some(1400));
            ok_in(&c4, &format!("busybox ping -c 1 -W 2 {}", old.gateway));
            // ... and the host-local MTU once the old ports are gone.
            ok("ip link del vold");
            disconnect(&h.store, "old", "id4").unwrap();
            connect(&h.store, "old", "id5", "c4", &c4, &Default::default()).unwrap();
            assert_eq!(link_mtu(Some(&c4), "eth0"), 65520);
            assert_eq!(link_mtu(None, &old.bridge), 65520);
            ok_in(
                &c4,
                &format!("busybox ping -c 1 -W 2 -s 30000 {}", old.gateway),
            );
            let _ = inet;
        },
    );
}

#[test]
fn uplink_mtu_follows_the_hosts_default_route() {
    in_test_host("uplink_mtu_follows_the_hosts_default_route", |_h| {
        // No default route: Ethernet's.
        assert_eq!(berth_net::uplink_mtu().unwrap(), 1500);
        ok(
            "ip link add up1 mtu 1400 type veth peer name up1p mtu 1400 && \
            ip link add up2 mtu 1300 type veth peer name up2p mtu 1300 && \
            ip link set up1 up && ip link set up1p up && ip link set up2 up && \
            ip link set up2p up && ip addr add 192.0.2.1/24 dev up1 && \
            ip addr add 198.51.100.1/24 dev up2",
        );
        // The device of the default route.
        ok("ip route add default via 192.0.2.254 dev up1");
        assert_eq!(berth_net::uplink_mtu().unwrap(), 1400);
        // The route's own MTU where it is smaller.
        ok("ip route change default via 192.0.2.254 dev up1 mtu 1200");
        assert_eq!(berth_net::uplink_mtu().unwrap(), 1200);
        // A multipath route: its smallest device.
        ok("ip route replace default nexthop via 192.0.2.254 dev up1 \
            nexthop via 198.51.100.254 dev up2");
        assert_eq!(berth_net::uplink_mtu().unwrap(), 1300);
        // Several default routes: the one with the lowest metric.
        ok("ip route del default && \
            ip route add default via 198.51.100.254 dev up2 metric 20 && \
            ip route add default via 192.0.2.254 dev up1 metric 10");
        assert_eq!(berth_net::uplink_mtu().unwrap(), 1400);
    });
}

#[test]
fn subnets_avoid_what_the_namespace_holds() {
    in_test_host("subnets_avoid_what_the_namespace_holds", |h| {
        // A host bridge holding 10.89.0.1/24, and a route over the default network's subnet.
        ok(
            "ip link add hostbr type bridge && ip addr add 10.89.0.1/24 dev hostbr && \
            ip link set hostbr up",
        );
        ok("ip link add d0 type veth peer name d0p && ip link set d0p up && ip link set d0 up && ip route add 10.88.0.0/16 dev d0");
        let taken: berth_net::Subnet = "10.89.0.0/24".parse().unwrap();
        let lan1 = user_net(h, "lan1", false);
        assert_eq!(lan1.subnet.to_string(), "10.89.1.0/24");
        let def = h.store.default_bridge().unwrap();
        for s in ["10.88.0.0/16", "10.89.0.0/24", "10.89.1.0/24"] {
            assert!(!def.subnet.overlaps(&s.parse().unwrap()), "{}", def.subnet);
        }
        let c1 = h.netns("c1");
        let a = connect(&h.store, "bridge", "id1", "c1", &c1, &Default::default()).unwrap();
        assert!(def.subnet.contains(a.ip), "{a:?}");
        ok_in(&c1, &format!("busybox ping -c 1 -W 2 {}", def.gateway));

        // An explicit subnet that overlaps is refused, naming what it overlaps.
        let with = |s: &str| NetworkOptions {
            subnet: Some(s.into()),
            ..Default::default()
        };
        let err = h.store.create("lan2", &with("10.89.0.128/25")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("10.89.0.1/24 on hostbr"), "{msg}");
        let msg = h
            .store
            .create("lan2", &with("10.88.4.0/24"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("route 10.88.0.0/16 dev d0"), "{msg}");
        assert!(h.store.inspect("lan2").is_err());

        // A second berth root in the namespace sees the first one's bridges.
        let root2 = tempfile::tempdir().unwrap();
        let store2 = berth_net::NetStore::open(root2.path())
            .unwrap()
            .with_dns_command(dns_command());
        let other = store2.create("lan1", &Default::default()).unwrap();
        let def2 = store2.default_bridge().unwrap();
        for s in [taken, lan1.subnet, def.subnet, other.subnet] {
            assert!(
                !def2.subnet.overlaps(&s) || s == def2.subnet,
                "{}",
                def2.subnet
            );
        }
        assert!(!other.subnet.overlaps(&lan1.subnet) && !other.subnet.overlaps(&taken));
        assert!(!other.subnet.overlaps(&def.subnet) && !def2.subnet.overlaps(&def.subnet));
        assert_ne!(def2.bridge, def.bridge);
        store2.remove("lan1").unwrap();

        // Without the route, a third root's default network takes 10.88.0.0/16, on a bridge
        // of its own (`berth0` is the first root's); with the route back before any container
        // used it, it takes a free subnet again.
        ok("ip route del 10.88.0.0/16 dev d0");
        let root3 = tempfile::tempdir().unwrap();
        let store3 = berth_net::NetStore::open(root3.path()).unwrap();
        let def3 = store3.default_bridge().unwrap();
        assert_eq!(def3.subnet.to_string(), "10.88.0.0/16");
        assert!(def3.bridge.starts_with("br-"), "{}", def3.bridge);
        ok("ip route add 10.88.0.0/16 dev d0");
        let again = store3.default_bridge().unwrap();
        assert!(!again.subnet.overlaps(&def3.subnet), "{}", again.subnet);
        assert_eq!(again.id, def3.id);

        // The pools come from the root's daemon.json, as Docker's default-address-pools.
        std::fs::write(
            h.root.path().join("daemon.json"),
            r#"{"default-address-pools": [{"base": "172.30.0.0/16", "size": 24}]}"#,
        )
        .unwrap();
        ok("ip route add 172.30.0.0/24 dev d0");
        let lan3 = user_net(h, "lan3", false);
        assert_eq!(lan3.subnet.to_string(), "172.30.1.0/24");

        // A bridge gone (a reboot) whose subnet a route took meanwhile is not made again.
        ok(&format!(
            "ip link del {} && ip route add 172.30.1.0/24 dev d0",
            lan3.bridge
        ));
        let c2 = h.netns("c2");
        let err = connect(&h.store, "lan3", "id2", "c2", &c2, &Default::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("route 172.30.1.0/24 dev d0"), "{msg}");
        assert!(h.store.leases("lan3").unwrap().is_empty());
    });
}

#[test]
fn default_networks_of_two_roots_never_share_a_bridge() {
    in_test_host("default_networks_of_two_roots_never_share_a_bridge", |h| {
        // Both roots record their default network before either has a bridge (`network ls`).
        let root2 = tempfile::tempdir().unwrap();
        let store2 = berth_net::NetStore::open(root2.path()).unwrap();
        let d1 = h.store.default_bridge().unwrap();
        let d2 = store2.default_bridge().unwrap();
        assert_eq!((d1.subnet, &d1.bridge), (d2.subnet, &d2.bridge));
        let (c1, c2) = (h.netns("c1"), h.netns("c2"));
        let a1 = connect(&h.store, "bridge", "id1", "c1", &c1, &Default::default()).unwrap();
        // The second root finds berth0 taken by the first: its default network moves.
        let a2 = connect(&store2, "bridge", "id2", "c2", &c2, &Default::default()).unwrap();
        let d2 = store2.default_bridge().unwrap();
        assert_ne!(d2.bridge, d1.bridge);
        assert!(!d2.subnet.overlaps(&d1.subnet), "{}", d2.subnet);
        assert!(d2.subnet.contains(a2.ip) && d1.subnet.contains(a1.ip));
        ok_in(&c1, &format!("busybox ping -c 1 -W 2 {}", a1.gateway));
        ok_in(&c2, &format!("busybox ping -c 1 -W 2 {}", a2.gateway));
    });
}

//! Driver for bench/net.sh; run it only inside a private network namespace (the script does).
//!
//! net-bench connect-cost ROOT N      per-container cost: netns alone vs netns + connect/disconnect
//! net-bench setup ROOT NET C1 C2     network NET, containers at /run/netns/C1 and C2 (C1 publishes
//!                                    5201/tcp), prints "C1_IP C2_IP"
//! net-bench teardown ROOT NET C1 C2
//! net-bench __dns DIR NET            the DNS responder (as `berth __dns`)

use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_net::{
    connect, create_netns, disconnect, parse_publish, remove_netns, ConnectOptions, NetStore,
    NetworkOptions,
};

fn ns(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/netns/{name}"))
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| {
        a.get(i)
            .cloned()
            .unwrap_or_else(|| panic!("missing argument {i}"))
    };
    if arg(1) == "__dns" {
        berth_net::dns::dns_server_main(Path::new(&arg(2)), &arg(3));
    }
    let store = NetStore::open(Path::new(&arg(2))).expect("open store");
    match arg(1).as_str() {
        "connect-cost" => {
            let n: usize = arg(3).parse().unwrap();
            store.create("cost", &NetworkOptions::default()).unwrap();
            // Warm up: the bridge, rules and DNS responder exist after the first connect.
            let keep = ns("keep");
            create_netns(&keep).unwrap();
            connect(&store, "cost", "keep", "keep", &keep, &Default::default()).unwrap();
            let p = ns("bench");
            let t = Instant::now();
            for _ in 0..n {
                create_netns(&p).unwrap();
                remove_netns(&p).unwrap();
            }
            let base = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
            let t = Instant::now();
            let mut conn = 0.0;
            let mut disc = 0.0;
            for i in 0..n {
                create_netns(&p).unwrap();
                let id = format!("c{i}");
                let t1 = Instant::now();
                connect(&store, "cost", &id, &id, &p, &Default::default()).unwrap();
                let t2 = Instant::now();
                disconnect(&store, "cost", &id).unwrap();
                disc += t2.elapsed().as_secs_f64() * 1000.0;
                conn += (t2 - t1).as_secs_f64() * 1000.0;
                remove_netns(&p).unwrap();
            }
            let full = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
            let (conn, disc) = (conn / n as f64, disc / n as f64);
            // The container-removal path: release, then the namespace takes the veth with it.
            let t = Instant::now();
            for i in 0..n {
                create_netns(&p).unwrap();
                let id = format!("r{i}");
                connect(&store, "cost", &id, &id, &p, &Default::default()).unwrap();
                berth_net::release(&store, &id).unwrap();
                remove_netns(&p).unwrap();
            }
            let rel = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
            println!("netns only:                 {base:.2} ms/container");
            println!(
                "netns + connect + release:  {rel:.2} ms/container (network cost {:.2} ms)",
                rel - base
            );
            println!("netns + connect/disconnect: {full:.2} ms/container");
            println!(
                "  connect {conn:.2} ms, disconnect {disc:.2} ms; network cost {:.2} ms",
                full - base
            );
            disconnect(&store, "cost", "keep").unwrap();
            remove_netns(&keep).unwrap();
            store.remove("cost").unwrap();
        }
        "setup" => {
            let mtu = std::env::var("MTU")
                .ok()
                .filter(|m| !m.is_empty())
                .map(|m| m.parse().unwrap());
            let opts = NetworkOptions {
                mtu,
                ..Default::default()
            };
            store.create(&arg(3), &opts).unwrap();
            let (c1, c2) = (ns(&arg(4)), ns(&arg(5)));
            create_netns(&c1).unwrap();
            create_netns(&c2).unwrap();
            let opts = ConnectOptions {
                ports: parse_publish("5201:5201").unwrap(),
                ..Default::default()
            };
            let a1 = connect(&store, &arg(3), "c1", "c1", &c1, &opts).unwrap();
            let a2 = connect(&store, &arg(3), "c2", "c2", &c2, &Default::default()).unwrap();
            println!("{} {}", a1.ip, a2.ip);
        }
        "teardown" => {
            for (id, name) in [("c1", arg(4)), ("c2", arg(5))] {
                disconnect(&store, &arg(3), id).unwrap();
                remove_netns(&ns(&name)).unwrap();
            }
            store.remove(&arg(3)).unwrap();
        }
        other => panic!("unknown command {other}"),
    }
}

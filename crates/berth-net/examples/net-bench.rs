//! Driver for bench/net.sh; run it only inside a private network namespace (the script does).
//!
//! net-bench connect-cost ROOT N      per-container cost: netns alone vs netns + connect/disconnect
//! net-bench setup ROOT NET C1 C2     network NET (with MTU=N from the environment: `-o mtu=N`),
//!                                    containers at /run/netns/C1 and C2 (C1 publishes 5201/tcp on
//!                                    host port PORT, default 5201), prints "C1_IP C2_IP"
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
            let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
            let median = |mut v: Vec<f64>| {
                v.sort_by(|a, b| a.total_cmp(b));
                v[v.len() / 2]
            };
            let (mut base, mut rel, mut conn, mut disc) = (vec![], vec![], vec![], vec![]);
            let mut publ = vec![];
            for i in 0..n {
                // A container without network (--network none): namespace made and removed.
                let t = Instant::now();
                create_netns(&p).unwrap();
                remove_netns(&p).unwrap();
                base.push(ms(t));
                // The same on the bridge, removed as `berth rm` does (release, then the
                // namespace takes the veth pair with it).
                let id = format!("r{i}");
                let t = Instant::now();
                create_netns(&p).unwrap();
                connect(&store, "cost", &id, &id, &p, &Default::default()).unwrap();
                berth_net::release(&store, &id).unwrap();
                remove_netns(&p).unwrap();
                rel.push(ms(t));
                // The same with a published port (`-p`): its nftables rule comes and goes.
                let id = format!("p{i}");
                let opts = ConnectOptions {
                    ports: parse_publish(&format!("{}:80", 20000 + i % 20000)).unwrap(),
                    ..Default::default()
                };
                let t = Instant::now();
                create_netns(&p).unwrap();
                connect(&store, "cost", &id, &id, &p, &opts).unwrap();
                berth_net::release(&store, &id).unwrap();
                remove_netns(&p).unwrap();
                publ.push(ms(t));
                // connect and an explicit disconnect (`berth network disconnect`).
                let id = format!("c{i}");
                create_netns(&p).unwrap();
                let t = Instant::now();
                connect(&store, "cost", &id, &id, &p, &Default::default()).unwrap();
                conn.push(ms(t));
                let t = Instant::now();
                disconnect(&store, "cost", &id).unwrap();
                disc.push(ms(t));
                remove_netns(&p).unwrap();
            }
            let (b, r) = (median(base), median(rel));
            println!("medians over {n} containers:");
            println!("  netns only (--network none):          {b:.2} ms");
            println!(
                "  netns + connect + release (bridge):   {r:.2} ms  -> network cost {:.2} ms",
                r - b
            );
            println!(
                "  the same with -p (a published port):  {:.2} ms  -> network cost {:.2} ms",
                median(publ.clone()),
                median(publ) - b
            );
            println!(
                "  connect alone:                        {:.2} ms",
                median(conn)
            );
            println!(
                "  disconnect alone (deletes the veth):  {:.2} ms",
                median(disc)
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
            let port = std::env::var("PORT").unwrap_or_else(|_| "5201".into());
            let opts = ConnectOptions {
                ports: parse_publish(&format!("{port}:5201")).unwrap(),
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

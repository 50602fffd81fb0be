//! `berth network ...`, `berth port` and the hidden `berth __dns` (a network's DNS responder).

use super::Globals;
use anyhow::{bail, Context, Result};
use berth_engine::{network, Engine};
use berth_net::{cli as netcli, NetworkOptions};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum NetworkSub {
    /// Create a network
    Create {
        /// Subnet in CIDR format (e.g. 10.89.0.0/24)
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway for the subnet
        #[arg(long)]
        gateway: Option<String>,
        /// Restrict external access to the network
        #[arg(long)]
        internal: bool,
        /// Enable IPv6 networking
        #[arg(long)]
        ipv6: bool,
        /// Driver to manage the network (only bridge)
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// Driver options: mtu=N sets the bridge and veth MTU (default: 65520 on the host, the uplink MTU on the default route)
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        /// Set metadata on a network
        #[arg(long = "label")]
        label: Vec<String>,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only display network IDs
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Format output: table or json
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more networks
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Connect a container to a network
    Connect {
        /// IPv4 address
        #[arg(long)]
        ip: Option<String>,
        /// Add network-scoped alias for the container
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from a network
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all unused networks
    Prune {
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
}

fn net_store(engine: &Engine) -> Result<berth_net::NetStore> {
    let store = network::store(&engine.root)?;
    // What containers killed with -9 held is reclaimed before anything is listed or removed.
    network::reconcile(&engine.root, &engine.records)?;
    Ok(store)
}

pub fn run(cmd: NetworkSub, g: &Globals) -> Result<i32> {
    let engine = Engine::open(&g.root, g.runroot.as_deref())?;
    let store = net_store(&engine)?;
    let out = match cmd {
        NetworkSub::Create {
            subnet,
            gateway,
            internal,
            ipv6,
            driver,
            opt,
            label,
            name,
        } => {
            let mut o = NetworkOptions {
                subnet,
                gateway,
                internal,
                ipv6,
                driver,
                ..Default::default()
            };
            for kv in &opt {
                match kv.split_once('=') {
                    Some(("mtu" | "com.docker.network.driver.mtu", v)) => {
                        o.mtu = Some(v.parse().with_context(|| format!("invalid -o {kv}"))?)
                    }
                    _ => bail!("invalid network option {kv:?}: berth knows mtu=N"),
                }
            }
            o.labels = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            netcli::create(&store, &name, &o)?
        }
        NetworkSub::Ls { quiet, format } => netcli::ls(
            &store,
            quiet,
            matches!(format.as_deref(), Some("json" | "{{json .}}")),
        )?,
        NetworkSub::Inspect { networks } => netcli::inspect(&store, &networks)?,
        NetworkSub::Rm { networks } => netcli::rm(&store, &networks)?,
        NetworkSub::Prune { force: _ } => netcli::prune(&store)?,
        NetworkSub::Connect {
            ip,
            alias,
            network: net,
            container,
        } => {
            let ip = match ip {
                Some(s) => Some(
                    s.parse()
                        .with_context(|| format!("invalid --ip {s:?}: not an IP address"))?,
                ),
                None => None,
            };
            network::connect_container(
                &engine.root,
                &engine.records,
                &container,
                &net,
                ip,
                &alias,
            )?;
            String::new()
        }
        NetworkSub::Disconnect {
            force: _,
            network: net,
            container,
        } => {
            network::disconnect_container(&engine.root, &engine.records, &container, &net)?;
            String::new()
        }
    };
    out!("{out}");
    Ok(0)
}

/// `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub fn port(g: &Globals, container: &str, private: Option<&str>) -> Result<i32> {
    let engine = Engine::open(&g.root, g.runroot.as_deref())?;
    let c = engine.get(container)?;
    let ports = network::ports(&c);
    let want = match private {
        Some(p) => {
            let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let n: u16 = n
                .parse()
                .with_context(|| format!("invalid port {p:?}: expected PORT[/PROTO]"))?;
            Some((n, proto.to_ascii_lowercase()))
        }
        None => None,
    };
    let mut found = false;
    for p in &ports {
        match &want {
            Some((n, proto)) => {
                if p.container_port == *n && p.protocol.to_string() == *proto {
                    outln!("{}:{}", p.host_addr(), p.host_port);
                    found = true;
                }
            }
            None => outln!("{p}"),
        }
    }
    if let (Some(p), false) = (private, found) {
        bail!("no public port '{p}' published for {container}");
    }
    Ok(0)
}

/// The hidden `berth __dns NETWORKS_DIR NETWORK`: a network's DNS responder (started by berth).
pub fn dns(dir: PathBuf, network: String) -> ! {
    netcli::dns_main(&dir, &network)
}

//! `berth network ...` command bodies, returning what the command prints, so the CLI only parses
//! flags and prints. `connect`/`disconnect` need the engine to find the container's namespace;
//! they are [`crate::connect`] and [`crate::disconnect`] themselves.

use std::path::Path;

use serde_json::json;

use crate::error::NetError;
use crate::model::{Network, NetworkOptions, DEFAULT_NETWORK};
use crate::store::{uplink_mtu, NetStore};

/// `network inspect` option of networks with the host-local MTU: the MTU of the bridge and
/// veth pairs (Docker's `com.docker.network.driver.mtu` is shown instead where `-o mtu=N` set it).
pub const BRIDGE_MTU: &str = "berth.network.bridge.mtu";
/// `network inspect` option of networks with the host-local MTU: the route MTU of the
/// containers' default routes, which traffic leaving the host keeps.
pub const ROUTE_MTU: &str = "berth.network.route.mtu";

/// `berth network create`: prints the new network's ID.
pub fn create(store: &NetStore, name: &str, opts: &NetworkOptions) -> Result<String, NetError> {
    Ok(format!("{}\n", store.create(name, opts)?.id))
}

/// `berth network ls [-q] [--format json]`.
pub fn ls(store: &NetStore, quiet: bool, json_lines: bool) -> Result<String, NetError> {
    // The default network is always listed, as Docker lists its `bridge`.
    store.default_bridge()?;
    let nets = store.list()?;
    let mut out = String::new();
    if quiet {
        for n in &nets {
            out.push_str(&format!("{}\n", &n.id[..12]));
        }
    } else if json_lines {
        for n in &nets {
            let v = json!({"ID": &n.id[..12], "Name": n.name, "Driver": n.driver, "Scope": "local",
                "Internal": n.internal, "IPv6": n.ipv6, "Subnet": n.subnet.to_string()});
            out.push_str(&format!("{v}\n"));
        }
    } else {
        out.push_str(&format!(
            "{:<14}{:<20}{:<10}{}\n",
            "NETWORK ID", "NAME", "DRIVER", "SCOPE"
        ));
        for n in &nets {
            out.push_str(&format!(
                "{:<14}{:<20}{:<10}{}\n",
                &n.id[..12],
                n.name,
                n.driver,
                "local"
            ));
        }
    }
    Ok(out)
}

/// Docker's `network inspect` object for one network.
pub fn inspect_json(store: &NetStore, n: &Network) -> Result<serde_json::Value, NetError> {
    let mut containers = serde_json::Map::new();
    for l in store.leases(&n.name)? {
        containers.insert(
            l.container_id.clone(),
            json!({"Name": l.container_name, "MacAddress": l.mac,
                "IPv4Address": format!("{}/{}", l.ip, n.subnet.prefix),
                "IPv6Address": l.ip6.zip(n.subnet6).map(|(a, s)| format!("{a}/{}", s.prefix)).unwrap_or_default(),
                "Aliases": l.aliases}),
        );
    }
    let labels: serde_json::Map<String, serde_json::Value> = n
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let created = chrono_like(n.created);
    let mut config =
        vec![json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()})];
    if let (Some(s6), Some(g6)) = (n.subnet6, n.gateway6) {
        config.push(json!({"Subnet": s6.to_string(), "Gateway": g6.to_string()}));
    }
    let mut options = json!({"com.docker.network.bridge.name": n.bridge});
    match n.mtu {
        // Docker's option, as given: the bridge and veth pairs' MTU, for all traffic.
        Some(m) => options["com.docker.network.driver.mtu"] = json!(m.to_string()),
        // The host-local MTU: large on the bridge, the uplink's on the containers' default
        // route (what a container connected now gets).
        None => {
            let link = n.link_mtu();
            options[BRIDGE_MTU] = json!(link.to_string());
            let route = n.route_mtu(Some(uplink_mtu()?), link);
            options[ROUTE_MTU] = json!(route.unwrap_or(link).to_string());
        }
    }
    Ok(json!({
        "Name": n.name, "Id": n.id, "Created": created, "Scope": "local", "Driver": n.driver,
        "EnableIPv6": n.ipv6,
        "IPAM": {"Driver": "default", "Options": {},
                 "Config": config},
        "Internal": n.internal, "Attachable": false, "Ingress": false,
        "Containers": containers,
        "Options": options,
        "Labels": labels,
    }))
}

/// Seconds since the epoch as RFC 3339 (UTC).
fn chrono_like(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `berth network inspect NAME...`: a JSON array.
pub fn inspect(store: &NetStore, names: &[String]) -> Result<String, NetError> {
    let mut v = Vec::new();
    for name in names {
        let n = if name == DEFAULT_NETWORK {
            store.default_bridge()?
        } else {
            store.inspect(name)?
        };
        v.push(inspect_json(store, &n)?);
    }
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&v).expect("json serialises")
    ))
}

/// `berth network rm NAME...`: prints each removed name; stops at the first error.
pub fn rm(store: &NetStore, names: &[String]) -> Result<String, NetError> {
    let mut out = String::new();
    for name in names {
        store.remove(name)?;
        out.push_str(&format!("{name}\n"));
    }
    Ok(out)
}

/// `berth network prune`.
pub fn prune(store: &NetStore) -> Result<String, NetError> {
    let gone = store.prune()?;
    if gone.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("Deleted Networks:\n{}\n", gone.join("\n")))
}

/// The hidden `berth __dns NETWORKS_DIR NETWORK` command. Never returns.
pub fn dns_main(networks_dir: &Path, network: &str) -> ! {
    crate::dns::dns_server_main(networks_dir, network)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::chrono_like(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::chrono_like(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}

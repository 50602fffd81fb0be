//! Loading and validating a bundle's `config.json`, and the default spec `berth-runtime spec` writes.

use crate::bail;
use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Reads `<bundle>/config.json`, makes the root and relative bind sources absolute, and validates it.
pub fn load(bundle: &Path) -> Result<Spec> {
    load_with_text(bundle).map(|(spec, _)| spec)
}

/// [`load`], also returning the file's bytes as read (the runtime keeps a copy: later changes
/// to the bundle's config.json must not affect the container).
pub fn load_with_text(bundle: &Path) -> Result<(Spec, Vec<u8>)> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| {
        Error::Msg(format!(
            "reading {}: {e} (is --bundle the directory holding config.json?)",
            path.display()
        ))
    })?;
    let mut spec = parse(&text, &path, true)?;
    absolutize(&mut spec, bundle)?;
    validate(&spec)?;
    Ok((spec, text))
}

/// Parses a config. Capabilities this build does not know are dropped with a warning (when
/// `warn`) instead of failing the whole config (config.md: a capability that cannot be mapped
/// is logged as a warning; runtimes should not fail).
pub fn parse(text: &[u8], path: &Path, warn: bool) -> Result<Spec> {
    let err = match serde_json::from_slice(text) {
        Ok(spec) => return Ok(spec),
        Err(e) => Error::Msg(format!("parsing {}: {e}", path.display())),
    };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(text) else {
        return Err(err);
    };
    let mut dropped = Vec::new();
    if let Some(sets) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for set in sets.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.retain(|c| {
                    let known = c.as_str().is_some_and(|n| {
                        std::str::FromStr::from_str(n).is_ok_and(|_: caps::Capability| true)
                    });
                    if !known {
                        dropped.push(c.to_string());
                    }
                    known
                });
            }
        }
    }
    if dropped.is_empty() {
        return Err(err);
    }
    if warn {
        crate::warning!(
            "process.capabilities: ignoring unknown {}",
            dropped.join(", ")
        );
    }
    // Back through bytes: one instance of the (large) Spec deserializer serves both paths.
    let text = serde_json::to_vec(&v).map_err(|e| Error::Msg(format!("{e}")))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::Msg(format!("parsing {}: {e}", path.display())))
}

fn absolutize(spec: &mut Spec, bundle: &Path) -> Result<()> {
    let Some(root) = spec.root_mut() else {
        bail!("config.json has no root: set root.path to the bundle's rootfs directory");
    };
    let p = bundle.join(root.path());
    let canon = std::fs::canonicalize(&p).map_err(|e| {
        Error::Msg(format!(
            "rootfs ({}) does not exist: {e}; create it or fix root.path",
            p.display()
        ))
    })?;
    root.set_path(canon);
    if let Some(mounts) = spec.mounts_mut() {
        for m in mounts.iter_mut() {
            let is_bind = m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"));
            if is_bind {
                if let Some(src) = m.source().clone() {
                    if src.is_relative() {
                        m.set_source(Some(bundle.join(src)));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Namespaces the config asks for: (type, optional path to join).
pub fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

/// True when the config creates (no path) or joins the given namespace type.
pub fn has_ns(spec: &Spec, t: LinuxNamespaceType) -> bool {
    namespaces(spec).iter().any(|(n, _)| *n == t)
}

/// True when the config creates a new namespace of type `t`.
pub fn new_ns(spec: &Spec, t: LinuxNamespaceType) -> bool {
    namespaces(spec).iter().any(|(n, p)| *n == t && p.is_none())
}

fn validate(spec: &Spec) -> Result<()> {
    let root = spec.root().as_ref().expect("absolutized");
    if !root.path().is_dir() {
        bail!("rootfs ({}) is not a directory", root.path().display());
    }
    let Some(process) = spec.process() else {
        bail!("config.json has no process: the container needs process.args");
    };
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => bail!("process.args must not be empty: name the program to run"),
    }
    if !process.cwd().is_absolute() {
        bail!(
            "process.cwd {:?} must be an absolute path",
            process.cwd().display()
        );
    }
    let mut types = HashSet::new();
    for r in process.rlimits().iter().flatten() {
        if !types.insert(r.typ().to_string()) {
            bail!(
                "process.rlimits lists {} twice: keep one entry per type",
                r.typ()
            );
        }
    }
    let mut seen = HashSet::new();
    for (t, path) in namespaces(spec) {
        if !seen.insert(t) {
            bail!("namespace {t} is listed twice in linux.namespaces");
        }
        if let Some(p) = path {
            if !p.exists() {
                bail!("namespace path {} for {t} does not exist", p.display());
            }
        }
    }
    let linux = spec.linux().as_ref();
    let maps = linux.is_some_and(|l| {
        l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
    });
    if new_ns(spec, LinuxNamespaceType::User) {
        let ok = linux.is_some_and(|l| {
            l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
                && l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        });
        if !ok {
            bail!("user namespace enabled, but linux.uidMappings/gidMappings are missing: add a mapping for the container's root");
        }
    } else if maps && !has_ns(spec, LinuxNamespaceType::User) {
        bail!("uid/gid mappings are set, but the user namespace isn't enabled in linux.namespaces");
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !new_ns(spec, LinuxNamespaceType::Uts)
    {
        bail!("unable to set hostname without a private UTS namespace: add {{\"type\": \"uts\"}} to linux.namespaces");
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty())
        && !new_ns(spec, LinuxNamespaceType::Uts)
    {
        bail!("unable to set domainname without a private UTS namespace");
    }
    // A relative mount destination is relative to "/" (config.md; deprecated but allowed).
    if let Some(l) = linux {
        // Accepted by the spec but not implemented here: refusing beats ignoring them.
        if l.intel_rdt().is_some() {
            bail!(
                "linux.intelRdt is not supported by berth-runtime (no resctrl support): remove it"
            );
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            bail!("linux.netDevices is not supported by berth-runtime: remove it and move the interface into the container's network namespace yourself");
        }
        if l.memory_policy().is_some() {
            bail!("linux.memoryPolicy is not supported by berth-runtime: remove it");
        }
        if let Some(p) = l.rootfs_propagation() {
            if !matches!(
                p.as_str(),
                "" | "private"
                    | "rprivate"
                    | "slave"
                    | "rslave"
                    | "shared"
                    | "rshared"
                    | "unbindable"
                    | "runbindable"
            ) {
                bail!("linux.rootfsPropagation {p:?} is not a valid propagation mode");
            }
        }
        if let Some(s) = l.sysctl() {
            for k in s.keys() {
                check_sysctl(spec, k)?;
            }
        }
    }
    if let Some(h) = spec.hooks() {
        for list in [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .into_iter()
        .flatten()
        {
            for hook in list {
                if !hook.path().is_absolute() {
                    bail!("hook path {} must be absolute", hook.path().display());
                }
            }
        }
    }
    Ok(())
}

fn check_sysctl(spec: &Spec, key: &str) -> Result<()> {
    let k = key.replace('/', ".");
    let ipc = k.starts_with("fs.mqueue.")
        || matches!(
            k.as_str(),
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        );
    if ipc {
        if !new_ns(spec, LinuxNamespaceType::Ipc) {
            bail!(
                "sysctl {key:?} is not allowed in the host's ipc namespace: add an ipc namespace"
            );
        }
        return Ok(());
    }
    if k.starts_with("net.") {
        if !has_ns(spec, LinuxNamespaceType::Network) {
            bail!("sysctl {key:?} is not allowed in the host's network namespace: add a network namespace");
        }
        return Ok(());
    }
    if k == "kernel.hostname" || k == "kernel.domainname" {
        bail!("sysctl {key:?} is not allowed: use the config's hostname/domainname fields");
    }
    bail!("sysctl {key:?} is not in a separate kernel namespace, so the container may not set it")
}

/// runc's default `config.json` (what `runc spec` writes), optionally the rootless variant.
pub fn default_spec(rootless: bool) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(DEFAULT_SPEC).expect("built-in spec is valid JSON");
    if rootless {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let linux = &mut v["linux"];
        linux["resources"] = serde_json::Value::Null;
        linux.as_object_mut().expect("object").remove("resources");
        let ns = linux["namespaces"].as_array_mut().expect("array");
        ns.retain(|n| n["type"] != "network");
        ns.push(serde_json::json!({"type": "user"}));
        linux["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        let mounts = v["mounts"].as_array_mut().expect("array");
        mounts.retain(|m| m["type"] != "cgroup");
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" {
                *m = serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| o != "gid=5");
            }
        }
    }
    v
}

const DEFAULT_SPEC: &str = r#"{
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": true,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "berth",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [
      {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
      {"type": "cgroup"}
    ],
    "maskedPaths": [
      "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
    ],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_specs_parse_as_oci_specs() {
        for rootless in [false, true] {
            let v = default_spec(rootless);
            let s: Spec = serde_json::from_value(v).unwrap();
            assert_eq!(
                s.process().as_ref().unwrap().args().as_ref().unwrap()[0],
                "sh"
            );
            assert_eq!(has_ns(&s, LinuxNamespaceType::User), rootless);
            assert_eq!(has_ns(&s, LinuxNamespaceType::Network), !rootless);
        }
    }
}

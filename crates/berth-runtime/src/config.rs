//! Loading and validating a bundle's `config.json`, and the default spec `berth-runtime spec` writes.

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A bundle's `config.json` that cannot be read, parsed or used as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.json` could not be read.
    #[error("reading {}: {source} (is --bundle the directory holding config.json?)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not a valid runtime spec.
    #[error("parsing {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// No `root`.
    #[error("config.json has no root: set root.path to the bundle's rootfs directory")]
    NoRoot,
    /// `root.path` does not resolve.
    #[error("rootfs ({}) does not exist: {source}; create it or fix root.path", path.display())]
    RootMissing {
        /// The rootfs path, joined to the bundle.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `root.path` is not a directory.
    #[error("rootfs ({}) is not a directory", .0.display())]
    RootNotDir(PathBuf),
    /// No `process`.
    #[error("config.json has no process: the container needs process.args")]
    NoProcess,
    /// `process.args` is empty.
    #[error("process.args must not be empty: name the program to run")]
    NoArgs,
    /// `process.cwd` is relative.
    #[error("process.cwd {:?} must be an absolute path", .0.display())]
    RelativeCwd(PathBuf),
    /// An rlimit type is listed twice.
    #[error("process.rlimits lists {0} twice: keep one entry per type")]
    DuplicateRlimit(String),
    /// A namespace type is listed twice.
    #[error("namespace {0} is listed twice in linux.namespaces")]
    DuplicateNamespace(LinuxNamespaceType),
    /// A namespace to join does not exist.
    #[error("namespace path {} for {ns} does not exist", path.display())]
    NamespacePath {
        /// The namespace type.
        ns: LinuxNamespaceType,
        /// Its path.
        path: PathBuf,
    },
    /// A new user namespace without id mappings.
    #[error("user namespace enabled, but linux.uidMappings/gidMappings are missing: add a mapping for the container's root")]
    UserNsWithoutMappings,
    /// Id mappings without a user namespace.
    #[error("uid/gid mappings are set, but the user namespace isn't enabled in linux.namespaces")]
    MappingsWithoutUserNs,
    /// A hostname without a new UTS namespace.
    #[error("unable to set hostname without a private UTS namespace: add {{\"type\": \"uts\"}} to linux.namespaces")]
    HostnameWithoutUts,
    /// A domainname without a new UTS namespace.
    #[error("unable to set domainname without a private UTS namespace")]
    DomainnameWithoutUts,
    /// A field the spec allows but berth-runtime does not implement.
    #[error("{0}")]
    Unsupported(&'static str),
    /// `linux.rootfsPropagation` is not a propagation mode.
    #[error("linux.rootfsPropagation {0:?} is not a valid propagation mode")]
    BadPropagation(String),
    /// A sysctl the container may not set.
    #[error("sysctl {key:?} {reason}")]
    Sysctl {
        /// The sysctl as written in the config.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A hook with a relative path.
    #[error("hook path {} must be absolute", .0.display())]
    RelativeHook(PathBuf),
    /// `process.terminal` without a console socket, for a runtime that detaches.
    #[error("cannot allocate tty if berth-runtime will detach without setting console socket: pass --console-socket or set process.terminal to false")]
    TerminalWithoutConsole,
    /// `--console-socket` without `process.terminal`.
    #[error("--console-socket given but process.terminal is false: set process.terminal to true or drop --console-socket")]
    ConsoleWithoutTerminal,
    /// An unknown `linux.timeOffsets` clock.
    #[error("linux.timeOffsets: unknown clock {0:?} (monotonic or boottime)")]
    TimeOffsetClock(String),
    /// An unknown rlimit type.
    #[error("unknown rlimit type {0}")]
    Rlimit(String),
    /// An unknown `linux.personality` domain.
    #[error("unknown personality domain {0}")]
    Personality(String),
    /// A CPU list that does not parse.
    #[error("invalid CPU list {0:?} in execCPUAffinity")]
    CpuList(String),
    /// No mount namespace.
    #[error("linux.namespaces must include a mount namespace")]
    NoMountNamespace,
}

type Result<T> = std::result::Result<T, ConfigError>;

/// Reads `<bundle>/config.json`, makes the root and relative bind sources absolute, and validates it.
pub fn load(bundle: &Path) -> Result<Spec> {
    load_with_text(bundle).map(|(spec, _)| spec)
}

/// [`load`], also returning the file's bytes as read (the runtime keeps a copy: later changes
/// to the bundle's config.json must not affect the container).
pub fn load_with_text(bundle: &Path) -> Result<(Spec, Vec<u8>)> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
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
        Err(source) => ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        },
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
    let parse = |source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_vec(&v).map_err(parse)?;
    serde_json::from_slice(&text).map_err(parse)
}

fn absolutize(spec: &mut Spec, bundle: &Path) -> Result<()> {
    let Some(root) = spec.root_mut() else {
        return Err(ConfigError::NoRoot);
    };
    let p = bundle.join(root.path());
    let canon =
        std::fs::canonicalize(&p).map_err(|source| ConfigError::RootMissing { path: p, source })?;
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
        return Err(ConfigError::RootNotDir(root.path().clone()));
    }
    let Some(process) = spec.process() else {
        return Err(ConfigError::NoProcess);
    };
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(ConfigError::NoArgs),
    }
    if !process.cwd().is_absolute() {
        return Err(ConfigError::RelativeCwd(process.cwd().clone()));
    }
    let mut types = HashSet::new();
    for r in process.rlimits().iter().flatten() {
        if !types.insert(r.typ().to_string()) {
            return Err(ConfigError::DuplicateRlimit(r.typ().to_string()));
        }
    }
    let mut seen = HashSet::new();
    for (t, path) in namespaces(spec) {
        if !seen.insert(t) {
            return Err(ConfigError::DuplicateNamespace(t));
        }
        if let Some(p) = path {
            if !p.exists() {
                return Err(ConfigError::NamespacePath { ns: t, path: p });
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
            return Err(ConfigError::UserNsWithoutMappings);
        }
    } else if maps && !has_ns(spec, LinuxNamespaceType::User) {
        return Err(ConfigError::MappingsWithoutUserNs);
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !new_ns(spec, LinuxNamespaceType::Uts)
    {
        return Err(ConfigError::HostnameWithoutUts);
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty())
        && !new_ns(spec, LinuxNamespaceType::Uts)
    {
        return Err(ConfigError::DomainnameWithoutUts);
    }
    // A relative mount destination is relative to "/" (config.md; deprecated but allowed).
    if let Some(l) = linux {
        // Accepted by the spec but not implemented here: refusing beats ignoring them.
        if l.intel_rdt().is_some() {
            return Err(ConfigError::Unsupported(
                "linux.intelRdt is not supported by berth-runtime (no resctrl support): remove it",
            ));
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(ConfigError::Unsupported("linux.netDevices is not supported by berth-runtime: remove it and move the interface into the container's network namespace yourself"));
        }
        if l.memory_policy().is_some() {
            return Err(ConfigError::Unsupported(
                "linux.memoryPolicy is not supported by berth-runtime: remove it",
            ));
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
                return Err(ConfigError::BadPropagation(p.clone()));
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
                    return Err(ConfigError::RelativeHook(hook.path().clone()));
                }
            }
        }
    }
    Ok(())
}

fn check_sysctl(spec: &Spec, key: &str) -> Result<()> {
    let refuse = |reason| {
        Err(ConfigError::Sysctl {
            key: key.to_string(),
            reason,
        })
    };
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
            return refuse("is not allowed in the host's ipc namespace: add an ipc namespace");
        }
        return Ok(());
    }
    if k.starts_with("net.") {
        if !has_ns(spec, LinuxNamespaceType::Network) {
            return refuse(
                "is not allowed in the host's network namespace: add a network namespace",
            );
        }
        return Ok(());
    }
    if k == "kernel.hostname" || k == "kernel.domainname" {
        return refuse("is not allowed: use the config's hostname/domainname fields");
    }
    refuse("is not in a separate kernel namespace, so the container may not set it")
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

    fn spec(v: serde_json::Value) -> Spec {
        serde_json::from_value(v).unwrap()
    }

    /// A valid spec whose root is `root`, changed by `f`.
    fn checked(root: &Path, f: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
        let mut v = serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": root},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "uts"}]}
        });
        f(&mut v);
        validate(&spec(v))
    }

    #[test]
    fn validation_errors_say_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        checked(root, |_| {}).unwrap();
        let e = checked(root, |v| v["process"]["args"] = serde_json::json!([])).unwrap_err();
        assert!(matches!(e, ConfigError::NoArgs), "{e}");
        let e = checked(root, |v| v["process"]["cwd"] = "rel".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "process.cwd \"rel\" must be an absolute path"
        );
        let e = checked(root, |v| {
            v["hostname"] = "h".into();
            v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::HostnameWithoutUts), "{e}");
        assert!(e.to_string().contains("add {\"type\": \"uts\"}"), "{e}");
        let e = checked(root, |v| {
            v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "mount"}]);
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "namespace mnt is listed twice in linux.namespaces"
        );
        let e = checked(root, |v| {
            v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sysctl \"net.ipv4.ip_forward\" is not allowed in the host's network namespace: \
             add a network namespace"
        );
        let e = checked(root, |v| {
            v["linux"]["sysctl"] = serde_json::json!({"kernel.hostname": "x"});
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::Sysctl { .. }), "{e}");
        let e = checked(root, |v| {
            v["hooks"] = serde_json::json!({"prestart": [{"path": "rel/hook"}]});
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "hook path rel/hook must be absolute");
    }

    #[test]
    fn unreadable_and_unparsable_configs() {
        let d = tempfile::tempdir().unwrap();
        let e = load(d.path()).unwrap_err();
        assert!(matches!(&e, ConfigError::Read { source, .. }
            if source.raw_os_error() == Some(libc::ENOENT)));
        assert!(e
            .to_string()
            .contains("is --bundle the directory holding config.json?"));
        std::fs::write(d.path().join("config.json"), "{").unwrap();
        assert!(matches!(load(d.path()), Err(ConfigError::Parse { .. })));
    }

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

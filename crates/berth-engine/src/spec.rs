//! Image config + `berth run` flags -> the OCI runtime spec (`config.json`).
//!
//! Pure functions: everything read from disk (the container's passwd/group,
//! the caller's limits, resolved volume sources) comes in through [`SpecContext`].

use crate::options::{parse_bytes, RunOptions};
use crate::{seccomp, user};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's 14 default capabilities.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, by number.
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "no command specified: the image has no Entrypoint or Cmd; give one after the image name"
    )]
    NoCommand,
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error("invalid capability {0:?}: see capabilities(7) for the names (with or without CAP_)")]
    BadCap(String),
    #[error("invalid {flag} value {value:?}: {why}")]
    BadFlag {
        flag: &'static str,
        value: String,
        why: String,
    },
    #[error("ulimit {name}: the requested hard limit {requested} is above the caller's hard limit {max}; berth lacks CAP_SYS_RESOURCE to raise it: ask for at most {max}")]
    UlimitTooHigh {
        name: String,
        requested: u64,
        max: u64,
    },
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("the generated spec is not valid: {0}")]
    Invalid(serde_json::Error),
    #[error("device {path}: {why}")]
    Device { path: String, why: String },
}

fn bad(flag: &'static str, value: &str, why: impl Into<String>) -> SpecError {
    SpecError::BadFlag {
        flag,
        value: value.to_string(),
        why: why.into(),
    }
}

/// A mount whose source is resolved on the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedMount {
    /// "bind", "volume" or "tmpfs".
    pub kind: String,
    /// Host path (bind, volume) or "tmpfs".
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// Volume name for volumes.
    pub name: Option<String>,
    /// Extra options (tmpfs size/mode).
    pub options: Vec<String>,
    /// An anonymous volume (removed with `rm -v` / `--rm`).
    pub anonymous: bool,
}

/// A host device to expose (`--device`), already stat'ed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostDevice {
    pub path_in_container: String,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub permissions: String,
}

/// Facts from the host and the container's files that the spec depends on.
#[derive(Debug, Clone, Default)]
pub struct SpecContext {
    pub id: String,
    /// The container's hostname (also its `HOSTNAME`): `-h`, the id's first 12 digits, the
    /// host's with `--network host`, the other container's with `container:NAME`.
    pub hostname: String,
    pub rootfs: PathBuf,
    /// Where hosts, hostname and resolv.conf live.
    pub container_dir: PathBuf,
    /// Contents of the container's /etc/passwd and /etc/group (empty if absent).
    pub passwd: String,
    pub group: String,
    pub mounts: Vec<ResolvedMount>,
    pub devices: Vec<HostDevice>,
    /// The caller's hard RLIMIT_NOFILE and whether it may raise hard limits.
    pub nofile_hard: u64,
    pub can_raise_limits: bool,
    /// Docker's name for the host architecture (amd64, arm64, ...).
    pub arch: String,
    /// Host values of `-e NAME` without a value.
    pub host_env: BTreeMap<String, String>,
    /// Contents of `--env-file`s, in order.
    pub env_files: Vec<String>,
    /// The runtime cgroup parent (`/berth`).
    pub cgroup_parent: String,
    /// The caller's bounding set (bit per capability); 0 = unknown, no filter.
    /// `--privileged` and `--cap-add ALL` cannot give more than this.
    pub bounding: u64,
}

/// The command the container runs: Docker's Entrypoint/Cmd rules.
pub fn command(image: &ImageConfiguration, opts: &RunOptions) -> Result<Vec<String>, SpecError> {
    let cfg = image.config().as_ref();
    let entrypoint: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    let cmd: Vec<String> = if !opts.cmd.is_empty() {
        opts.cmd.clone()
    } else if opts.entrypoint.is_some() {
        vec![]
    } else {
        cfg.and_then(|c| c.cmd().clone()).unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

fn parse_env_line(line: &str, host_env: &BTreeMap<String, String>) -> Option<(String, String)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    match line.split_once('=') {
        Some((k, v)) => Some((k.to_string(), v.to_string())),
        None => host_env.get(line).map(|v| (line.to_string(), v.clone())),
    }
}

/// The container's environment, in order: image env, env files, `-e`; PATH,
/// HOSTNAME and (with `-t`) TERM added as Docker does.
pub fn environment(
    image: &ImageConfiguration,
    opts: &RunOptions,
    ctx: &SpecContext,
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: String, v: String| {
        if let Some(e) = env.iter_mut().find(|(ek, _)| *ek == k) {
            e.1 = v;
        } else {
            env.push((k, v));
        }
    };
    set("PATH".into(), DEFAULT_PATH.into());
    set("HOSTNAME".into(), hostname.into());
    if opts.tty {
        set("TERM".into(), "xterm".into());
    }
    let image_env = image
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    for e in &image_env {
        if let Some((k, v)) = e.split_once('=') {
            set(k.into(), v.into());
        }
    }
    for file in &ctx.env_files {
        for line in file.lines() {
            if let Some((k, v)) = parse_env_line(line, &ctx.host_env) {
                set(k, v);
            }
        }
    }
    for e in &opts.env {
        if let Some((k, v)) = parse_env_line(e, &ctx.host_env) {
            set(k, v);
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `CAP_X` from `x`, `X` or `CAP_X`; `ALL` stays `ALL`.
pub fn normalize_cap(c: &str) -> Result<String, SpecError> {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(SpecError::BadCap(c.to_string()))
    }
}

/// The capability set after `--cap-add`, `--cap-drop` and `--privileged`.
pub fn capabilities(opts: &RunOptions) -> Result<Vec<String>, SpecError> {
    let all: Vec<String> = ALL_CAPS.iter().map(|s| s.to_string()).collect();
    if opts.privileged {
        return Ok(all);
    }
    let adds = opts
        .cap_add
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>, _>>()?;
    let drops = opts
        .cap_drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut caps: Vec<String> = if drops.iter().any(|d| d == "ALL") {
        vec![]
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drops.contains(c))
            .collect()
    };
    if adds.iter().any(|a| a == "ALL") {
        caps = all.into_iter().filter(|c| !drops.contains(c)).collect();
    } else {
        for a in adds {
            if !caps.contains(&a) {
                caps.push(a);
            }
        }
    }
    Ok(caps)
}

fn ulimit_value(name: &str, v: &str) -> Result<u64, SpecError> {
    if v == "-1" || v == "unlimited" {
        return Ok(u64::MAX);
    }
    v.parse::<u64>()
        .map_err(|_| bad("--ulimit", name, format!("{v:?} is not a number")))
}

/// `name=soft[:hard]` -> ("RLIMIT_NAME", soft, hard), checked against the caller's limit.
pub fn rlimits(opts: &RunOptions, ctx: &SpecContext) -> Result<Vec<Value>, SpecError> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    for u in &opts.ulimits {
        let (name, vals) = u
            .split_once('=')
            .ok_or_else(|| bad("--ulimit", u, "expected name=soft[:hard]"))?;
        let (soft, hard) = match vals.split_once(':') {
            Some((s, h)) => (ulimit_value(name, s)?, ulimit_value(name, h)?),
            None => {
                let v = ulimit_value(name, vals)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(bad("--ulimit", u, "the soft limit is above the hard limit"));
        }
        const NAMES: [&str; 16] = [
            "core",
            "cpu",
            "data",
            "fsize",
            "locks",
            "memlock",
            "msgqueue",
            "nice",
            "nofile",
            "nproc",
            "rss",
            "rtprio",
            "rttime",
            "sigpending",
            "stack",
            "as",
        ];
        if !NAMES.contains(&name) {
            return Err(bad("--ulimit", u, format!("unknown limit {name:?}")));
        }
        if name == "nofile" && !ctx.can_raise_limits && hard > ctx.nofile_hard {
            return Err(SpecError::UlimitTooHigh {
                name: name.into(),
                requested: hard,
                max: ctx.nofile_hard,
            });
        }
        out.push((format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard));
    }
    if !out.iter().any(|(n, _, _)| n == "RLIMIT_NOFILE") {
        // Docker's daemon default is 1048576; stay within what the caller may set.
        let v = if ctx.can_raise_limits {
            1_048_576
        } else {
            1_048_576.min(ctx.nofile_hard)
        };
        out.push(("RLIMIT_NOFILE".into(), v, v));
    }
    Ok(out
        .into_iter()
        .map(|(t, s, h)| json!({"type": t, "soft": s, "hard": h}))
        .collect())
}

/// The generated `/etc/hosts`.
pub fn hosts_file(hostname: &str, add_hosts: &[String], network_host: bool) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in add_hosts {
        if let Some((name, ip)) = h.split_once(':') {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    if !network_host {
        s.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    s
}

/// The generated `/etc/resolv.conf`: the host's without loopback nameservers
/// (they cannot be reached from the container's network), plus `--dns`.
pub fn resolv_conf(host: &str, dns: &[String], network_host: bool) -> String {
    let mut out = String::new();
    let mut have_ns = false;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            if !dns.is_empty() {
                continue;
            }
            if !network_host && (ns.starts_with("127.") || ns == "::1") {
                continue;
            }
            have_ns = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    for d in dns {
        out.push_str(&format!("nameserver {d}\n"));
        have_ns = true;
    }
    if !have_ns {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

fn mount(dest: &str, typ: &str, src: &str, opts: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": src, "options": opts})
}

/// Memory/CPU/pids/devices resources.
fn resources(opts: &RunOptions, devices: &[HostDevice]) -> Result<Value, SpecError> {
    let mut r = serde_json::Map::new();
    let mut mem = serde_json::Map::new();
    let limit = match &opts.memory {
        Some(m) => {
            let v = parse_bytes(m).map_err(|e| bad("--memory", m, e))?;
            if v < 6 * 1024 * 1024 {
                return Err(bad("--memory", m, "the minimum memory limit is 6m"));
            }
            mem.insert("limit".into(), json!(v));
            Some(v as i64)
        }
        None => None,
    };
    match (&opts.memory_swap, limit) {
        (Some(s), _) if s == "-1" => {
            mem.insert("swap".into(), json!(-1));
        }
        (Some(s), Some(l)) => {
            let v = parse_bytes(s).map_err(|e| bad("--memory-swap", s, e))? as i64;
            if v < l {
                return Err(bad(
                    "--memory-swap",
                    s,
                    "it must be at least --memory (it counts memory plus swap)",
                ));
            }
            mem.insert("swap".into(), json!(v));
        }
        (Some(s), None) => return Err(bad("--memory-swap", s, "it needs --memory as well")),
        (None, Some(l)) => {
            mem.insert("swap".into(), json!(2 * l));
        }
        (None, None) => {}
    }
    if !mem.is_empty() {
        r.insert("memory".into(), Value::Object(mem));
    }
    let mut cpu = serde_json::Map::new();
    if let Some(c) = &opts.cpus {
        let v: f64 = c
            .parse()
            .map_err(|_| bad("--cpus", c, "expected a number such as 1.5"))?;
        if v <= 0.0 {
            return Err(bad("--cpus", c, "it must be above 0"));
        }
        cpu.insert("quota".into(), json!((v * 100_000.0).round() as i64));
        cpu.insert("period".into(), json!(100_000u64));
    }
    if let Some(s) = opts.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(s) = &opts.cpuset_cpus {
        cpu.insert("cpus".into(), json!(s));
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(p) = opts.pids_limit {
        if p > 0 {
            r.insert("pids".into(), json!({"limit": p}));
        }
    }
    let mut devs = vec![json!({"allow": false, "access": "rwm"})];
    if opts.privileged {
        devs = vec![json!({"allow": true, "access": "rwm"})];
    } else {
        for (t, maj, min, acc) in [
            ("c", None, None, "m"),
            ("b", None, None, "m"),
            ("c", Some(1), Some(3), "rwm"),
            ("c", Some(1), Some(8), "rwm"),
            ("c", Some(1), Some(7), "rwm"),
            ("c", Some(5), Some(0), "rwm"),
            ("c", Some(1), Some(5), "rwm"),
            ("c", Some(1), Some(9), "rwm"),
            ("c", Some(5), Some(1), "rwm"),
            ("c", Some(136), None, "rwm"),
            ("c", Some(5), Some(2), "rwm"),
            ("c", Some(10), Some(200), "rwm"),
        ] {
            let mut d = json!({"allow": true, "type": t, "access": acc});
            if let Some(m) = maj {
                d["major"] = json!(m);
            }
            if let Some(m) = min {
                d["minor"] = json!(m);
            }
            devs.push(d);
        }
        for d in devices {
            devs.push(json!({"allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor, "access": d.permissions}));
        }
    }
    r.insert("devices".into(), Value::Array(devs));
    Ok(Value::Object(r))
}

/// `--security-opt` values that berth understands.
#[derive(Debug, Default)]
pub struct SecurityOpts {
    pub seccomp_unconfined: bool,
    pub seccomp_profile: Option<String>,
    pub no_new_privileges: bool,
}

pub fn security_opts(opts: &RunOptions) -> Result<SecurityOpts, SpecError> {
    let mut s = SecurityOpts::default();
    for o in &opts.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "seccomp" if v == "unconfined" => s.seccomp_unconfined = true,
            "seccomp" if !v.is_empty() => s.seccomp_profile = Some(v.to_string()),
            "no-new-privileges" if v.is_empty() || v == "true" => s.no_new_privileges = true,
            "no-new-privileges" if v == "false" => s.no_new_privileges = false,
            "label" | "apparmor" => {}
            _ => {
                return Err(bad(
                    "--security-opt",
                    o,
                    "expected seccomp=unconfined|PROFILE.json or no-new-privileges",
                ))
            }
        }
    }
    Ok(s)
}

/// The hostname: `--hostname` or the first 12 hex digits of the id.
pub fn hostname(opts: &RunOptions, id: &str) -> String {
    opts.hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect())
}

/// Builds the whole runtime spec.
pub fn generate(
    image: &ImageConfiguration,
    opts: &RunOptions,
    ctx: &SpecContext,
    seccomp_file: Option<&str>,
) -> Result<Spec, SpecError> {
    let v = generate_value(image, opts, ctx, seccomp_file)?;
    serde_json::from_value(v).map_err(SpecError::Invalid)
}

/// [`generate`] as JSON (what is written to `config.json`).
pub fn generate_value(
    image: &ImageConfiguration,
    opts: &RunOptions,
    ctx: &SpecContext,
    seccomp_file: Option<&str>,
) -> Result<Value, SpecError> {
    let hostname = &ctx.hostname;
    let args = command(image, opts)?;
    let env = environment(image, opts, ctx, hostname);
    let cfg = image.config().as_ref();
    let cwd = opts
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| cfg.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(bad(
            "--workdir",
            &cwd,
            "the working directory must be absolute",
        ));
    }
    let user_spec = opts
        .user
        .clone()
        .or_else(|| cfg.and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let u = user::resolve(&user_spec, &opts.group_add, &ctx.passwd, &ctx.group)?;
    let mut caps = capabilities(opts)?;
    if ctx.bounding != 0 {
        caps.retain(|c| {
            let bit = ALL_CAPS.iter().position(|x| x == c).unwrap_or(63);
            ctx.bounding & (1u64 << bit) != 0
        });
    }
    let sec = security_opts(opts)?;
    let rlimits = rlimits(opts, ctx)?;

    let mut process = json!({
        "terminal": opts.tty,
        "user": {"uid": u.uid, "gid": u.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "rlimits": rlimits,
        "noNewPrivileges": sec.no_new_privileges,
    });
    if !u.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(u.additional_gids);
    }
    if opts.tty {
        process["consoleSize"] = json!({"height": 24, "width": 80});
    }

    let network_host = opts.network == "host";
    let sys_opts: Vec<&str> = if opts.privileged {
        vec!["nosuid", "noexec", "nodev", "rw"]
    } else {
        vec!["nosuid", "noexec", "nodev", "ro"]
    };
    let shm = match &opts.shm_size {
        Some(s) => parse_bytes(s).map_err(|e| bad("--shm-size", s, e))?,
        None => 64 * 1024 * 1024,
    };
    let shm_opt = format!("size={shm}");
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount("/sys", "sysfs", "sysfs", &sys_opts),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                if opts.privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_opt],
        ),
    ];
    let user_dests: Vec<&str> = ctx.mounts.iter().map(|m| m.destination.as_str()).collect();
    for f in ["resolv.conf", "hostname", "hosts"] {
        let dest = format!("/etc/{f}");
        if user_dests.contains(&dest.as_str()) {
            continue;
        }
        let src = ctx.container_dir.join(f);
        let mut o = vec!["rbind", "rprivate", "nosuid", "nodev", "noexec"];
        if opts.read_only {
            o.push("ro");
        }
        mounts.push(mount(&dest, "bind", &src.to_string_lossy(), &o));
    }
    let mut user_mounts = ctx.mounts.clone();
    user_mounts.sort_by_key(|m| m.destination.matches('/').count());
    for m in &user_mounts {
        if m.kind == "tmpfs" {
            let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
            o.extend(m.options.iter().map(String::as_str));
            if m.read_only {
                o.push("ro");
            }
            mounts.push(mount(&m.destination, "tmpfs", "tmpfs", &o));
        } else {
            let mut o = vec!["rbind", "rprivate"];
            o.push(if m.read_only { "ro" } else { "rw" });
            mounts.push(mount(&m.destination, "bind", &m.source, &o));
        }
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if !network_host {
        namespaces.push(json!({"type": "network"}));
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources(opts, &ctx.devices)?,
        "cgroupsPath": format!("{}/{}", ctx.cgroup_parent, ctx.id),
    });
    if !opts.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if !opts.sysctls.is_empty() {
        let mut m = serde_json::Map::new();
        for s in &opts.sysctls {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| bad("--sysctl", s, "expected name=value"))?;
            m.insert(k.to_string(), json!(v));
        }
        linux["sysctl"] = Value::Object(m);
    }
    if !ctx.devices.is_empty() {
        linux["devices"] = Value::Array(
            ctx.devices
                .iter()
                .map(|d| {
                    json!({"path": d.path_in_container, "type": d.kind.to_string(), "major": d.major,
                           "minor": d.minor, "fileMode": d.file_mode, "uid": 0, "gid": 0})
                })
                .collect(),
        );
    }
    if !opts.privileged && !sec.seccomp_unconfined {
        let profile = match (&sec.seccomp_profile, seccomp_file) {
            (Some(_), Some(text)) => seccomp::from_json(text, &caps, &ctx.arch)?,
            _ => seccomp::default_profile(&caps, &ctx.arch)?,
        };
        linux["seccomp"] = profile;
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": ctx.rootfs.to_string_lossy(), "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    });
    Ok(spec)
}

#[cfg(test)]
#[path = "spec_golden.rs"]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entry: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfiguration {
        let mut cfg = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Env": ["PATH=/bin", "A=1"], "WorkingDir": "/w"}});
        if let Some(e) = entry {
            cfg["config"]["Entrypoint"] = json!(e);
        }
        if let Some(c) = cmd {
            cfg["config"]["Cmd"] = json!(c);
        }
        serde_json::from_value(cfg).unwrap()
    }

    fn ctx() -> SpecContext {
        SpecContext {
            id: "0123456789abcdef0123".into(),
            hostname: "0123456789ab".into(),
            rootfs: "/r".into(),
            container_dir: "/c".into(),
            passwd: "root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n".into(),
            group: "root:x:0:\nu:x:1000:\nextra:x:50:u\n".into(),
            nofile_hard: 20000,
            arch: "amd64".into(),
            cgroup_parent: "/berth".into(),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let o = RunOptions::default();
        let i = image(Some(&["/ep"]), Some(&["a", "b"]));
        assert_eq!(command(&i, &o).unwrap(), ["/ep", "a", "b"]);
        let o2 = RunOptions {
            cmd: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(command(&i, &o2).unwrap(), ["/ep", "x"]);
        // --entrypoint clears the image's Cmd.
        let o3 = RunOptions {
            entrypoint: Some("/sh".into()),
            ..Default::default()
        };
        assert_eq!(command(&i, &o3).unwrap(), ["/sh"]);
        let o4 = RunOptions {
            entrypoint: Some(String::new()),
            cmd: vec!["ls".into()],
            ..Default::default()
        };
        assert_eq!(command(&i, &o4).unwrap(), ["ls"]);
        assert!(matches!(
            command(&image(None, None), &o),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn env_merges_image_files_and_flags() {
        let i = image(None, Some(&["sh"]));
        let mut c = ctx();
        c.host_env.insert("FROMHOST".into(), "h".into());
        c.env_files = vec!["# comment\nB=file\nA=file\n".into()];
        let o = RunOptions {
            env: vec!["A=flag".into(), "FROMHOST".into(), "MISSING".into()],
            tty: true,
            ..Default::default()
        };
        let env = environment(&i, &o, &c, "host1");
        assert_eq!(
            env,
            [
                "PATH=/bin",
                "HOSTNAME=host1",
                "TERM=xterm",
                "A=flag",
                "B=file",
                "FROMHOST=h"
            ]
        );
        let bare: ImageConfiguration = serde_json::from_value(json!({"architecture": "amd64",
            "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}))
        .unwrap();
        let env = environment(&bare, &RunOptions::default(), &c, "h");
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
    }

    #[test]
    fn caps_add_drop_all_privileged() {
        let caps = capabilities(&RunOptions::default()).unwrap();
        assert_eq!(caps.len(), 14);
        let o = RunOptions {
            cap_add: vec!["sys_admin".into(), "CAP_NET_ADMIN".into()],
            cap_drop: vec!["chown".into()],
            ..Default::default()
        };
        let caps = capabilities(&o).unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        let o = RunOptions {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["kill".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&o).unwrap(), ["CAP_KILL"]);
        let o = RunOptions {
            cap_add: vec!["all".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&o).unwrap().len(), ALL_CAPS.len());
        let o = RunOptions {
            cap_add: vec!["bogus".into()],
            ..Default::default()
        };
        assert!(capabilities(&o).is_err());
    }

    #[test]
    fn ulimits_clamped_and_checked() {
        let c = ctx();
        let r = rlimits(&RunOptions::default(), &c).unwrap();
        assert_eq!(r[0]["hard"], 20000);
        let o = RunOptions {
            ulimits: vec!["nofile=30000:30000".into()],
            ..Default::default()
        };
        let e = rlimits(&o, &c).unwrap_err().to_string();
        assert!(e.contains("20000") && e.contains("nofile"), "{e}");
        let o = RunOptions {
            ulimits: vec!["nproc=10:20".into(), "nofile=100".into()],
            ..Default::default()
        };
        let r = rlimits(&o, &c).unwrap();
        assert_eq!(
            r[0],
            json!({"type": "RLIMIT_NPROC", "soft": 10, "hard": 20})
        );
        assert_eq!(r[1]["soft"], 100);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn whole_spec_defaults() {
        let i = image(None, Some(&["sh"]));
        let s = generate_value(&i, &RunOptions::default(), &ctx(), None).unwrap();
        assert_eq!(s["hostname"], "0123456789ab");
        assert_eq!(s["process"]["cwd"], "/w");
        assert_eq!(s["linux"]["maskedPaths"].as_array().unwrap().len(), 11);
        assert_eq!(s["linux"]["readonlyPaths"].as_array().unwrap().len(), 5);
        let shm = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert!(shm["options"]
            .as_array()
            .unwrap()
            .contains(&json!("size=67108864")));
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(ns.contains(&"network") && ns.contains(&"pid"));
        assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        // It parses as an oci-spec Spec.
        generate(&i, &RunOptions::default(), &ctx(), None).unwrap();

        let o = RunOptions {
            privileged: true,
            network: "host".into(),
            memory: Some("64m".into()),
            cpus: Some("1.5".into()),
            pids_limit: Some(20),
            read_only: true,
            user: Some("u".into()),
            ..Default::default()
        };
        let s = generate_value(&i, &o, &ctx(), None).unwrap();
        assert!(s["linux"]["maskedPaths"].is_null());
        assert!(s["linux"]["seccomp"].is_null());
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["memory"]["swap"], 128 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 150000);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 20);
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["process"]["user"]["uid"], 1000);
        assert_eq!(s["process"]["user"]["additionalGids"], json!([50]));
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
    }

    #[test]
    fn etc_files() {
        let h = hosts_file("abc", &["db:10.0.0.2".into()], false);
        assert!(h.contains("127.0.0.1\tlocalhost"));
        assert!(h.contains("10.0.0.2\tdb"));
        assert!(h.contains("\tabc\n"));
        let r = resolv_conf(
            "search x\nnameserver 127.0.0.53\nnameserver 1.1.1.1\n",
            &[],
            false,
        );
        assert_eq!(r, "search x\nnameserver 1.1.1.1\n");
        let r = resolv_conf("nameserver 127.0.0.53\n", &[], false);
        assert!(r.contains("8.8.8.8"));
        let r = resolv_conf("nameserver 1.1.1.1\n", &["9.9.9.9".into()], false);
        assert_eq!(r, "nameserver 9.9.9.9\n");
    }
}

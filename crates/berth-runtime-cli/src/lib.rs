//! runc's command line for berth's OCI runtime: global flags, then one of create, start, state,
//! kill, delete, run, exec, ps, list, pause, resume, update, features, spec, events. Errors go
//! to stderr and, with `--log`, to the log file in runc's text or JSON format (containerd and
//! podman read it); `--debug` adds debug lines ([`berth_runtime::log`]).
//!
//! The parser ([`args`]) and the commands live here, outside the runtime library, so the
//! library does not depend on clap; the `berth-runtime` binary and `berth runtime` both call
//! [`main`].

mod args;

use args::{Cli, Cmd, CreateArgs, UpdateArgs};
use berth_runtime::container::{self, CreateOpts};
use berth_runtime::exec::{self, ExecOpts};
use berth_runtime::state::{self, Container};
use std::io;
use std::path::PathBuf;

/// Why a command failed: the runtime's error, or one of the command line's own.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The runtime library failed.
    #[error(transparent)]
    Runtime(#[from] berth_runtime::error::Error),
    /// `--systemd-cgroup` was given.
    #[error("systemd cgroup driver not supported; use cgroupfs (drop --systemd-cgroup)")]
    SystemdCgroup,
    /// `--rootless` took a value other than true, false or auto.
    #[error("--rootless {0:?}: use true, false or auto")]
    Rootless(String),
    /// `spec` would overwrite a config.json.
    #[error("File {} exists. Remove it first", .0.display())]
    SpecExists(PathBuf),
    /// `spec` could not write config.json.
    #[error("writing {}: {source}", path.display())]
    WriteSpec {
        /// The config.json being written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `events --interval` is not a duration.
    #[error("--interval {0:?}: use a duration like 5s or 500ms")]
    Interval(String),
    /// `ps` could not run ps(1).
    #[error("running ps: {0}")]
    RunPs(io::Error),
    /// ps(1) printed no PID column.
    #[error("ps output has no PID column")]
    PsNoPid,
    /// `ps --format` is neither table nor json.
    #[error("invalid --format {0:?}: use table or json")]
    PsFormat(String),
    /// A size (`update --memory`, ...) is not a number of bytes.
    #[error("invalid size {0:?}: use bytes or a suffix k, m, g")]
    Size(String),
    /// `update -r -` could not read stdin.
    #[error("reading resources from stdin: {0}")]
    ReadStdin(io::Error),
    /// `update -r FILE` could not read FILE.
    #[error("reading {path}: {source}")]
    ReadResources {
        /// The file named by `-r`.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// `update -r` was given something that is not JSON.
    #[error("parsing resources {path}: {source}")]
    ParseResources {
        /// The file named by `-r` (`-` for stdin).
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The merged resources are not `linux.resources`.
    #[error("invalid resources: {0}")]
    Resources(serde_json::Error),
}

impl<E> From<E> for CliError
where
    E: RuntimeOperationError,
{
    fn from(e: E) -> CliError {
        CliError::Runtime(e.into())
    }
}

/// The runtime's per-operation errors, which the command line reports as the runtime's.
trait RuntimeOperationError: Into<berth_runtime::error::Error> {}
impl RuntimeOperationError for berth_runtime::error::ContainerError {}
impl RuntimeOperationError for berth_runtime::error::ExecError {}
impl RuntimeOperationError for berth_runtime::error::StateError {}
impl RuntimeOperationError for berth_runtime::error::ConfigError {}
impl RuntimeOperationError for berth_runtime::error::SysError {}

impl berth_runtime::sys::Errno for CliError {
    fn errno(&self) -> Option<i32> {
        match self {
            CliError::Runtime(e) => e.errno(),
            _ => None,
        }
    }

    fn during_exec(&self) -> bool {
        match self {
            CliError::Runtime(e) => e.during_exec(),
            _ => false,
        }
    }
}

/// The command line's result type.
pub type Result<T> = std::result::Result<T, CliError>;

/// Runs the runtime CLI with `args` (`args[0]` is the program name); returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    // A hook or console peer that goes away must give EPIPE, not kill the runtime (Rust's
    // start-up does this too, but the `berth-runtime` binary skips it).
    // SAFETY: setting a signal disposition; the runtime is single-threaded here.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let cli = match args::parse(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    berth_runtime::log::init(cli.log.clone(), cli.log_format == "json", cli.debug);
    if !matches!(cli.log_format.as_str(), "text" | "json") {
        berth_runtime::log::error(&format!(
            "unknown --log-format {:?}: use text or json",
            cli.log_format
        ));
        return 1;
    }
    // Commands that start container processes first make sure those processes can never
    // reach a writable copy of this binary (CVE-2019-5736): this may re-execute the runtime.
    if matches!(cli.cmd, Cmd::Create(_) | Cmd::Run { .. } | Cmd::Exec { .. }) {
        if let Err(e) = berth_runtime::selfexe::ensure_read_only_exe() {
            berth_runtime::log::error(&format!(
                "making the runtime's own binary read-only (CVE-2019-5736): {e}"
            ));
            return 1;
        }
    }
    let r = dispatch(&cli);
    match r {
        Ok(code) => code,
        Err(e) => {
            berth_runtime::log::error_of(&e);
            // runc's code when exec cannot start the process; engines map it to 126/127.
            if matches!(cli.cmd, Cmd::Exec { .. }) {
                255
            } else {
                1
            }
        }
    }
}

fn create_opts(root: &std::path::Path, c: &CreateArgs) -> CreateOpts {
    CreateOpts {
        root: root.to_path_buf(),
        id: c.id.clone(),
        bundle: c.bundle.clone(),
        pid_file: c.pid_file.clone(),
        console_socket: c.console_socket.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
    }
}

fn dispatch(cli: &Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        return Err(CliError::SystemdCgroup);
    }
    if let Some(r) = &cli.rootless {
        if !matches!(r.as_str(), "true" | "false" | "auto") {
            return Err(CliError::Rootless(r.clone()));
        }
    }
    let root = &cli.root;
    match &cli.cmd {
        Cmd::Create(c) => {
            container::create(&create_opts(root, c), false, false)?;
            Ok(0)
        }
        Cmd::Start { id } => {
            container::start(root, id)?;
            Ok(0)
        }
        Cmd::State { id } => {
            let c = Container::load(root, id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&c.oci_state()).expect("json")
            );
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            let sig = container::parse_signal(signal)?;
            container::kill(root, id, sig, *all)?;
            Ok(0)
        }
        Cmd::Delete { force, id } => {
            container::delete(root, id, *force)?;
            Ok(0)
        }
        Cmd::Run { detach, c, .. } => Ok(container::run(&create_opts(root, c), *detach)?),
        Cmd::Exec {
            process,
            tty,
            detach,
            cwd,
            env,
            user,
            additional_gids,
            cap,
            pid_file,
            console_socket,
            no_new_privs,
            apparmor,
            process_label,
            preserve_fds,
            id,
            args,
        } => Ok(exec::exec(
            root,
            &ExecOpts {
                id: id.clone(),
                process_file: process.clone(),
                args: args.clone(),
                tty: *tty,
                detach: *detach,
                cwd: cwd.clone(),
                env: env.clone(),
                user: user.clone(),
                additional_gids: additional_gids.clone(),
                caps: cap.clone(),
                pid_file: pid_file.clone(),
                console_socket: console_socket.clone(),
                no_new_privs: *no_new_privs,
                apparmor: apparmor.clone(),
                label: process_label.clone(),
                preserve_fds: *preserve_fds,
            },
        )?),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(root, id, format, ps_args),
        Cmd::List { format, quiet } => {
            list(root, format, *quiet);
            Ok(0)
        }
        Cmd::Pause { id } => {
            container::set_paused(root, id, true)?;
            Ok(0)
        }
        Cmd::Resume { id } => {
            container::set_paused(root, id, false)?;
            Ok(0)
        }
        Cmd::Update(u) => {
            let r = update_resources(u)?;
            container::update(root, &u.id, &r)?;
            Ok(0)
        }
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&features()).expect("json")
            );
            Ok(0)
        }
        Cmd::Spec { bundle, rootless } => {
            let p = bundle.join("config.json");
            if p.exists() {
                return Err(CliError::SpecExists(p));
            }
            let v = berth_runtime::config::default_spec(*rootless);
            std::fs::write(&p, serde_json::to_string_pretty(&v).expect("json"))
                .map_err(|source| CliError::WriteSpec { path: p, source })?;
            Ok(0)
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => {
            let ms = parse_duration_ms(interval)?;
            loop {
                let s = container::stats(root, id)?;
                println!("{s}");
                if *stats {
                    return Ok(0);
                }
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
    }
}

fn parse_duration_ms(s: &str) -> Result<u64> {
    let bad = || CliError::Interval(s.to_string());
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    num.parse::<u64>().map(|n| n * mul).map_err(|_| bad())
}

fn ps(root: &std::path::Path, id: &str, format: &str, ps_args: &[String]) -> Result<i32> {
    let pids = container::pids(root, id)?;
    match format {
        "json" => {
            println!("{}", serde_json::to_string(&pids).expect("json"));
            Ok(0)
        }
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(CliError::RunPs)?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let Some(header) = lines.next() else {
                return Ok(0);
            };
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or(CliError::PsNoPid)?;
            println!("{header}");
            for l in lines {
                if let Some(p) = l
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if pids.contains(&p) {
                        println!("{l}");
                    }
                }
            }
            Ok(0)
        }
        f => Err(CliError::PsFormat(f.to_string())),
    }
}

fn list(root: &std::path::Path, format: &str, quiet: bool) {
    let all = container::list(root);
    if quiet {
        for c in &all {
            println!("{}", c.saved.id);
        }
        return;
    }
    if format == "json" {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|c| {
                let s = c.oci_state();
                serde_json::json!({
                    "ociVersion": s["ociVersion"], "id": s["id"], "pid": s["pid"],
                    "status": s["status"], "bundle": s["bundle"], "rootfs": s["rootfs"],
                    "created": s["created"], "annotations": s["annotations"], "owner": s["owner"],
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&v).expect("json"));
        return;
    }
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|c| {
            let s = c.oci_state();
            [
                c.saved.id.clone(),
                s["pid"].to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
                c.saved.bundle.display().to_string(),
                c.saved.created.clone(),
                s["owner"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let mut w = [0usize; 6];
    for r in std::iter::once(&head).chain(rows.iter()) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    for r in std::iter::once(&head).chain(rows.iter()) {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 5 {
                    format!("{c:<width$}", width = w[i])
                } else {
                    c.clone()
                }
            })
            .collect();
        println!("{}", line.join("   "));
    }
}

/// Parses "512m", "1g", "1024" (bytes), "-1" into bytes.
pub fn parse_bytes(s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.trim_end_matches('b').trim_end_matches('i');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| CliError::Size(s.to_string()))?;
    Ok((n * mul as f64) as i64)
}

fn update_resources(u: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    let mut v = match &u.resources {
        Some(f) => {
            let data = if f == "-" {
                let mut s = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)
                    .map_err(CliError::ReadStdin)?;
                s
            } else {
                std::fs::read(f).map_err(|source| CliError::ReadResources {
                    path: f.clone(),
                    source,
                })?
            };
            serde_json::from_slice::<serde_json::Value>(&data).map_err(|source| {
                CliError::ParseResources {
                    path: f.clone(),
                    source,
                }
            })?
        }
        None => serde_json::json!({}),
    };
    let mut set = |section: &str, key: &str, val: serde_json::Value| {
        if !v[section].is_object() {
            v[section] = serde_json::json!({});
        }
        v[section][key] = val;
    };
    if let Some(m) = &u.memory {
        set("memory", "limit", parse_bytes(m)?.into());
    }
    if let Some(m) = &u.memory_reservation {
        set("memory", "reservation", parse_bytes(m)?.into());
    }
    if let Some(m) = &u.memory_swap {
        set("memory", "swap", parse_bytes(m)?.into());
    }
    if let Some(x) = u.cpu_shares {
        set("cpu", "shares", x.into());
    }
    if let Some(x) = u.cpu_period {
        set("cpu", "period", x.into());
    }
    if let Some(x) = u.cpu_quota {
        set("cpu", "quota", x.into());
    }
    if let Some(x) = u.cpu_rt_period {
        set("cpu", "realtimePeriod", x.into());
    }
    if let Some(x) = u.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", x.into());
    }
    if let Some(x) = &u.cpuset_cpus {
        set("cpu", "cpus", x.clone().into());
    }
    if let Some(x) = &u.cpuset_mems {
        set("cpu", "mems", x.clone().into());
    }
    if let Some(x) = u.pids_limit {
        set("pids", "limit", x.into());
    }
    if let Some(x) = u.blkio_weight {
        set("blockIO", "weight", x.into());
    }
    serde_json::from_value(v).map_err(CliError::Resources)
}

fn features() -> serde_json::Value {
    let caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "idmap", "lazytime",
            "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "nolazytime", "nomand",
            "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ridmap",
            "rnodev", "rnoexec", "rnosuid", "ro", "rprivate", "rro", "rshared", "rslave",
            "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid", "sync",
            "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {}
    })
}

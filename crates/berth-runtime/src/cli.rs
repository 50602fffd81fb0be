//! runc's command line: global flags, then one of create, start, state, kill, delete, run, exec,
//! ps, list, pause, resume, update, features, spec, events. Errors go to stderr and, with
//! `--log`, to the log file in runc's text or JSON format (containerd and podman read it);
//! `--debug` adds debug lines ([`crate::log`]).

use crate::container::{self, CreateOpts};
use crate::error::{Error, Result};
use crate::exec::{self, ExecOpts};
use crate::state::{self, Container};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "berth-runtime",
    version,
    about = "berth's OCI runtime (runc-compatible command line)"
)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Log file (warnings and errors; debug lines with --debug). Default: stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Log what the runtime does (debug level).
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not supported).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    /// Ignored (runc compatibility).
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid here.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to.
    #[arg(long = "console-socket")]
    console_socket: Option<String>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container (its init waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to a container's init (or every process with --all).
    Kill {
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Create and start a container.
    Run {
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(long, hide = true)]
        keep: bool,
        #[command(flatten)]
        c: CreateArgs,
    },
    /// Run a process in a running container.
    Exec {
        #[arg(short = 'p', long)]
        process: Option<PathBuf>,
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(long)]
        cwd: Option<String>,
        #[arg(short = 'e', long)]
        env: Vec<String>,
        #[arg(short = 'u', long)]
        user: Option<String>,
        #[arg(short = 'g', long = "additional-gids")]
        additional_gids: Vec<u32>,
        #[arg(short = 'c', long)]
        cap: Vec<String>,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<String>,
        #[arg(long = "no-new-privs")]
        no_new_privs: bool,
        #[arg(short = 'a', long)]
        apparmor: Option<String>,
        #[arg(short = 'l', long = "process-label")]
        process_label: Option<String>,
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: u32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List a container's processes.
    Ps {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update(UpdateArgs),
    /// Print what this runtime supports (runtime-spec features.md).
    Features,
    /// Write a default config.json.
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
    /// Print container events (resource statistics).
    Events {
        #[arg(long)]
        stats: bool,
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
}

#[derive(Args, Debug)]
struct UpdateArgs {
    /// JSON file with linux.resources ("-" for stdin).
    #[arg(short = 'r', long)]
    resources: Option<String>,
    #[arg(long)]
    memory: Option<String>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    id: String,
}

/// Runs the runtime CLI with `args` (`args[0]` is the program name); returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    // A hook or console peer that goes away must give EPIPE, not kill the runtime (Rust's
    // start-up does this too, but the `berth-runtime` binary skips it).
    // SAFETY: setting a signal disposition; the runtime is single-threaded here.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // runc accepts single-dash long flags (-root); clap wants two dashes.
    let args: Vec<String> = args
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i > 0
                && a.starts_with('-')
                && !a.starts_with("--")
                && a.len() > 2
                && !a[1..].starts_with(|c: char| c.is_ascii_digit())
            {
                let name = a[1..].split('=').next().unwrap_or("");
                if LONG_FLAGS.contains(&name) {
                    return format!("-{a}");
                }
            }
            a
        })
        .collect();
    // The lifecycle commands engines call for every container skip clap (which costs about a
    // megabyte of resident memory to build); anything unusual goes through clap.
    let cli = match fast_parse(&args) {
        Some(c) => c,
        None => match Cli::try_parse_from(&args) {
            Ok(c) => c,
            Err(e) => {
                let code = if e.use_stderr() { 1 } else { 0 };
                let _ = e.print();
                return code;
            }
        },
    };
    crate::log::init(cli.log.clone(), cli.log_format == "json", cli.debug);
    if !matches!(cli.log_format.as_str(), "text" | "json") {
        crate::log::error(&format!(
            "unknown --log-format {:?}: use text or json",
            cli.log_format
        ));
        return 1;
    }
    // Commands that start container processes first make sure those processes can never
    // reach a writable copy of this binary (CVE-2019-5736): this may re-execute the runtime.
    if matches!(cli.cmd, Cmd::Create(_) | Cmd::Run { .. } | Cmd::Exec { .. }) {
        if let Err(e) = crate::selfexe::ensure_read_only_exe() {
            crate::log::error(&format!(
                "making the runtime's own binary read-only (CVE-2019-5736): {e}"
            ));
            return 1;
        }
    }
    let r = dispatch(&cli);
    match r {
        Ok(code) => code,
        Err(e) => {
            crate::log::error_of(&e);
            // runc's code when exec cannot start the process; engines map it to 126/127.
            if matches!(cli.cmd, Cmd::Exec { .. }) {
                255
            } else {
                1
            }
        }
    }
}

/// Parses the hot lifecycle commands (create, run, start, state, kill, delete) with their usual
/// flags; None for anything else, which clap then handles (help, errors, other commands).
fn fast_parse(args: &[String]) -> Option<Cli> {
    let mut it = args.iter().skip(1).map(String::as_str).peekable();
    let mut cli = Cli {
        root: PathBuf::from(state::DEFAULT_ROOT),
        log: None,
        log_format: "text".into(),
        debug: false,
        systemd_cgroup: false,
        rootless: None,
        criu: None,
        cmd: Cmd::Features,
    };
    fn split(a: &str) -> (&str, Option<&str>) {
        match a.split_once('=') {
            Some((n, v)) if a.starts_with("--") => (n, Some(v)),
            _ => (a, None),
        }
    }
    fn value<'a>(
        inline: Option<&'a str>,
        it: &mut impl Iterator<Item = &'a str>,
    ) -> Option<&'a str> {
        inline.or_else(|| it.next())
    }
    while let Some(a) = it.peek().copied() {
        if !a.starts_with('-') {
            break;
        }
        it.next();
        let (name, inline) = split(a);
        match name {
            "--root" => cli.root = PathBuf::from(value(inline, &mut it)?),
            "--log" => cli.log = Some(PathBuf::from(value(inline, &mut it)?)),
            "--log-format" => cli.log_format = value(inline, &mut it)?.to_string(),
            "--debug" if inline.is_none() => cli.debug = true,
            _ => return None,
        }
    }
    let cmd = it.next()?;
    let mut pos: Vec<&str> = Vec::new();
    let mut c = CreateArgs {
        bundle: PathBuf::from("."),
        pid_file: None,
        console_socket: None,
        no_pivot: false,
        no_new_keyring: false,
        preserve_fds: 0,
        id: String::new(),
    };
    let (mut detach, mut force, mut all) = (false, false, false);
    let creating = matches!(cmd, "create" | "run");
    while let Some(a) = it.next() {
        if !a.starts_with('-') || a == "-" {
            pos.push(a);
            continue;
        }
        let (name, inline) = split(a);
        match (cmd, name) {
            (_, "-b" | "--bundle") if creating => c.bundle = PathBuf::from(value(inline, &mut it)?),
            (_, "--pid-file") if creating => {
                c.pid_file = Some(PathBuf::from(value(inline, &mut it)?))
            }
            (_, "--console-socket") if creating => {
                c.console_socket = Some(value(inline, &mut it)?.to_string())
            }
            (_, "--no-pivot") if creating && inline.is_none() => c.no_pivot = true,
            (_, "--no-new-keyring") if creating && inline.is_none() => c.no_new_keyring = true,
            (_, "--preserve-fds") if creating => {
                c.preserve_fds = value(inline, &mut it)?.parse().ok()?
            }
            ("run", "-d" | "--detach") if inline.is_none() => detach = true,
            ("delete", "-f" | "--force") if inline.is_none() => force = true,
            ("kill", "-a" | "--all") if inline.is_none() => all = true,
            _ => return None,
        }
    }
    let id =
        |pos: &[&str], n: usize| -> Option<String> { (pos.len() == n).then(|| pos[0].to_string()) };
    cli.cmd = match cmd {
        "create" | "run" => {
            c.id = id(&pos, 1)?;
            if cmd == "create" {
                Cmd::Create(c)
            } else {
                Cmd::Run {
                    detach,
                    keep: false,
                    c,
                }
            }
        }
        "start" => Cmd::Start { id: id(&pos, 1)? },
        "state" => Cmd::State { id: id(&pos, 1)? },
        "delete" => Cmd::Delete {
            force,
            id: id(&pos, 1)?,
        },
        "kill" if pos.len() == 1 || pos.len() == 2 => Cmd::Kill {
            all,
            id: pos[0].to_string(),
            signal: pos.get(1).unwrap_or(&"SIGTERM").to_string(),
        },
        _ => return None,
    };
    Some(cli)
}

const LONG_FLAGS: &[&str] = &[
    "root",
    "log",
    "log-format",
    "debug",
    "systemd-cgroup",
    "rootless",
    "criu",
    "bundle",
    "pid-file",
    "console-socket",
    "no-pivot",
    "no-new-keyring",
    "preserve-fds",
    "detach",
    "force",
    "all",
    "process",
    "tty",
    "cwd",
    "env",
    "user",
    "cap",
    "no-new-privs",
    "format",
    "quiet",
    "resources",
    "memory",
    "pids-limit",
    "stats",
    "interval",
    "process-label",
    "apparmor",
];

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
        return Err(Error::Msg(
            "systemd cgroup driver not supported; use cgroupfs (drop --systemd-cgroup)".into(),
        ));
    }
    if let Some(r) = &cli.rootless {
        if !matches!(r.as_str(), "true" | "false" | "auto") {
            return Err(Error::Msg(format!(
                "--rootless {r:?}: use true, false or auto"
            )));
        }
    }
    let root = &cli.root;
    match &cli.cmd {
        Cmd::Create(c) => {
            container::create(&create_opts(root, c), false, false)?;
            Ok(0)
        }
        Cmd::Start { id } => Ok(container::start(root, id).map(|_| 0)?),
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
            Ok(container::kill(root, id, sig, *all).map(|_| 0)?)
        }
        Cmd::Delete { force, id } => Ok(container::delete(root, id, *force).map(|_| 0)?),
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
        Cmd::Pause { id } => Ok(container::set_paused(root, id, true).map(|_| 0)?),
        Cmd::Resume { id } => Ok(container::set_paused(root, id, false).map(|_| 0)?),
        Cmd::Update(u) => {
            let r = update_resources(u)?;
            Ok(container::update(root, &u.id, &r).map(|_| 0)?)
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
                return Err(Error::Msg(format!(
                    "File {} exists. Remove it first",
                    p.display()
                )));
            }
            let v = crate::config::default_spec(*rootless);
            std::fs::write(&p, serde_json::to_string_pretty(&v).expect("json"))
                .map_err(|e| Error::Msg(format!("writing {}: {e}", p.display())))?;
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
    let bad = || Error::Msg(format!("--interval {s:?}: use a duration like 5s or 500ms"));
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
                .map_err(|e| Error::Msg(format!("running ps: {e}")))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let Some(header) = lines.next() else {
                return Ok(0);
            };
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| Error::Msg("ps output has no PID column".into()))?;
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
        f => Err(Error::Msg(format!(
            "invalid --format {f:?}: use table or json"
        ))),
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
        .map_err(|_| Error::Msg(format!("invalid size {s:?}: use bytes or a suffix k, m, g")))?;
    Ok((n * mul as f64) as i64)
}

fn update_resources(u: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    let mut v = match &u.resources {
        Some(f) => {
            let data = if f == "-" {
                let mut s = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)
                    .map_err(|e| Error::Msg(format!("reading resources from stdin: {e}")))?;
                s
            } else {
                std::fs::read(f).map_err(|e| Error::Msg(format!("reading {f}: {e}")))?
            };
            serde_json::from_slice::<serde_json::Value>(&data)
                .map_err(|e| Error::Msg(format!("parsing resources {f}: {e}")))?
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
    serde_json::from_value(v).map_err(|e| Error::Msg(format!("invalid resources: {e}")))
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

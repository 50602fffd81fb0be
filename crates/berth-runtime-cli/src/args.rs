//! The one parser of runc's command line, shared by the `berth-runtime` binary and `berth
//! runtime`: runc's single-dash long flags (`-root`) are accepted, the lifecycle commands
//! engines run for every container are parsed by hand ([`fast_parse`]: building clap's
//! parser costs about a megabyte of resident memory), and everything else goes through clap.

use berth_runtime::state;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Parses `args` (`args[0]` is the program name). An `Err` is clap's: help, version or a usage
/// error, which the caller prints ([`clap::Error::print`]); the exit code is 0 for help and
/// version ([`clap::Error::use_stderr`] false) and 1 otherwise.
pub(crate) fn parse(args: Vec<String>) -> Result<Cli, clap::Error> {
    let args = normalize(args);
    match fast_parse(&args) {
        Some(c) => Ok(c),
        None => Cli::try_parse_from(&args),
    }
}

/// runc accepts single-dash long flags (`-root`); clap wants two dashes.
fn normalize(args: Vec<String>) -> Vec<String> {
    args.into_iter()
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
        .collect()
}

#[derive(Parser, Debug)]
#[command(
    name = "berth-runtime",
    version,
    about = "berth's OCI runtime (runc-compatible command line)"
)]
pub(crate) struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = state::DEFAULT_ROOT)]
    pub(crate) root: PathBuf,
    /// Log file (warnings and errors; debug lines with --debug). Default: stderr.
    #[arg(long, global = true)]
    pub(crate) log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub(crate) log_format: String,
    /// Log what the runtime does (debug level).
    #[arg(long, global = true)]
    pub(crate) debug: bool,
    /// Use systemd for cgroups (not supported).
    #[arg(long = "systemd-cgroup", global = true)]
    pub(crate) systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub(crate) rootless: Option<String>,
    /// Ignored (runc compatibility).
    #[arg(long, global = true, hide = true)]
    pub(crate) criu: Option<String>,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub(crate) bundle: PathBuf,
    /// Write the init's pid here.
    #[arg(long = "pid-file")]
    pub(crate) pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to.
    #[arg(long = "console-socket")]
    pub(crate) console_socket: Option<String>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub(crate) no_pivot: bool,
    /// Do not create a session keyring.
    #[arg(long = "no-new-keyring")]
    pub(crate) no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub(crate) preserve_fds: u32,
    /// Container id.
    pub(crate) id: String,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
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
pub(crate) struct UpdateArgs {
    /// JSON file with linux.resources ("-" for stdin).
    #[arg(short = 'r', long)]
    pub(crate) resources: Option<String>,
    #[arg(long)]
    pub(crate) memory: Option<String>,
    #[arg(long = "memory-reservation")]
    pub(crate) memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    pub(crate) memory_swap: Option<String>,
    /// runc spells it `--cpu-share`; `--cpu-shares` is Docker's spelling.
    #[arg(long = "cpu-shares", visible_alias = "cpu-share")]
    pub(crate) cpu_shares: Option<u64>,
    #[arg(long = "cpu-period")]
    pub(crate) cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    pub(crate) cpu_quota: Option<i64>,
    #[arg(long = "cpu-rt-period")]
    pub(crate) cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    pub(crate) cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub(crate) cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub(crate) cpuset_mems: Option<String>,
    #[arg(long = "pids-limit")]
    pub(crate) pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub(crate) blkio_weight: Option<u16>,
    pub(crate) id: String,
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

/// runc's long flags, which it also takes with one dash (Go's flag package).
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
    "keep",
    "additional-gids",
    "memory-reservation",
    "memory-swap",
    "cpu-share",
    "cpu-shares",
    "cpu-period",
    "cpu-quota",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "cpuset-cpus",
    "cpuset-mems",
    "blkio-weight",
];

#[cfg(test)]
mod tests;

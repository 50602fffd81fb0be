//! The docker-like command line. Each command group lives in its own module:
//! `image` (pull, images, rmi, ...), `container` (run, ps, exec, ...).

/// `println!` for what a command shows on stdout: a reader that went away (`berth ps | head
/// -1`) ends berth as it ends a C tool or Go's docker CLI, by SIGPIPE, never with a panic.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            $crate::cli::stdout_failed(e)
        }
    }};
}

/// `print!` for what a command shows on stdout; see [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($t)*) {
            $crate::cli::stdout_failed(e)
        }
    }};
}

pub mod container;
mod display;
pub mod image;
pub mod network;
mod progress;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "A daemonless container engine",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command understands.
#[derive(Args, Debug, Clone)]
pub struct Globals {
    /// Where images, containers and volumes live
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = berth_engine::record::DEFAULT_ROOT
    )]
    pub root: PathBuf,
    /// Where running containers keep transient state (spec, /etc files, sockets, runtime
    /// state) [default: /run/berth with the default --root, else ROOT/run]
    #[arg(long, global = true, env = "BERTH_RUNROOT")]
    pub runroot: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace
    #[arg(long, global = true, env = "BERTH_LOG_LEVEL", default_value = "warn")]
    pub log_level: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Image(image::ImageCommand),
    #[command(flatten)]
    Container(container::ContainerCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkSub),
    /// List port mappings or a specific mapping for the container
    Port {
        container: String,
        /// PRIVATE_PORT[/PROTO]
        private_port: Option<String>,
    },
    /// A network's DNS responder, started by berth
    #[command(name = "__dns", hide = true)]
    Dns {
        networks_dir: PathBuf,
        network: String,
    },
    /// Run berth's OCI runtime with runc's command line (`berth runtime --help`)
    Runtime {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub fn init_logging(g: &Globals) {
    // The netlink crate warns about attributes newer kernels add; that is no news to users.
    let quiet = ",netlink_packet_route=error";
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{}{quiet}", g.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn{quiet}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Returns the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Image(cmd) => image::run(cmd, &cli.global),
        Command::Container(cmd) => container::run(cmd, &cli.global),
        Command::Network(cmd) => network::run(cmd, &cli.global),
        Command::Port {
            container,
            private_port,
        } => network::port(&cli.global, &container, private_port.as_deref()),
        Command::Dns {
            networks_dir,
            network,
        } => network::dns(networks_dir, network),
        Command::Runtime { mut args } => {
            args.insert(0, "berth-runtime".into());
            Ok(berth_runtime_cli::main(args))
        }
    }
}

/// Ends berth after a failed write to stdout: quietly by SIGPIPE when the reader is gone,
/// else with the error (a full disk behind a redirect), exit 125.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        die_of_sigpipe();
    }
    eprintln!("berth: writing to standard output: {e}");
    std::process::exit(125)
}

/// Whether an error comes from writing to a reader that went away.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Dies of SIGPIPE, as a process that did not ignore it would have at the failed write.
pub fn die_of_sigpipe() -> ! {
    use rustix::process::{getpid, kill_process, Signal};
    // SAFETY: restoring the default disposition of SIGPIPE; berth is about to exit and no
    // other code relies on it being ignored from here on.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let _ = kill_process(getpid(), Signal::PIPE);
    // The signal is delivered before kill returns; this is only reached if it was blocked.
    std::process::exit(141)
}

/// An error and its causes on one line: "pulling busybox: registry said 404: ...". A cause
/// whose text its parents already print (a `thiserror` message that embeds its `#[source]`,
/// an `io::Error` wrapped with its own text) is printed once.
pub fn format_error(err: &anyhow::Error) -> String {
    join_causes(err.chain())
}

/// The messages of an error chain, outermost first, joined by ": ", each cause skipped when
/// the text printed so far already contains it.
fn join_causes<'a>(chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut out = String::new();
    for cause in chain {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use std::io;

    /// An error that prints its source in its own message, as many `thiserror` enums do.
    #[derive(Debug, thiserror::Error)]
    enum Embeds {
        #[error("writing {path}: {source}")]
        Write {
            path: String,
            #[source]
            source: io::Error,
        },
    }

    /// An error that wraps another transparently or with its own words only.
    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error(transparent)]
        Inner(#[from] Embeds),
        #[error("creating the container")]
        Create(#[source] Embeds),
    }

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(libc::ENOSPC)
    }

    #[test]
    fn each_cause_is_printed_once() {
        let e = Embeds::Write {
            path: "/r/x".into(),
            source: enospc(),
        };
        let os = enospc().to_string();
        let got = format_error(&anyhow::Error::new(e));
        assert_eq!(got, format!("writing /r/x: {os}"));
        assert_eq!(got.matches("os error 28").count(), 1, "{got}");
    }

    #[test]
    fn transparent_and_context_layers_do_not_repeat() {
        let e = Outer::Inner(Embeds::Write {
            path: "/nope".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        });
        let got = format_error(&anyhow::Error::new(e).context("running busybox"));
        assert_eq!(
            got,
            format!(
                "running busybox: writing /nope: {}",
                io::Error::from_raw_os_error(libc::ENOENT)
            )
        );
    }

    #[test]
    fn causes_not_in_the_message_are_kept() {
        let e = Outer::Create(Embeds::Write {
            path: "/r/y".into(),
            source: enospc(),
        });
        let got = format_error(&anyhow::Error::new(e));
        assert_eq!(
            got,
            format!("creating the container: writing /r/y: {}", enospc())
        );
        let plain = anyhow::anyhow!("outer").context("ctx");
        assert_eq!(format_error(&plain), "ctx: outer");
    }
}

//! Container commands: run, create, start, ps, stop, rm, logs, exec, ...

use super::Globals;
use anyhow::{anyhow, bail, Context, Result};
use berth_engine::attach::{parse_detach_keys, ClientOptions, Outcome, DEFAULT_DETACH_KEYS};
use berth_engine::commands::LogsOptions;
use berth_engine::logs::Stream;
use berth_engine::process::SingleThreaded;
use berth_engine::record::{age, human_duration, Container};
use berth_engine::{Engine, EngineError, RunOptions};
use clap::{ArgAction, Args, Subcommand};
use std::io::Write;
use std::time::Duration;

/// The flags of `run` and `create`.
/// The containers of `stop` and `restart`, and how long they get to stop.
#[derive(Args, Debug, Clone)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunFlags {
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Override the key sequence for detaching a container (default ctrl-p,ctrl-q)
    #[arg(long = "detach-keys", value_name = "KEYS")]
    detach_keys: Option<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long = "tmpfs")]
    tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long = "ulimit")]
    ulimit: Vec<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Security options (seccomp=unconfined|PROFILE, no-new-privileges)
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Add a host device to the container
    #[arg(long = "device")]
    device: Vec<String>,
    /// Sysctl options
    #[arg(long = "sysctl")]
    sysctl: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    shm_size: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    stop_timeout: Option<i64>,
    /// Connect a container to a network: bridge, none, host, container:NAME or a network's name
    /// (default: $BERTH_DEFAULT_NETWORK, else bridge)
    #[arg(
        long = "network",
        alias = "net",
        env = "BERTH_DEFAULT_NETWORK",
        default_value = "bridge"
    )]
    network: String,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// Publish a container's port(s) to the host ([hostip:][hostport:]ctrport[/proto])
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    dns_option: Vec<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// Pull image before running: always, missing, never
    #[arg(long, default_value = "missing")]
    pull: String,
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// The image, then the command and its arguments. As in Docker, berth's own flags end at
    /// the image: everything after it belongs to the command (`run IMG -c x`, `run IMG --help`).
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    image_and_command: Vec<String>,
}

/// Splits `FIRST [ARG...]`, the positional that ends berth's flags (the image of `run`, the
/// container of `exec`). Taking hyphenated values lets the command's own flags through; the
/// price is that an unknown flag *before* the image would be taken for it, so that is
/// refused here as Docker refuses it.
fn split_positional<'a>(
    args: &'a [String],
    command: &str,
    what: &str,
) -> Result<(&'a str, &'a [String])> {
    match args.split_first() {
        Some((first, _)) if first.starts_with('-') && first != "-" => {
            bail!("unknown flag: {first}\nSee 'berth {command} --help'.")
        }
        Some((first, rest)) => Ok((first, rest)),
        None => bail!("\"berth {command}\" requires {what}\nSee 'berth {command} --help'."),
    }
}

impl RunFlags {
    /// The image, as written.
    fn image(&self, command: &str) -> Result<&str> {
        Ok(split_positional(&self.image_and_command, command, "an image")?.0)
    }

    /// The command and its arguments after the image.
    fn command(&self) -> &[String] {
        self.image_and_command.get(1..).unwrap_or_default()
    }

    fn options(&self, detach: bool, rm: bool) -> Result<RunOptions> {
        berth_net::NetworkMode::parse(&self.network)?;
        berth_engine::volume::parse(&self.volume, &self.mount, &self.tmpfs)?;
        use berth_engine::options::Flag;
        Ok(RunOptions {
            name: self.name.clone(),
            interactive: self.interactive,
            tty: self.tty,
            detach,
            rm,
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            group_add: self.group_add.clone(),
            entrypoint: self.entrypoint.clone(),
            cmd: self.command().to_vec(),
            hostname: self.hostname.clone(),
            volumes: self.volume.clone(),
            mounts: self.mount.clone(),
            tmpfs: self.tmpfs.clone(),
            read_only: self.read_only,
            memory: Flag::parse_opt("--memory", self.memory.as_deref())?,
            memory_swap: Flag::parse_opt("--memory-swap", self.memory_swap.as_deref())?,
            cpus: Flag::parse_opt("--cpus", self.cpus.as_deref())?,
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self.cpuset_cpus.clone(),
            pids_limit: self.pids_limit,
            ulimits: Flag::parse_all("--ulimit", &self.ulimit)?,
            cap_add: Flag::parse_all("--cap-add", &self.cap_add)?,
            cap_drop: Flag::parse_all("--cap-drop", &self.cap_drop)?,
            privileged: self.privileged,
            security_opt: Flag::parse_all("--security-opt", &self.security_opt)?,
            devices: Flag::parse_all("--device", &self.device)?,
            sysctls: Flag::parse_all("--sysctl", &self.sysctl)?,
            shm_size: Flag::parse_opt("--shm-size", self.shm_size.as_deref())?,
            init: self.init,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            network: self.network.clone(),
            labels: self.label.clone(),
            add_hosts: self.add_host.clone(),
            dns: Flag::parse_all("--dns", &self.dns)?,
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            ip: Flag::parse_opt("--ip", self.ip.as_deref())?,
            mac_address: self.mac_address.clone(),
            network_aliases: self.network_alias.clone(),
            publish: Flag::parse_all("-p", &self.publish)?,
            publish_all: self.publish_all,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run {
        /// Run container in background and print container ID
        #[arg(short = 'd', long)]
        detach: bool,
        /// Automatically remove the container when it exits
        #[arg(long)]
        rm: bool,
        #[command(flatten)]
        flags: Box<RunFlags>,
    },
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create {
        /// Automatically remove the container when it exits
        #[arg(long)]
        rm: bool,
        #[command(flatten)]
        flags: Box<RunFlags>,
    },
    /// Start one or more stopped containers
    Start {
        /// Attach STDOUT/STDERR and forward signals
        #[arg(short = 'a', long)]
        attach: bool,
        /// Attach container's STDIN
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Override the key sequence for detaching a container (default ctrl-p,ctrl-q)
        #[arg(long = "detach-keys", value_name = "KEYS")]
        detach_keys: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers
    Ps {
        /// Show all containers (default shows just running)
        #[arg(short = 'a', long)]
        all: bool,
        /// Only display container IDs
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Don't truncate output
        #[arg(long)]
        no_trunc: bool,
        /// Format output: table or json
        #[arg(long)]
        format: Option<String>,
    },
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill {
        /// Signal to send to the container
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove one or more containers
    Rm {
        /// Force the removal of a running container (uses SIGKILL)
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove anonymous volumes associated with the container
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Fetch the logs of a container
    Logs {
        /// Follow log output
        #[arg(short = 'f', long)]
        follow: bool,
        /// Show timestamps
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Number of lines to show from the end of the logs
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Show logs since timestamp (RFC 3339) or relative (e.g. 42s, 10m)
        #[arg(long)]
        since: Option<String>,
        container: String,
    },
    /// Execute a command in a running container
    Exec {
        /// Keep STDIN open
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Allocate a pseudo-TTY
        #[arg(short = 't', long)]
        tty: bool,
        /// Detached mode: run command in the background
        #[arg(short = 'd', long)]
        detach: bool,
        /// Username or UID (format: <name|uid>[:<group|gid>])
        #[arg(short = 'u', long)]
        user: Option<String>,
        /// Working directory inside the container
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        /// Set environment variables
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        /// The container, then the command and its arguments (berth's flags end at the
        /// container).
        #[arg(
            value_name = "CONTAINER COMMAND [ARG...]",
            required = true,
            num_args = 1..,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        container_and_command: Vec<String>,
    },
    /// Attach local standard input, output, and error streams to a running container
    Attach {
        /// Do not attach STDIN
        #[arg(long)]
        no_stdin: bool,
        /// Override the key sequence for detaching a container (default ctrl-p,ctrl-q)
        #[arg(long = "detach-keys", value_name = "KEYS")]
        detach_keys: Option<String>,
        container: String,
    },
    /// Block until one or more containers stop, then print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Return low-level information on containers
    Inspect {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Display the running processes of a container
    Top { container: String },
    /// Display a live stream of container(s) resource usage statistics
    Stats {
        /// Disable streaming stats and only pull the first result
        #[arg(long)]
        no_stream: bool,
        /// Show all containers (default shows just running)
        #[arg(short = 'a', long)]
        all: bool,
        containers: Vec<String>,
    },
    /// Pause all processes within one or more containers
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within one or more containers
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// berth's init inside a container (`--init`): forwards signals, reaps zombies
    #[command(hide = true)]
    Init {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerSub),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeSub),
    /// Manage berth
    #[command(subcommand)]
    System(SystemSub),
}

#[derive(Subcommand, Debug)]
pub enum ContainerSub {
    /// Remove all stopped containers
    Prune {
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// List containers
    Ls {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum VolumeSub {
    /// Create a volume
    Create {
        name: Option<String>,
        #[arg(short = 'l', long = "label")]
        label: Vec<String>,
    },
    /// List volumes
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Remove one or more volumes
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused volumes (anonymous ones; all unused with -a)
    Prune {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SystemSub {
    /// Show berth disk usage
    Df,
}

pub fn run(cmd: ContainerCommand, g: &Globals) -> Result<i32> {
    match run_inner(cmd, g) {
        Err(e) => match e.downcast_ref::<EngineError>() {
            Some(EngineError::StartFailed(code, msg)) => {
                eprintln!("berth: {msg}");
                Ok(*code)
            }
            _ => Err(e),
        },
        ok => ok,
    }
}

fn run_inner(cmd: ContainerCommand, g: &Globals) -> Result<i32> {
    if let ContainerCommand::Init { command } = &cmd {
        let c: Vec<String> = match command.first().map(String::as_str) {
            Some("--") => command[1..].to_vec(),
            _ => command.clone(),
        };
        return Ok(berth_engine::init::run(&c, single_threaded()?));
    }
    let engine = Engine::open(&g.root, g.runroot.as_deref())?;
    match cmd {
        ContainerCommand::Run { detach, rm, flags } => cmd_run(&engine, g, flags, detach, rm, true),
        ContainerCommand::Create { rm, flags } => cmd_run(&engine, g, flags, true, rm, false),
        ContainerCommand::Start {
            attach,
            interactive,
            detach_keys,
            containers,
        } => cmd_start(
            &engine,
            &containers,
            attach,
            interactive,
            detach_keys.as_deref(),
        ),
        ContainerCommand::Ps {
            all,
            quiet,
            no_trunc,
            format,
        } => cmd_ps(&engine, all, quiet, no_trunc, format.as_deref()),
        ContainerCommand::Container(ContainerSub::Ls { all, quiet }) => {
            cmd_ps(&engine, all, quiet, false, None)
        }
        ContainerCommand::Stop(StopArgs { time, containers }) => each(&containers, |k| {
            engine.stop(k, time)?;
            outln!("{k}");
            Ok(())
        }),
        ContainerCommand::Restart(StopArgs { time, containers }) => each(&containers, |k| {
            let sock = engine.restart(k, time, single_threaded()?)?;
            wait_started(&sock)?;
            outln!("{k}");
            Ok(())
        }),
        ContainerCommand::Kill { signal, containers } => each(&containers, |k| {
            engine.kill(k, &signal)?;
            outln!("{k}");
            Ok(())
        }),
        ContainerCommand::Rm {
            force,
            volumes,
            containers,
        } => {
            let mut code = 0;
            for (k, r) in containers
                .iter()
                .zip(engine.remove_all(&containers, force, volumes))
            {
                match r {
                    Ok(_) => outln!("{k}"),
                    Err(e) => {
                        eprintln!(
                            "Error response from daemon: {}",
                            super::format_error(&e.into())
                        );
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        ContainerCommand::Logs {
            follow,
            timestamps,
            tail,
            since,
            container,
        } => cmd_logs(
            &engine,
            &container,
            follow,
            timestamps,
            &tail,
            since.as_deref(),
        ),
        ContainerCommand::Exec {
            interactive,
            tty,
            detach,
            user,
            workdir,
            env,
            container_and_command,
        } => {
            let (container, command) = split_positional(
                &container_and_command,
                "exec",
                "at least 2 arguments: a container and a command",
            )?;
            if command.is_empty() {
                bail!("\"berth exec\" requires at least 2 arguments\nSee 'berth exec --help'.");
            }
            Ok(engine.exec(
                container,
                command,
                tty,
                interactive,
                detach,
                user.as_deref(),
                workdir.as_deref(),
                &env,
            )?)
        }
        ContainerCommand::Attach {
            no_stdin,
            detach_keys,
            container,
        } => {
            let keys = detach_keys_arg(detach_keys.as_deref())?;
            let (c, sock) = engine.connect(&container)?;
            let o = ClientOptions {
                stdin: !no_stdin && c.options.interactive,
                tty: c.options.tty,
                proxy_signals: !c.options.tty,
                until_started: false,
                detach_keys: keys,
            };
            finish(&engine, &c.id, Engine::attach(&sock, &o)?)
        }
        ContainerCommand::Wait { containers } => {
            for k in &containers {
                outln!("{}", engine.wait(k)?);
            }
            Ok(0)
        }
        ContainerCommand::Inspect { containers } => {
            let mut out = Vec::new();
            let mut missing = None;
            for k in &containers {
                match engine.get(k) {
                    Ok(c) => out.push(engine.inspect(&c)),
                    Err(e) => missing = Some(e),
                }
            }
            outln!("{}", serde_json::to_string_pretty(&out)?);
            match missing {
                Some(e) => Err(e.into()),
                None => Ok(0),
            }
        }
        ContainerCommand::Top { container } => cmd_top(&engine, &container),
        ContainerCommand::Stats {
            no_stream,
            all,
            containers,
        } => cmd_stats(&engine, &containers, all, no_stream),
        ContainerCommand::Pause { containers } => each(&containers, |k| {
            engine.pause(k, true)?;
            outln!("{k}");
            Ok(())
        }),
        ContainerCommand::Unpause { containers } => each(&containers, |k| {
            engine.pause(k, false)?;
            outln!("{k}");
            Ok(())
        }),
        ContainerCommand::Container(ContainerSub::Prune { force: _ }) => {
            let ids = engine.prune()?;
            outln!("Deleted Containers:");
            for id in ids {
                outln!("{id}");
            }
            Ok(0)
        }
        ContainerCommand::Volume(v) => cmd_volume(&engine, v),
        ContainerCommand::Init { .. } => unreachable!("handled above"),
        ContainerCommand::System(SystemSub::Df) => cmd_df(&engine),
    }
}

/// The token for the engine's calls that fork. berth's container commands run on the main
/// thread, and every thread they start (an image pull's, parallel removals) is joined
/// before they return, so the check holds wherever a container is started.
fn single_threaded() -> Result<SingleThreaded> {
    Ok(SingleThreaded::check()?)
}

/// Runs `f` for each container; errors are printed and make the exit code 1.
fn each(keys: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut code = 0;
    for k in keys {
        if let Err(e) = f(k) {
            eprintln!("Error response from daemon: {}", super::format_error(&e));
            code = 1;
        }
    }
    Ok(code)
}

fn pull_image(
    engine: &Engine,
    g: &Globals,
    image: &str,
    policy: &str,
) -> Result<berth_image::Image> {
    let store = berth_image::Store::open(&engine.root)?;
    let local = || -> Result<Option<berth_image::Image>> { Ok(store.resolve(image)?) };
    let pull = || -> Result<berth_image::Image> {
        eprintln!("Unable to find image '{image}' locally");
        // Progress goes to stdout: only show it on a terminal, so that the
        // output of `run` (and the id printed by `run -d`) stays clean in scripts.
        use std::io::IsTerminal;
        let shown = super::progress::PullProgress::new(!std::io::stdout().is_terminal());
        berth_image::pull_blocking(&store, image, &Default::default(), &shown)
            .with_context(|| format!("pulling {image}"))
    };
    let _ = g;
    match policy {
        "always" => pull(),
        "missing" => match local()? {
            Some(i) => Ok(i),
            None => pull(),
        },
        "never" => local()?.ok_or_else(|| {
            anyhow!("No such image: {image} (and --pull never: run `berth pull {image}` first)")
        }),
        p => bail!("--pull {p}: expected always, missing or never"),
    }
}

fn wait_started(sock: &std::os::fd::OwnedFd) -> Result<()> {
    let o = ClientOptions {
        stdin: false,
        tty: false,
        proxy_signals: false,
        until_started: true,
        detach_keys: Vec::new(),
    };
    match Engine::attach(sock, &o)? {
        Outcome::Started | Outcome::Exited(_) | Outcome::Detached => Ok(()),
        Outcome::Failed(code, msg) => Err(EngineError::StartFailed(code, msg).into()),
        Outcome::Closed => bail!("the container's monitor exited before the container started"),
    }
}

/// The exit code once an attached session ends.
fn finish(engine: &Engine, id: &str, outcome: Outcome) -> Result<i32> {
    match outcome {
        Outcome::Exited(code) => Ok(code),
        Outcome::Failed(code, msg) => Err(EngineError::StartFailed(code, msg).into()),
        Outcome::Started | Outcome::Detached => Ok(0),
        Outcome::Closed => match engine.exit_code_after_lost_monitor(id) {
            Some(code) => Ok(code),
            None if engine.records.load(id).is_err() => Err(EngineError::StartFailed(
                125,
                format!("container {id} was removed while starting"),
            )
            .into()),
            None => {
                bail!("the monitor of container {id} exited unexpectedly; see `berth inspect {id}`")
            }
        },
    }
}

fn cmd_run(
    engine: &Engine,
    g: &Globals,
    flags: Box<RunFlags>,
    detach: bool,
    rm: bool,
    start: bool,
) -> Result<i32> {
    let opts = flags.options(detach, rm)?;
    let detach_keys = detach_keys_arg(flags.detach_keys.as_deref())?;
    let name = flags.image(if start { "run" } else { "create" })?;
    // As Docker: `-it` in the foreground needs a terminal to read from.
    if start && !detach && opts.tty && opts.interactive {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            eprintln!("berth: the input device is not a TTY");
            return Ok(1);
        }
    }
    let image = pull_image(engine, g, name, &flags.pull)?;
    let c = if start {
        engine.create_to_run(name, &image, &opts)?
    } else {
        engine.create(name, &image, &opts)?
    };
    if !start {
        outln!("{}", c.id);
        return Ok(0);
    }
    let sock = engine.start_new(&c, single_threaded()?)?;
    if detach {
        wait_started(&sock)?;
        outln!("{}", c.id);
        return Ok(0);
    }
    let o = ClientOptions {
        stdin: opts.interactive,
        tty: opts.tty,
        proxy_signals: !opts.tty,
        until_started: false,
        detach_keys,
    };
    let outcome = Engine::attach(&sock, &o)?;
    finish(engine, &c.id, outcome)
}

/// `--detach-keys`, or Docker's default.
fn detach_keys_arg(arg: Option<&str>) -> Result<Vec<u8>> {
    parse_detach_keys(arg.unwrap_or(DEFAULT_DETACH_KEYS)).map_err(|e| anyhow::anyhow!(e))
}

fn cmd_start(
    engine: &Engine,
    keys: &[String],
    attach: bool,
    interactive: bool,
    detach_keys: Option<&str>,
) -> Result<i32> {
    if attach || interactive {
        if keys.len() != 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let detach_keys = detach_keys_arg(detach_keys)?;
        let c = engine.get(&keys[0])?;
        let sock = engine.start(&c.id, single_threaded()?)?;
        let o = ClientOptions {
            stdin: interactive && c.options.interactive,
            tty: c.options.tty,
            proxy_signals: !c.options.tty,
            until_started: false,
            detach_keys,
        };
        return finish(engine, &c.id, Engine::attach(&sock, &o)?);
    }
    each(keys, |k| {
        let c = engine.get(k)?;
        let sock = engine.start(&c.id, single_threaded()?)?;
        wait_started(&sock)?;
        outln!("{k}");
        Ok(())
    })
}

fn command_text(c: &Container, trunc: bool) -> String {
    let mut s = std::iter::once(c.path.as_str())
        .chain(c.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    if trunc && s.chars().count() > 20 {
        s = s.chars().take(19).collect::<String>() + "…";
    }
    format!("\"{s}\"")
}

fn cmd_ps(
    engine: &Engine,
    all: bool,
    quiet: bool,
    no_trunc: bool,
    format: Option<&str>,
) -> Result<i32> {
    let list = engine.ps(all)?;
    let id = |c: &Container| {
        if no_trunc {
            c.id.clone()
        } else {
            c.id[..12].to_string()
        }
    };
    if quiet {
        for c in &list {
            outln!("{}", id(c));
        }
        return Ok(0);
    }
    if format == Some("json") || format == Some("{{json .}}") {
        for c in &list {
            let v = serde_json::json!({
                "ID": id(c),
                "Image": c.image,
                "Command": command_text(c, !no_trunc),
                "CreatedAt": c.created,
                "RunningFor": format!("{} ago", human_duration(age(&c.created))),
                "Status": c.status_text(),
                "State": c.state.status,
                "Ports": berth_net::ports_summary(&berth_engine::network::ports(c)),
                "Names": c.name,
                "Labels": c.options.labels.join(","),
                "Mounts": c.mounts.iter().map(|m| m.name.clone().unwrap_or_else(|| m.source.clone())).collect::<Vec<_>>().join(","),
                "Networks": c.options.network,
            });
            outln!("{v}");
        }
        return Ok(0);
    }
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|c| {
            [
                id(c),
                c.image.clone(),
                command_text(c, !no_trunc),
                format!("{} ago", human_duration(age(&c.created))),
                c.status_text(),
                berth_net::ports_summary(&berth_engine::network::ports(c)),
                c.name.clone(),
            ]
        })
        .collect();
    let header = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    print_table(&header, &rows);
    Ok(0)
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut w = [0usize; N];
    for (i, h) in header.iter().enumerate() {
        w[i] = h.chars().count();
    }
    for r in rows {
        for i in 0..N {
            w[i] = w[i].max(r[i].chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<&str>, out: &mut dyn Write| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 3));
            }
        }
        if let Err(e) = writeln!(out, "{}", s.trim_end()) {
            super::stdout_failed(e)
        }
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
}

fn cmd_logs(
    engine: &Engine,
    key: &str,
    follow: bool,
    timestamps: bool,
    tail: &str,
    since_s: Option<&str>,
) -> Result<i32> {
    let opts = LogsOptions {
        follow,
        tail,
        since: since_s,
    };
    engine.logs(key, &opts, |l| {
        let out = if timestamps {
            format!("{} {}", l.time, l.log)
        } else {
            l.log
        };
        if l.stream == Stream::Stderr {
            let mut e = std::io::stderr().lock();
            e.write_all(out.as_bytes())?;
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(out.as_bytes())?;
            o.flush()?;
        }
        Ok(())
    })?;
    if let Some(loss) = berth_engine::logs::lost(&engine.log_path(&engine.get(key)?.id)) {
        eprintln!("berth: warning: {loss}");
    }
    Ok(0)
}

fn cmd_top(engine: &Engine, key: &str) -> Result<i32> {
    let rows: Vec<[String; 4]> = engine
        .top(key)?
        .into_iter()
        .map(|p| {
            let secs = p.cpu_ticks / 100;
            [
                p.uid,
                p.pid.to_string(),
                format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
                p.cmd,
            ]
        })
        .collect();
    print_table(&["UID", "PID", "TIME", "CMD"], &rows);
    Ok(0)
}

fn bytes_human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}

fn cmd_stats(engine: &Engine, keys: &[String], all: bool, no_stream: bool) -> Result<i32> {
    loop {
        let rows: Vec<[String; 6]> = engine
            .stats(keys, all, Duration::from_millis(500))?
            .into_iter()
            .map(|(c, s)| {
                [
                    c.id[..12].to_string(),
                    c.name,
                    format!("{:.2}%", s.cpu_percent),
                    format!(
                        "{} / {}",
                        bytes_human(s.memory),
                        bytes_human(s.memory_limit)
                    ),
                    format!("{:.2}%", s.memory_percent),
                    s.pids.to_string(),
                ]
            })
            .collect();
        print_table(
            &[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "PIDS",
            ],
            &rows,
        );
        if no_stream {
            return Ok(0);
        }
    }
}

fn cmd_volume(engine: &Engine, v: VolumeSub) -> Result<i32> {
    use berth_engine::volume;
    match v {
        VolumeSub::Create { name, label } => {
            let v = engine.volume_create(name.as_deref(), &label)?;
            outln!("{}", v.name);
            Ok(0)
        }
        VolumeSub::Ls { quiet } => {
            let list = volume::list(&engine.root)?;
            if quiet {
                for v in list {
                    outln!("{}", v.name);
                }
            } else {
                let rows: Vec<[String; 2]> = list.into_iter().map(|v| [v.driver, v.name]).collect();
                print_table(&["DRIVER", "VOLUME NAME"], &rows);
            }
            Ok(0)
        }
        VolumeSub::Rm { force, volumes } => each(&volumes, |n| {
            engine.volume_remove(n, force)?;
            outln!("{n}");
            Ok(())
        }),
        VolumeSub::Inspect { volumes } => {
            let mut out = Vec::new();
            for n in &volumes {
                out.push(serde_json::to_value(volume::get(&engine.root, n)?)?);
            }
            outln!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        VolumeSub::Prune { all, force: _ } => {
            outln!("Deleted Volumes:");
            let reclaimed = engine.volume_prune(all, |name| outln!("{name}"))?;
            outln!("\nTotal reclaimed space: {}", bytes_human(reclaimed));
            Ok(0)
        }
    }
}

fn cmd_df(engine: &Engine) -> Result<i32> {
    let du = engine.disk_usage()?;
    let rows = vec![
        [
            "Images".to_string(),
            du.images.total.to_string(),
            du.images.active.to_string(),
            bytes_human(du.images.size),
        ],
        [
            "Containers".to_string(),
            du.containers.total.to_string(),
            du.containers.active.to_string(),
            bytes_human(du.containers.size),
        ],
        [
            "Local Volumes".to_string(),
            du.volumes.total.to_string(),
            du.volumes.active.to_string(),
            bytes_human(du.volumes.size),
        ],
    ];
    print_table(&["TYPE", "TOTAL", "ACTIVE", "SIZE"], &rows);
    Ok(0)
}

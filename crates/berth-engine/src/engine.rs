//! Container operations shared by the CLI commands: create, start, stop, kill,
//! remove, pause, exec, logs, inspect, top, stats, prune, and crash recovery.

use crate::attach::{self, ClientOptions, Outcome};
use crate::monitor::{self, MonitorConfig};
use crate::options::{parse_signal, RunOptions};
use crate::process::{self, SingleThreaded};
use crate::record::{
    now_rfc3339, random_id, Container, Creator, RecordError, Records, State, Status,
};
use crate::runtime::{Runtime, RuntimeError};
use crate::spec::{self, HostDevice, SpecContext};
use crate::teardown::{remove_files, rootfs, spawn_or_run, teardown, TeardownError};
use crate::{network, overlay, volume};
use berth_image::{Image, Store};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Volume(#[from] volume::VolumeError),
    #[error(transparent)]
    Overlay(#[from] overlay::OverlayError),
    #[error(transparent)]
    Teardown(#[from] TeardownError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Network(Box<crate::network::NetworkError>),
    #[error("image store: {0}")]
    Store(#[from] berth_image::StoreError),
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    /// A thread the operation started panicked.
    #[error("the {0} thread panicked")]
    ThreadPanicked(&'static str),
    /// The image config stored in a container's record does not parse.
    #[error("container {id}: stored image config: {source}")]
    StoredImageConfig {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    /// A running container's runtime spec does not parse.
    #[error("{}: {source}", path.display())]
    RuntimeSpec {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("container {0} is being removed")]
    BeingRemoved(String),
    #[error("container {0} is dead: remove it and create it again")]
    Dead(String),
    #[error("starting the monitor: {0}")]
    StartMonitor(#[source] std::io::Error),
    #[error("Container {0} is not paused")]
    NotPaused(String),
    /// The working directory could not be made in the container's root.
    #[error("creating the working directory {}: {source}", path.display())]
    Workdir {
        path: PathBuf,
        #[source]
        source: berth_runtime::rootfs::RootfsError,
    },
    #[error("attach: {0}")]
    Attach(#[source] std::io::Error),
    #[error("You cannot attach to a stopped container, start it first ({0})")]
    AttachStopped(String),
    /// A `logs` flag's value.
    #[error("{0}")]
    LogsFlag(#[from] crate::commands::LogsFlagError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Container {0} is not running")]
    NotRunning(String),
    #[error("You cannot remove a running container {0}. Stop the container before attempting removal or force remove")]
    RemoveRunning(String),
    #[error("Container {0} is already running")]
    AlreadyRunning(String),
    #[error("Container {0} is paused, unpause the container before stopping or killing")]
    Paused(String),
    #[error("invalid signal {0:?}")]
    BadSignal(String),
    /// Writing what a command shows (its output closed).
    #[error("writing the output")]
    Output(#[source] std::io::Error),
    /// The container could not start: Docker's exit code and the message.
    #[error("{1}")]
    StartFailed(i32, String),
    /// The image could not be held for a new container (it was removed meanwhile).
    #[error("holding image {image} ({id}) for the new container")]
    ImageHold {
        image: String,
        id: String,
        #[source]
        source: berth_image::StoreError,
    },
    /// A container whose record cannot be read; only `rm -f` applies to it.
    #[error("container {id} cannot be read (`berth rm -f {id}` removes it)")]
    CorruptRecord {
        id: String,
        #[source]
        source: RecordError,
    },
}

impl From<crate::network::NetworkError> for EngineError {
    fn from(e: crate::network::NetworkError) -> EngineError {
        EngineError::Network(Box::new(e))
    }
}

/// Creates the container's working directory when its root lacks it (`-w /new/dir`, or an
/// image's WORKDIR removed by a later layer), as Docker does: owned by root, mode 0755, each
/// component resolved inside the root so that no symlink of the image leads it out.
fn ensure_workdir(rootfs: &Path, cwd: &Path) -> Result<(), EngineError> {
    let rel = cwd.strip_prefix("/").unwrap_or(cwd);
    if rel.as_os_str().is_empty() {
        return Ok(());
    }
    let root = fs::File::open(rootfs).map_err(io(rootfs))?;
    let rel = rel.to_string_lossy();
    berth_runtime::rootfs::mkdir_all_in_root(&std::os::fd::OwnedFd::from(root), &rel)
        .map(drop)
        .map_err(|source| EngineError::Workdir {
            path: cwd.to_path_buf(),
            source,
        })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// berth's state under one `--root`.
#[derive(Debug, Clone)]
pub struct Engine {
    pub root: PathBuf,
    pub records: Records,
    pub runtime: Runtime,
}

/// Docker's name for the host architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        a => a,
    }
}

/// How `run`/`start` attach.
pub struct AttachMode {
    pub stdin: bool,
    pub output: bool,
}

impl Engine {
    /// The engine of `root`, with its transient state under `run_root` (`--runroot`;
    /// [`crate::record::default_run_root`] when None).
    pub fn open(root: &Path, run_root: Option<&Path>) -> Result<Engine, EngineError> {
        fs::create_dir_all(root).map_err(io(root))?;
        let run_root = run_root
            .map(Path::to_path_buf)
            .unwrap_or_else(|| crate::record::default_run_root(root));
        Ok(Engine {
            root: root.to_path_buf(),
            records: Records::open(root, &run_root)?,
            runtime: Runtime::new(&run_root),
        })
    }

    /// Records a new container (`berth create`); the root is mounted at start.
    pub fn create(
        &self,
        image_ref: &str,
        image: &Image,
        opts: &RunOptions,
    ) -> Result<Container, EngineError> {
        self.create_as(image_ref, image, opts, None)
    }

    /// Records a new container that this process goes on to start (`berth run`): the record
    /// names this process as its creator, so that `prune` and `rm` leave the container alone
    /// while it starts, and a `--rm` container whose `run` was killed before a monitor took
    /// it over is removed by the next reconcile.
    pub fn create_to_run(
        &self,
        image_ref: &str,
        image: &Image,
        opts: &RunOptions,
    ) -> Result<Container, EngineError> {
        self.create_as(image_ref, image, opts, Creator::current())
    }

    /// The container's image is held (`image/holds/<id>`) before anything depends on it: the
    /// store takes the hold under its lock only while the image's record exists, so an `rmi`
    /// either comes first (and the create fails, naming the image) or finds the hold and
    /// refuses. The hold is taken once the container's directory exists, so that releasing
    /// the holds of vanished containers never takes one being created.
    fn create_as(
        &self,
        image_ref: &str,
        image: &Image,
        opts: &RunOptions,
        creator: Option<Creator>,
    ) -> Result<Container, EngineError> {
        opts.check().map_err(spec::SpecError::from)?;
        let _names = self.records.lock_names()?;
        let name = match &opts.name {
            Some(n) => {
                self.records.check_name(n)?;
                n.clone()
            }
            None => self.records.random_name()?,
        };
        let id = random_id()?;
        tracing::debug!(%name, %id, image = %image.id, "creating container");
        // Check what can be checked now: the command, flags that parse alone.
        let argv = spec::command(&image.config, opts)?;
        network::validate(&self.root, &self.records, opts)?;
        let image_volumes: Vec<String> = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default();
        let dir = self.records.container_dir(&id);
        let store = Store::open(&self.root)?;
        let result = (|| {
            for d in ["upper", "work"] {
                let p = dir.join(d);
                fs::create_dir_all(&p).map_err(io(&p))?;
            }
            store
                .add_hold(&image.id, &id)
                .map_err(|source| EngineError::ImageHold {
                    image: image_ref.to_string(),
                    id: image.id.clone(),
                    source,
                })?;
            let (mounts, copy_up) = volume::resolve(
                &self.root,
                &opts.volumes,
                &opts.mounts,
                &opts.tmpfs,
                &image_volumes,
            )?;
            let c = Container {
                id: id.clone(),
                name,
                image: image_ref.to_string(),
                image_id: image.id.clone(),
                created: now_rfc3339(),
                path: argv[0].clone(),
                args: argv[1..].to_vec(),
                options: opts.clone(),
                image_config: serde_json::to_value(&image.config).unwrap_or(Value::Null),
                layers: image.layer_dirs.clone(),
                mounts,
                copy_up,
                hostname: spec::hostname(opts, &id),
                networks: Vec::new(),
                restart_count: 0,
                state: State {
                    status: Status::Created,
                    ..Default::default()
                },
                creator,
            };
            self.records.save(&c)?;
            self.records.reserve_name(&c.name, &c.id)?;
            Ok::<_, EngineError>(c)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
            {
                if let Err(e) = store.remove_hold(&id) {
                    tracing::warn!("releasing the image hold of {id}: {e}");
                }
            }
        }
        result
    }

    /// Mounts the root, writes /etc files and the runtime spec. Returns whether berth's
    /// runtime may start the container in the monitor's process: only when the container
    /// gets a new pid namespace and runs no hooks, so that nothing in it can reach the init
    /// while that still runs berth's binary (see `berth_runtime::container::launch`).
    fn prepare(&self, c: &mut Container) -> Result<bool, EngineError> {
        let _span = tracing::debug_span!("prepare", id = %&c.id[..12]).entered();
        // Docker gives `container:NAME` the other container's hostname (with its /etc/hosts
        // and /etc/resolv.conf, see network::etc_files), and `--network host` the host's.
        if let Ok(berth_net::NetworkMode::Container(other)) = network::mode(&c.options) {
            if let Ok(peer) = self
                .records
                .find(&other)
                .and_then(|id| self.records.load(&id))
            {
                c.hostname = peer.hostname;
            }
        }
        let hostname = if c.options.network == "host" && c.options.hostname.is_none() {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        } else {
            c.hostname.clone()
        };
        // The network (a namespace, and for a bridge its veth, address and rules) is set up
        // on a second thread while this one mounts the root and builds the spec: the two
        // share nothing until the /etc files. Both are joined before the monitor forks.
        let (netns, mut s) = std::thread::scope(|scope| {
            let mut net_c = c.clone();
            let (root, records) = (&self.root, &self.records);
            let net = spawn_or_run(scope, "network", move || {
                let r = network::attach(root, records, &mut net_c);
                (r, net_c)
            });
            let spec = self.mount_and_spec(c, &hostname);
            let (r, net_c) = net
                .join()
                .map_err(|_| EngineError::ThreadPanicked("network set-up"))?;
            *c = Container {
                copy_up: std::mem::take(&mut c.copy_up),
                ..net_c
            };
            let netns = r?;
            Ok::<_, EngineError>((netns, spec?))
        })?;
        let dir = self.records.run_dir(&c.id);
        let rootfs = dir.join("bundle/rootfs");
        let (hosts, resolv) = network::etc_files(&self.records, c, &hostname)?;
        for (f, text) in [
            ("hostname", format!("{hostname}\n")),
            ("hosts", hosts),
            ("resolv.conf", resolv),
        ] {
            let p = dir.join(f);
            fs::write(&p, text).map_err(io(&p))?;
        }
        // Fill volumes created for this container from the image, once.
        for name in std::mem::take(&mut c.copy_up) {
            if let Some(m) = c.mounts.iter().find(|m| m.name.as_deref() == Some(&name)) {
                volume::copy_tree(&rootfs, &m.destination, Path::new(&m.source)).map_err(
                    |source| volume::VolumeError::Copy {
                        name: name.clone(),
                        source,
                    },
                )?;
            }
        }
        if let Some(ns) = &netns {
            spec::with_network_namespace(&mut s, Path::new(ns));
        }
        let p = dir.join("bundle/config.json");
        fs::write(&p, serde_json::to_vec_pretty(&s).unwrap()).map_err(io(&p))?;
        tracing::debug!("runtime spec written to {}", p.display());
        Ok(spec::init_unreachable(&s))
    }

    /// Mounts the overlay root (if it is not) and builds the runtime spec, all but the
    /// network namespace's path.
    fn mount_and_spec(&self, c: &Container, hostname: &str) -> Result<Spec, EngineError> {
        let dir = self.records.container_dir(&c.id);
        let run = self.records.run_dir(&c.id);
        let rootfs = run.join("bundle/rootfs");
        fs::create_dir_all(&rootfs).map_err(io(&rootfs))?;
        if !overlay::is_mounted(&rootfs) {
            // A `--rm` container's upper dir is thrown away: no syncs for it. The
            // marker a volatile mount leaves would refuse a second mount (a start
            // after a host crash); its contents are disposable, so drop it.
            let volatile = c.options.rm;
            if volatile {
                let _ = fs::remove_dir_all(dir.join("work/work/incompat"));
            }
            let work = dir.join("work");
            overlay::mount(&c.layers, &dir.join("upper"), &work, &rootfs, volatile)?;
            tracing::debug!(
                layers = c.layers.len(),
                "overlay mounted at {}",
                rootfs.display()
            );
        }
        let o = &c.options;
        let mut env_files = Vec::new();
        for f in &o.env_files {
            env_files.push(fs::read_to_string(f).map_err(io(Path::new(f)))?);
        }
        let mut devices = Vec::new();
        for d in &o.devices {
            devices.push(HostDevice::stat(d)?);
        }
        let (nofile_hard, can_raise) = caller_limits();
        let ctx = SpecContext {
            id: c.id.clone(),
            hostname: hostname.to_string(),
            rootfs: rootfs.clone(),
            container_dir: run.clone(),
            passwd: fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default(),
            group: fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default(),
            mounts: c.mounts.clone(),
            devices,
            nofile_hard,
            can_raise_limits: can_raise,
            arch: host_arch().into(),
            host_env: std::env::vars().collect(),
            env_files,
            cgroup_parent: "/berth".into(),
            bounding: caller_bounding(),
        };
        let image_cfg: oci_spec::image::ImageConfiguration =
            serde_json::from_value(c.image_config.clone()).map_err(|source| {
                EngineError::StoredImageConfig {
                    id: c.id.clone(),
                    source,
                }
            })?;
        let sec = spec::security_opts(o);
        let seccomp_text = match &sec.seccomp_profile {
            Some(p) => Some(fs::read_to_string(p).map_err(io(Path::new(p)))?),
            None => None,
        };
        let mut s = spec::generate(&image_cfg, o, &ctx, seccomp_text.as_deref())?;
        if let Some(cwd) = s.process().as_ref().map(|p| p.cwd().clone()) {
            ensure_workdir(&rootfs, &cwd)?;
        }
        if o.init {
            let b = crate::init::prepare_bundle(&self.root)?;
            spec::with_init(&mut s, &b.args_prefix, &b.host_dir);
        }
        Ok(s)
    }

    /// Starts a created or exited container under a new monitor and returns
    /// the socket to it. This forks (the monitor): the caller proves with `single` that
    /// no other thread runs; the threads this function starts are joined before the fork.
    pub fn start(&self, id: &str, single: SingleThreaded) -> Result<OwnedFd, EngineError> {
        let lock = self.records.lock(id)?;
        let mut c = self.records.load(id)?;
        self.reconcile_locked(&mut c);
        if !c.state.status.can_start() {
            return Err(match c.state.status {
                Status::Removing => EngineError::BeingRemoved(c.id.clone()),
                Status::Dead => EngineError::Dead(c.id.clone()),
                _ => EngineError::AlreadyRunning(c.id),
            });
        }
        self.ensure_hold(&c)?;
        // The record is rewritten below only when starting changed it: every rewrite is a
        // new file on disk.
        let loaded = serde_json::to_value(&c).ok();
        if c.state.started_at.is_some() {
            c.restart_count += 1;
        }
        let in_process = match self.prepare(&mut c) {
            Ok(safe) => safe && self.runtime.can_launch_in_process(),
            Err(e) => {
                let _ = teardown(&self.records, id);
                return Err(e);
            }
        };
        c.state.error.clear();
        if loaded.is_none() || serde_json::to_value(&c).ok() != loaded {
            self.records.save(&c)?;
        }
        drop(lock);
        let cfg = MonitorConfig {
            records: self.records.clone(),
            runtime: self.runtime.clone(),
            id: c.id.clone(),
            tty: c.options.tty,
            interactive: c.options.interactive,
            auto_remove: c.options.rm,
            berth_root: self.root.clone(),
            in_process,
        };
        tracing::debug!(runtime = %self.runtime.name(), "starting the monitor of {}", c.id);
        monitor::spawn(cfg, single).map_err(EngineError::StartMonitor)
    }

    /// Takes the container's image hold again if it has none (a container recorded by a
    /// berth that took the hold after the record and only logged its failure): its layers
    /// must not be deleted while it runs. Fails, naming the image, when the image is gone.
    fn ensure_hold(&self, c: &Container) -> Result<(), EngineError> {
        let store = Store::open(&self.root)?;
        if store.has_hold(&c.id) {
            return Ok(());
        }
        tracing::info!("container {} holds no image: holding {}", c.id, c.image_id);
        store
            .add_hold(&c.image_id, &c.id)
            .map_err(|source| EngineError::ImageHold {
                image: c.image.clone(),
                id: c.image_id.clone(),
                source,
            })
    }

    /// Marks a container whose monitor and process are gone as exited and
    /// releases what it held (after a kill -9 of berth or the monitor).
    fn reconcile_locked(&self, c: &mut Container) -> bool {
        let active = c.state.status.is_active()
            || (c.state.monitor_pid > 0 && c.state.status == Status::Created);
        if !active || c.state.monitor_alive() || c.state.process_alive() {
            return false;
        }
        tracing::info!(
            "container {} lost its monitor and its process: marking it exited",
            c.id
        );
        self.runtime.delete_force(&c.id);
        let _ = teardown(&self.records, &c.id);
        c.state.status = Status::Exited;
        if c.state.started_at.is_some() && c.state.finished_at.is_none() {
            c.state.exit_code = 255;
            c.state.finished_at = Some(now_rfc3339());
            c.state.error = "the container's monitor died".into();
        }
        c.state.clear_processes();
        let _ = self.records.save(c);
        true
    }

    /// Loads a container by name or id, reconciled with reality.
    pub fn get(&self, key: &str) -> Result<Container, EngineError> {
        let id = self.records.find(key)?;
        let mut c = self.records.load(&id)?;
        if c.state.status.needs_reconcile() {
            let _l = self.records.lock(&id)?;
            c = self.records.load(&id)?;
            self.reconcile_locked(&mut c);
        }
        Ok(c)
    }

    /// Every container, reconciled: a record whose processes are gone is marked exited, and
    /// a `--rm` container abandoned by its `run` is removed (see [`Engine::abandoned`]).
    pub fn list(&self) -> Result<Vec<Container>, EngineError> {
        if let Err(e) = network::reconcile(&self.root, &self.records) {
            tracing::warn!("reclaiming the networks of removed containers: {e}");
        }
        self.records.sweep();
        let mut out = Vec::new();
        for c in self.records.list()? {
            let c = if c.state.status.needs_reconcile() {
                match self.get(&c.id) {
                    Ok(c) => c,
                    Err(_) => continue,
                }
            } else {
                c
            };
            if self.abandoned(&c) && self.remove_abandoned(&c.id) {
                continue;
            }
            out.push(c);
        }
        Ok(out)
    }

    /// A `--rm` container that nothing will remove: it is not running, the `run` that created
    /// it is gone, and no monitor took it over (none recorded alive, none listening on its
    /// socket). A `run` killed between recording the container and its monitor's start
    /// leaves one (with its root mounted). Cheap on the common path: a container without
    /// `--rm` or without a creator costs nothing, one whose creator lives one `/proc` read.
    fn abandoned(&self, c: &Container) -> bool {
        c.options.rm
            && !c.state.status.is_active()
            && c.state.status != Status::Removing
            && c.creator.is_some_and(|cr| !cr.alive())
            && !c.state.monitor_alive()
            && monitor::listener_pid(&self.records.run_dir(&c.id).join("attach.sock")).is_none()
    }

    /// Whether a created container is being started now: the `run` that created it still
    /// works, or a monitor already listens on its socket. `rm` without `--force` and `prune`
    /// leave it alone, as they do a running one.
    fn starting(&self, c: &Container) -> bool {
        c.state.status == Status::Created
            && (c.creator.is_some_and(|cr| cr.alive())
                || monitor::listener_pid(&self.records.run_dir(&c.id).join("attach.sock"))
                    .is_some())
    }

    /// Waits (up to `timeout`) until a container being started (see [`Engine::starting`])
    /// runs or its start failed; returns it as it is then.
    fn wait_started(&self, mut c: Container, timeout: Duration) -> Container {
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        while self.starting(&c) && start.elapsed() < timeout {
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
            match self.get(&c.id) {
                Ok(now) => c = now,
                Err(_) => break,
            }
        }
        c
    }

    /// Removes an abandoned `--rm` container (as its monitor would have), checking again
    /// under its lock. True when it is gone.
    fn remove_abandoned(&self, id: &str) -> bool {
        let Ok(_names) = self.records.lock_names() else {
            return false;
        };
        let _lock = match self.records.lock(id) {
            Ok(l) => l,
            Err(RecordError::NotFound(_)) => return true,
            Err(_) => return false,
        };
        match self.records.load(id) {
            Ok(c) if self.abandoned(&c) => {}
            Err(RecordError::NotFound(_)) => return true,
            _ => return false,
        }
        tracing::info!("removing --rm container {id}: the command that ran it is gone");
        match remove_files(&self.root, &self.records, &self.runtime, id, true) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("removing --rm container {id}: {e}");
                false
            }
        }
    }

    /// Waits until the container is no longer running; false on timeout.
    pub fn wait_stopped(&self, id: &str, timeout: Option<Duration>) -> bool {
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            match self.get(id) {
                Ok(c) if c.state.status.is_active() => {}
                Ok(c) if c.state.monitor_pid > 0 && c.state.monitor_alive() => {}
                _ => return true,
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return false;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Sends a signal to the container's init.
    pub fn kill(&self, key: &str, signal: &str) -> Result<Container, EngineError> {
        let sig = parse_signal(signal).ok_or_else(|| EngineError::BadSignal(signal.into()))?;
        let c = self.get(key)?;
        if !c.state.status.can_kill() {
            return Err(EngineError::NotRunning(c.id));
        }
        if c.state.pid > 0 && process::signal(c.state.pid, sig).is_err() {
            self.runtime.kill(&c.id, sig)?;
        }
        Ok(c)
    }

    fn stop_signal(c: &Container) -> i32 {
        c.options
            .stop_signal
            .clone()
            .or_else(|| {
                c.image_config
                    .pointer("/config/StopSignal")
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
            .and_then(|s| parse_signal(&s))
            .unwrap_or(libc::SIGTERM)
    }

    /// The stop signal, then SIGKILL after `timeout` seconds (default: the
    /// container's --stop-timeout or 10).
    pub fn stop(&self, key: &str, timeout: Option<i64>) -> Result<Container, EngineError> {
        let c = self.get(key)?;
        if c.state.status == Status::Paused {
            let _ = self.runtime.resume(&c.id);
        }
        if !c.state.status.can_kill() {
            return Ok(c);
        }
        let t = timeout.or(c.options.stop_timeout).unwrap_or(10);
        let pid = c.state.pid;
        if t != 0 && pid > 0 {
            let _ = process::signal(pid, Self::stop_signal(&c));
        }
        let limit = if t < 0 {
            None
        } else {
            Some(Duration::from_secs(t as u64))
        };
        if !self.wait_stopped(&c.id, limit) {
            if process::signal(pid, libc::SIGKILL).is_err() {
                let _ = self.runtime.kill(&c.id, libc::SIGKILL);
            }
            self.wait_stopped(&c.id, Some(Duration::from_secs(30)));
        }
        Ok(self.get(&c.id).unwrap_or(c))
    }

    /// `rm [-f] [-v]`. A container whose record cannot be read is removed with `force` (see
    /// [`Engine::remove_unreadable`]).
    pub fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<String, EngineError> {
        let mut c = match self.get(key) {
            Ok(c) => c,
            Err(EngineError::Record(source @ RecordError::Corrupt { .. })) => {
                let id = self.records.find(key)?;
                if !force {
                    return Err(EngineError::CorruptRecord { id, source });
                }
                self.remove_unreadable(&id)?;
                return Ok(id);
            }
            Err(e) => return Err(e),
        };
        if force && self.starting(&c) {
            // Pulling its root from under a start in progress fails the start with a
            // misleading error and can leave runtime state behind: let the start finish
            // (it runs or fails), then remove what it left.
            c = self.wait_started(c, Duration::from_secs(10));
        }
        if !c.state.status.can_remove_without_force() || self.starting(&c) {
            if !force {
                return Err(EngineError::RemoveRunning(c.id));
            }
            if c.state.status == Status::Paused {
                let _ = self.runtime.resume(&c.id);
            }
            if process::signal(c.state.pid, libc::SIGKILL).is_err() {
                let _ = self.runtime.kill(&c.id, libc::SIGKILL);
            }
            self.wait_stopped(&c.id, Some(Duration::from_secs(10)));
        }
        let _names = self.records.lock_names()?;
        {
            let _l = self.records.lock(&c.id)?;
            remove_files(&self.root, &self.records, &self.runtime, &c.id, volumes)?;
        }
        Ok(c.id)
    }

    /// Removes a container whose record cannot be parsed, finding what it left without the
    /// record: its monitor is the process listening on its attach socket, its processes are
    /// the runtime's (deleted with `--force`), its mounts are those under its directories
    /// (`/proc/self/mountinfo`, read once), its name the link in `.names` pointing at it.
    /// Its volumes are kept (which ones it used is unknown).
    fn remove_unreadable(&self, id: &str) -> Result<(), EngineError> {
        tracing::warn!("removing container {id} without its record, which cannot be read");
        let _names = self.records.lock_names()?;
        let _l = self.records.lock(id)?;
        let run = self.records.run_dir(id);
        if let Some(pid) = monitor::listener_pid(&run.join("attach.sock")) {
            let start = berth_sys::proc::stat(pid).ok().map(|s| s.start_time);
            let _ = process::signal(pid, libc::SIGKILL);
            let t = Instant::now();
            while berth_sys::proc::alive(pid, start) && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.runtime.delete_force(id);
        crate::teardown::unmount_under(&[&run, &self.records.container_dir(id)])?;
        self.records.release_names_of(id);
        remove_files(&self.root, &self.records, &self.runtime, id, false)?;
        Ok(())
    }

    pub fn pause(&self, key: &str, pause: bool) -> Result<Container, EngineError> {
        let c = self.get(key)?;
        let allowed = if pause {
            c.state.status.can_pause()
        } else {
            c.state.status.can_unpause()
        };
        if !allowed {
            return Err(if pause {
                EngineError::NotRunning(c.id)
            } else {
                EngineError::NotPaused(c.id)
            });
        }
        if pause {
            self.runtime.pause(&c.id)?;
        } else {
            self.runtime.resume(&c.id)?;
        }
        Ok(self.records.update(&c.id, |c| {
            if c.state.status.is_active() {
                c.state.status = if pause {
                    Status::Paused
                } else {
                    Status::Running
                };
            }
        })?)
    }

    /// Runs a process in a running container through the runtime's exec;
    /// returns its exit code.
    #[allow(clippy::too_many_arguments)]
    pub fn exec(
        &self,
        key: &str,
        cmd: &[String],
        tty: bool,
        interactive: bool,
        detach: bool,
        user: Option<&str>,
        workdir: Option<&str>,
        env: &[String],
    ) -> Result<i32, EngineError> {
        let c = self.get(key)?;
        if !c.state.status.can_exec() {
            return Err(EngineError::NotRunning(c.id));
        }
        let dir = self.records.run_dir(&c.id);
        let spec_path = dir.join("bundle/config.json");
        let spec: Spec = serde_json::from_slice(&fs::read(&spec_path).map_err(io(&spec_path))?)
            .map_err(|source| EngineError::RuntimeSpec {
                path: spec_path.clone(),
                source,
            })?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(cmd.to_vec())).set_terminal(Some(tty));
        if let Some(w) = workdir {
            p.set_cwd(w.into());
        }
        let mut envv: Vec<String> = p.env().clone().unwrap_or_default();
        for e in env {
            let k = e.split('=').next().unwrap_or(e);
            envv.retain(|x| x.split('=').next() != Some(k));
            if e.contains('=') {
                envv.push(e.clone());
            } else if let Ok(v) = std::env::var(k) {
                envv.push(format!("{k}={v}"));
            }
        }
        if tty && !envv.iter().any(|e| e.starts_with("TERM=")) {
            envv.push("TERM=xterm".into());
        }
        p.set_env(Some(envv));
        if let Some(u) = user {
            let r = rootfs(&self.records, &c.id);
            let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap_or_default();
            let group = fs::read_to_string(r.join("etc/group")).unwrap_or_default();
            let ru =
                crate::user::resolve(u, &[], &passwd, &group).map_err(spec::SpecError::from)?;
            let mut pu = oci_spec::runtime::User::default();
            pu.set_uid(ru.uid)
                .set_gid(ru.gid)
                .set_additional_gids(Some(ru.additional_gids));
            p.set_user(pu);
        }
        p.set_console_size(None);
        let pf = dir.join(format!("exec-{}.json", &random_id()?[..12]));
        fs::write(&pf, serde_json::to_vec(&p).unwrap()).map_err(io(&pf))?;
        let log = pf.with_extension("log");
        let (mut cmdl, _program) = self.runtime.container_command();
        cmdl.arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .arg("exec")
            .arg("--process")
            .arg(&pf);
        if tty {
            cmdl.arg("--tty");
        }
        if detach {
            cmdl.arg("--detach");
            cmdl.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        } else if !interactive {
            cmdl.stdin(std::process::Stdio::null());
        }
        cmdl.arg(&c.id);
        let st = cmdl.status().map_err(|source| RuntimeError::Spawn {
            program: self.runtime.name(),
            source,
        });
        let _ = fs::remove_file(&pf);
        let runtime_log = fs::read(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        let st = st?;
        use std::os::unix::process::ExitStatusExt;
        let code = st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
        // The runtime failed to start the process: Docker's 126/127.
        let msg = crate::runtime::clean_message(&runtime_log);
        if code == 255 && msg.contains("exec") {
            // berth's runtime logs the errno; another runtime's message is searched.
            let code = crate::runtime::logged_failure_code(&runtime_log)
                .unwrap_or_else(|| crate::runtime::start_failure_code_from_text(&msg));
            return Ok(match code {
                125 => 126,
                c => c,
            });
        }
        Ok(code)
    }

    /// Pids in the container (`top`).
    pub fn pids(&self, key: &str) -> Result<Vec<i32>, EngineError> {
        let c = self.get(key)?;
        if !c.state.status.can_attach() {
            return Err(EngineError::NotRunning(c.id));
        }
        Ok(self.runtime.ps(&c.id)?)
    }

    /// The processes in the container, as `top` shows them.
    pub fn top(&self, key: &str) -> Result<Vec<ProcessInfo>, EngineError> {
        Ok(self.pids(key)?.into_iter().map(ProcessInfo::read).collect())
    }

    /// Every stopped container removed (`container prune`).
    pub fn prune(&self) -> Result<Vec<String>, EngineError> {
        let mut out = Vec::new();
        for c in self.list()? {
            if c.state.status.can_remove_without_force() && !self.starting(&c) {
                match self.remove(&c.id, false, false) {
                    Ok(id) => out.push(id),
                    // Started (or removed) since it was listed.
                    Err(
                        EngineError::RemoveRunning(_)
                        | EngineError::Record(RecordError::NotFound(_)),
                    ) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Containers using a volume.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>, EngineError> {
        Ok(self
            .records
            .list()?
            .into_iter()
            .filter(|c| c.mounts.iter().any(|m| m.name.as_deref() == Some(name)))
            .map(|c| c.id)
            .collect())
    }

    pub fn volume_remove(&self, name: &str, force: bool) -> Result<(), EngineError> {
        let users = self.volume_users(name)?;
        if !users.is_empty() && !force {
            return Err(volume::VolumeError::InUse {
                name: name.into(),
                ids: users.join(", "),
            }
            .into());
        }
        volume::delete(&self.root, name)?;
        Ok(())
    }

    /// Runs the attach loop on a monitor socket.
    pub fn attach(sock: &OwnedFd, opts: &ClientOptions) -> Result<Outcome, EngineError> {
        attach::client_loop(sock, opts).map_err(EngineError::Attach)
    }

    /// Connects to a running container's monitor.
    pub fn connect(&self, key: &str) -> Result<(Container, OwnedFd), EngineError> {
        let c = self.get(key)?;
        if !c.state.status.can_attach() {
            return Err(EngineError::AttachStopped(c.id));
        }
        let p = self.records.run_dir(&c.id).join("attach.sock");
        let (_dirfd, short) = monitor::short_path(&p).map_err(io(&p))?;
        let s = std::os::unix::net::UnixStream::connect(&short).map_err(io(&p))?;
        Ok((c, OwnedFd::from(s)))
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.records.container_dir(id).join("ctr.log")
    }

    /// Docker-like `inspect` JSON.
    pub fn inspect(&self, c: &Container) -> Value {
        let dir = self.records.container_dir(&c.id);
        let run = self.records.run_dir(&c.id);
        let o = &c.options;
        let icfg = c.image_config.get("config").cloned().unwrap_or(json!({}));
        let spec_env: Option<Vec<String>> = fs::read(run.join("bundle/config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<Spec>(&d).ok())
            .and_then(|s| s.process().as_ref()?.env().clone());
        let labels: serde_json::Map<String, Value> = o
            .labels
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_string(), json!(v))
            })
            .collect();
        let lower: Vec<String> = c
            .layers
            .iter()
            .rev()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let zero = "0001-01-01T00:00:00Z";
        json!({
            "Id": c.id,
            "Created": c.created,
            "Path": c.path,
            "Args": c.args,
            "State": {
                "Status": c.state.status,
                "Running": c.state.status.is_active(),
                "Paused": c.state.status == Status::Paused,
                "Restarting": c.state.status == Status::Restarting,
                "OOMKilled": c.state.oom_killed,
                "Dead": c.state.status == Status::Dead,
                "Pid": c.state.pid,
                "ExitCode": c.state.exit_code,
                "Error": c.state.error,
                "StartedAt": c.state.started_at.clone().unwrap_or_else(|| zero.into()),
                "FinishedAt": c.state.finished_at.clone().unwrap_or_else(|| zero.into()),
            },
            "Image": c.image_id,
            "ResolvConfPath": run.join("resolv.conf"),
            "HostnamePath": run.join("hostname"),
            "HostsPath": run.join("hosts"),
            "LogPath": dir.join("ctr.log"),
            "Name": format!("/{}", c.name),
            "RestartCount": c.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": {
                "Binds": o.volumes,
                "NetworkMode": o.network,
                "AutoRemove": o.rm,
                "CapAdd": o.cap_add,
                "CapDrop": o.cap_drop,
                "Dns": o.dns,
                "ExtraHosts": o.add_hosts,
                "GroupAdd": o.group_add,
                "Privileged": o.privileged,
                "ReadonlyRootfs": o.read_only,
                "SecurityOpt": o.security_opt,
                "Tmpfs": o.tmpfs,
                "ShmSize": o.shm_size.as_ref().map_or(spec::mounts::DEFAULT_SHM_SIZE, |s| s.0),
                "Memory": o.memory.as_ref().map_or(0, |m| m.0),
                "MemorySwap": o.memory_swap,
                "NanoCpus": o.cpus.as_ref().map_or(0, |c| c.nano_cpus()),
                "CpuShares": o.cpu_shares.unwrap_or(0),
                "CpusetCpus": o.cpuset_cpus.clone().unwrap_or_default(),
                "PidsLimit": o.pids_limit,
                "Ulimits": o.ulimits,
                "Devices": o.devices,
                "Sysctls": o.sysctls,
                "Init": o.init,
            },
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": lower.join(":"),
                    "UpperDir": dir.join("upper"),
                    "WorkDir": dir.join("work"),
                    "MergedDir": run.join("bundle/rootfs"),
                }
            },
            "Mounts": c.mounts.iter().map(|m| json!({
                "Type": m.kind, "Name": m.name, "Source": m.source, "Destination": m.destination,
                "Mode": if m.read_only { "ro" } else { "" }, "RW": !m.read_only,
            })).collect::<Vec<_>>(),
            "Config": {
                "Hostname": c.hostname,
                "User": o.user.clone().or_else(|| icfg.get("User").and_then(|u| u.as_str()).map(String::from)).unwrap_or_default(),
                "Tty": o.tty,
                "OpenStdin": o.interactive,
                "AttachStdin": o.interactive && !o.detach,
                "AttachStdout": !o.detach,
                "AttachStderr": !o.detach,
                "Env": spec_env,
                "Cmd": if o.cmd.is_empty() { icfg.get("Cmd").cloned().unwrap_or(Value::Null) } else { json!(o.cmd) },
                "Entrypoint": match &o.entrypoint { Some(e) => json!([e]), None => icfg.get("Entrypoint").cloned().unwrap_or(Value::Null) },
                "Image": c.image,
                "WorkingDir": o.workdir.clone().or_else(|| icfg.get("WorkingDir").and_then(|u| u.as_str()).map(String::from)).unwrap_or_default(),
                "Labels": labels,
                "StopSignal": o.stop_signal.clone().or_else(|| icfg.get("StopSignal").and_then(|u| u.as_str()).map(String::from)),
                "StopTimeout": o.stop_timeout,
            },
            "NetworkSettings": network::settings(&self.root, c),
        })
    }
}

/// The caller's hard RLIMIT_NOFILE and whether it holds CAP_SYS_RESOURCE.
pub fn caller_limits() -> (u64, bool) {
    let l = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = l.maximum.unwrap_or(u64::MAX);
    let can = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("CapEff:"))
                .and_then(|l| u64::from_str_radix(l[7..].trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 24) != 0);
    (hard, can)
}

/// The caller's capability bounding set.
pub fn caller_bounding() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("CapBnd:"))
                .and_then(|l| u64::from_str_radix(l[7..].trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// One process of a container (`top`); unreadable fields (the process ended meanwhile) are
/// `?`, zero or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    /// The real uid (`/proc/PID/status`), as text.
    pub uid: String,
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// The command line, arguments joined by spaces.
    pub cmd: String,
}

impl ProcessInfo {
    fn read(pid: i32) -> ProcessInfo {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string();
        let cmd = fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        ProcessInfo {
            pid,
            uid,
            cpu_ticks: berth_sys::proc::stat(pid)
                .map(|s| s.utime + s.stime)
                .unwrap_or(0),
            cmd,
        }
    }
}

/// One sample of a container's counters for `stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub memory: u64,
    /// The memory limit (0 or a huge number when there is none).
    pub memory_limit: u64,
    /// CPU time used, in nanoseconds.
    pub cpu_ns: u64,
    pub pids: u64,
}

impl Engine {
    /// The container's cgroup counters, as the runtime reads them (zeros when it has none).
    pub fn usage(&self, id: &str) -> Usage {
        let Some(v) = self.runtime.stats(id) else {
            return Usage::default();
        };
        let d = &v["data"];
        let n = |p: &str| d.pointer(p).and_then(|x| x.as_u64()).unwrap_or(0);
        Usage {
            memory: n("/memory/usage/usage"),
            memory_limit: n("/memory/usage/limit"),
            cpu_ns: n("/cpu/usage/total"),
            pids: n("/pids/current"),
        }
    }
}

/// Bytes used under a directory (not following symlinks, not crossing mounts).
pub fn dir_size(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    let dev = m.dev();
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    if m.dev() == dev {
                        stack.push(e.path());
                    }
                } else {
                    total += m.len();
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    /// A record whose monitor and process pids now name other processes (here: this test
    /// process, alive, with another start time) is a dead container: reconciling marks it
    /// exited. With the recorded start times matching, it stays running.
    #[test]
    fn a_reused_pid_does_not_keep_a_dead_container_running() {
        use crate::record::{Container, State, Status};
        let t = tempfile::tempdir().unwrap();
        let engine =
            super::Engine::open(&t.path().join("root"), Some(&t.path().join("run"))).unwrap();
        let me = std::process::id() as i32;
        let real = berth_sys::proc::stat(me).unwrap().start_time;
        for (id, recorded, alive) in [
            ("a".repeat(64), real + 1, false),
            ("b".repeat(64), real, true),
        ] {
            std::fs::create_dir_all(engine.records.container_dir(&id)).unwrap();
            let c = Container {
                id: id.clone(),
                name: id[..8].into(),
                state: State {
                    status: Status::Running,
                    pid: me,
                    pid_start_time: Some(recorded),
                    monitor_pid: me,
                    monitor_start_time: Some(recorded),
                    started_at: Some(crate::record::now_rfc3339()),
                    ..State::default()
                },
                ..Container::default()
            };
            engine.records.save(&c).unwrap();
            let got = engine.get(&id).unwrap().state;
            if alive {
                assert_eq!(got.status, Status::Running);
                assert_eq!(got.pid, me);
            } else {
                assert_eq!(got.status, Status::Exited);
                assert_eq!((got.pid, got.monitor_pid, got.exit_code), (0, 0, 255));
                assert_eq!(got.monitor_start_time, None);
            }
        }
    }
}

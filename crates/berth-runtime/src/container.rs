//! The runtime side of the container lifecycle: create, start, run, kill, delete, pause, resume,
//! update, ps, events.
//!
//! # Process architecture
//!
//! `create` runs in one short-lived, single-threaded runtime process (the "parent"):
//! 1. parse and validate `config.json`, make `<root>/<id>/`, lock it, make `exec.fifo`;
//! 2. create the cgroup and apply `linux.resources` (on pure v2 the child is born in it with
//!    `clone3(CLONE_INTO_CGROUP)`);
//! 3. `clone3` the init with every namespace to create in one go (user, mnt, pid, net, ipc,
//!    uts; the cgroup namespace is unshared by the init once it sits in its cgroup). When the
//!    config joins namespaces by path or asks for a time namespace, a short-lived intermediate
//!    process does the `setns` calls (user first) / `unshare(CLONE_NEWTIME)` and clones the init
//!    with `CLONE_PARENT`, so the init is always the runtime's child;
//! 4. write the uid/gid maps and oom_score_adj, send "go" over the socketpair
//!    ([`crate::channel`]); while the init mounts, write `state.json` (status `creating`) and
//!    add the init to its v1 cgroups, then send "joined"; run prestart/createRuntime hooks when
//!    the init asks (mounts done, before pivot_root); wait for "ready" or an error message;
//! 5. (`run`: send "start" first, so the program execs meanwhile) rewrite `state.json`
//!    without the `creating` flag (status `created`), write `--pid-file`, exit. The init ([`crate::init`]) stays blocked opening `exec.fifo` for writing until
//!    `start` opens it for reading, then execs the user program directly, so no runtime code
//!    runs in the container after that.
//!
//! `run` is create + start in one process without the fifo (a "start" message instead); in the
//! foreground it forwards signals, waits for the init, cleans up and exits with its status
//! (128+signal when killed). `exec` forks a child that `setns`es into the init's namespaces and
//! clones the exec process into the pid namespace ([`crate::exec`]).
//!
//! Work that needs full privilege is done by the runtime before the clone and handed down:
//! the seccomp filter is compiled (cached in `<root>/.seccomp-cache`) so the child only loads
//! it, and idmapped bind mounts are cloned and idmapped ([`crate::idmap`]) so the init only
//! moves them into place. A seccomp notify listener travels back up the channel to the runtime,
//! which hands it to the agent at `listenerPath`.
//!
//! Security: every path inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)` and
//! mounted through `/proc/self/fd` ([`crate::rootfs`]); `/dev/null`, `/dev/console`, proc,
//! sysfs and devpts are checked with fstat/fstatfs; the init and exec helpers are
//! non-dumpable and run the runtime binary only until they exec the user program, so
//! `/proc/<pid>/exe` of a container process never leads to the host binary once it runs;
//! every fd but 0-2 and `--preserve-fds` is closed before the cwd is entered, and the cwd is
//! checked to lie inside the root.
//!
//! On-disk state: `<root>/<id>/state.json` ([`crate::state::Saved`]: pid, its start time,
//! bundle, rootfs, created, annotations, saved cgroup manager, paused flag) and
//! `<root>/<id>/exec.fifo` between create and start.

use crate::cgroups::{CgroupError, Manager};
use crate::channel::{self, ChildError, ParentEnd, ProtocolError, StageError, Step};
use crate::config::{self, ConfigError};
use crate::hooks::{self, state as hook_state, HookError};
use crate::idmap::IdmapError;
use crate::init::{self, InitArgs};
use crate::seccomp::SeccompError;
use crate::state::{self, Container, Op, Saved, StateError};
use crate::sys;
use crate::sys::{Errno, SysCtx, SysError};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Errors of the lifecycle operations: their own, and those of the modules they use.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The bundle's config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The container's id or state; an operation its state does not allow.
    #[error(transparent)]
    State(#[from] StateError),
    /// The stage protocol failed, or the init reported an error (with its errno).
    #[error(transparent)]
    Stage(#[from] StageError),
    /// A prestart, createRuntime or startContainer hook.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// Preparing an idmapped mount.
    #[error(transparent)]
    Idmap(#[from] IdmapError),
    /// Compiling seccomp, or handing its listener to the agent.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// A cgroup operation failed while doing `what`.
    #[error("{what}: {source}")]
    Cgroup {
        /// What was being done (`pause`, `applying linux.resources`, ...).
        what: String,
        /// The cgroup manager's error.
        #[source]
        source: CgroupError,
    },
    /// The init died while `create` prepared it, without a report.
    #[error("the container's init exited during create")]
    InitExited,
    /// The init closed the exec fifo without its byte.
    #[error(
        "the container's init exited before its program started: a startContainer hook \
         failed or the init was killed (the container is stopped; delete it)"
    )]
    StartFailed,
    /// A signal number out of range.
    #[error("invalid signal number {0}")]
    SignalNumber(i32),
    /// `RTMIN+N` with a bad `N`.
    #[error("unknown signal {0:?}")]
    RtSignal(String),
    /// A signal name that does not exist.
    #[error("unknown signal {0:?}: use a name like TERM or KILL, or a number")]
    UnknownSignal(String),
    /// The container survived SIGKILL.
    #[error("container {0} did not die after SIGKILL")]
    KillTimeout(String),
    /// The operation needs the container's cgroup, and it has none (rootless).
    #[error("container {id:?} has no cgroup{}", if *.to_freeze { " to freeze" } else { "" })]
    NoCgroup {
        /// The container.
        id: String,
        /// The cgroup was needed for `pause`/`resume`.
        to_freeze: bool,
    },
}

impl From<ProtocolError> for ContainerError {
    fn from(e: ProtocolError) -> ContainerError {
        ContainerError::Stage(e.into())
    }
}

impl Errno for ContainerError {
    fn errno(&self) -> Option<i32> {
        match self {
            ContainerError::Stage(e) => e.errno(),
            e => std::error::Error::source(e).and_then(sys::chain_errno),
        }
    }

    fn during_exec(&self) -> bool {
        match self {
            ContainerError::Stage(e) => e.during_exec(),
            _ => false,
        }
    }
}

type Result<T, E = ContainerError> = std::result::Result<T, E>;

fn cgroup(what: impl Into<String>) -> impl FnOnce(CgroupError) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Cgroup { what, source }
}

/// Options of `create` and `run`.
#[derive(Debug, Default, Clone)]
pub struct CreateOpts {
    /// `--root`.
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// `--bundle`.
    pub bundle: PathBuf,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`.
    pub console_socket: Option<String>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
}

/// A container whose init is ready (blocked before exec).
pub struct Launched {
    /// The container record.
    pub container: Container,
    /// The spec.
    pub spec: Spec,
    /// Parent end of the channel.
    pub chan: ParentEnd,
    /// The cgroup manager.
    pub cgroup: Option<Manager>,
    /// Internal console (foreground run with a terminal and no --console-socket).
    pub console_peer: Option<OwnedFd>,
}

struct Cleanup {
    dir: Option<PathBuf>,
    pid: i32,
    cgroup: Option<Manager>,
    /// poststop hooks and the state they get: a create that fails once the init exists ends
    /// like a deleted container (runtime.md: a failed prestart, createRuntime or
    /// createContainer hook continues the lifecycle at the container's destruction).
    poststop: Option<(Vec<oci_spec::runtime::Hook>, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(m) = self.cgroup.take() {
            let _ = m.kill_all(libc::SIGKILL);
            let _ = m.destroy();
        }
        if let Some((hooks, st)) = self.poststop.take() {
            hooks::run_all_warn("poststop", Some(&hooks), &st);
        }
        if let Some(d) = self.dir.take() {
            state::remove_dir(&d);
        }
    }
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80,
    }
}

/// The order namespaces are joined in: user first (it grants the rights for the rest), mount last.
pub fn join_order(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Ipc => 1,
        LinuxNamespaceType::Uts => 2,
        LinuxNamespaceType::Network => 3,
        LinuxNamespaceType::Pid => 4,
        LinuxNamespaceType::Cgroup => 5,
        LinuxNamespaceType::Time => 6,
        LinuxNamespaceType::Mount => 7,
    }
}

/// Creates the container; with `run_mode` the init waits for a start message instead of the fifo.
pub fn create(o: &CreateOpts, run_mode: bool, foreground: bool) -> Result<Launched> {
    state::check_id(&o.id)?;
    let bundle = std::fs::canonicalize(&o.bundle)
        .sys(|| format!("bundle directory {}", o.bundle.display()))?;
    let (spec, config_text) = config::load_with_text(&bundle)?;
    let process = spec.process().as_ref().expect("validated");
    crate::debug!(
        "{}: config.json loaded (ociVersion {}, process.args {:?})",
        o.id,
        spec.version(),
        process.args().as_deref().unwrap_or_default()
    );
    let terminal = process.terminal().unwrap_or(false);
    if terminal && o.console_socket.is_none() && !foreground {
        return Err(ConfigError::TerminalWithoutConsole.into());
    }
    if !terminal && o.console_socket.is_some() {
        return Err(ConfigError::ConsoleWithoutTerminal.into());
    }
    std::fs::create_dir_all(&o.root).sys(|| format!("creating --root {}", o.root.display()))?;
    let dir = state::dir(&o.root, &o.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StateError::Exists(o.id.clone()).into());
        }
        Err(e) => return Err(Err(e).sys(|| format!("creating {}", dir.display()))?),
    }
    let mut cleanup = Cleanup {
        dir: Some(dir.clone()),
        pid: 0,
        cgroup: None,
        poststop: None,
    };
    let _lock = state::lock(&dir)?;
    let fifo_fd = if run_mode {
        None
    } else {
        let fifo = dir.join("exec.fifo");
        let c = sys::cstr(fifo.to_str().unwrap_or_default()).sys(|| "bad path")?;
        // SAFETY: c is a valid NUL-terminated string that lives for the call.
        sys::cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o622) })
            .sys(|| format!("creating {}", fifo.display()))?;
        Some(
            sys::open(fifo.to_str().unwrap_or_default(), libc::O_PATH, 0)
                .sys(|| format!("opening {}", fifo.display()))?,
        )
    };
    let (console, console_peer) =
        crate::terminal::console_fds(o.console_socket.as_deref(), terminal)?;
    let linux = spec.linux().as_ref();
    let cg_path = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let mgr = match setup_cgroup(&spec, cg_path.as_deref(), &o.id) {
        Ok(m) => Some(m),
        // SAFETY: geteuid cannot fail.
        Err(e) if unsafe { libc::geteuid() } != 0 => {
            // Rootless, as runc: without cgroup delegation the container runs without limits.
            crate::log::warn(&format!("rootless: running without cgroups: {e}"));
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(m) = &mgr {
        crate::debug!("{}: cgroup {:?}", o.id, m.dirs());
    }
    cleanup.cgroup = mgr.clone();
    let cgfd = mgr.as_ref().and_then(|m| m.v2_dir_fd());
    let (pchan, cchan) = channel::pair()?;
    let nss = config::namespaces(&spec);
    let mut flags: u64 = 0;
    let mut joins: Vec<(LinuxNamespaceType, PathBuf)> = Vec::new();
    let mut new_time = false;
    for (t, p) in &nss {
        match (t, p) {
            (_, Some(p)) => joins.push((*t, p.clone())),
            (LinuxNamespaceType::Cgroup, None) => {}
            (LinuxNamespaceType::Time, None) => new_time = true,
            (t, None) => flags |= ns_flag(*t) as u64,
        }
    }
    joins.sort_by_key(|(t, _)| join_order(*t));
    crate::debug!(
        "{}: namespaces: new {:?}{}, joining {:?}",
        o.id,
        nss.iter()
            .filter(|(_, p)| p.is_none())
            .map(|(t, _)| t.to_string())
            .collect::<Vec<_>>(),
        if new_time { " (time via a helper)" } else { "" },
        joins
    );
    let idmapped = crate::idmap::prepare(&spec)?;
    // The init joins its v1 cgroups itself (no RCU grace period, unlike a pid written by
    // us); from a user namespace it may not write the host's cgroup files, so we do.
    let join_self = match &mgr {
        Some(m) if !config::has_ns(&spec, LinuxNamespaceType::User) => m.v1_dirs(),
        _ => Vec::new(),
    };
    let args = InitArgs {
        spec: &spec,
        id: &o.id,
        bundle: &bundle,
        chan: &cchan,
        fifo: fifo_fd.as_ref().map(|f| f.as_raw_fd()),
        console: console.as_ref().map(|f| f.as_raw_fd()),
        no_pivot: o.no_pivot,
        no_new_keyring: o.no_new_keyring,
        preserve_fds: o.preserve_fds,
        seccomp: crate::secc::compile(&spec, &o.root)?,
        idmapped: idmapped
            .iter()
            .map(|(i, fd)| (*i, fd.as_raw_fd()))
            .collect(),
        cgroup_dirs: mgr.as_ref().map(|m| m.mount_dirs()).unwrap_or_default(),
        join_self: join_self.clone(),
    };
    let pid = if joins.is_empty() && !new_time {
        let pid = sys::clone3(flags, cgfd.as_ref().map(|f| f.as_raw_fd()))
            .sys(|| "cloning the container's init (clone3)")?;
        if pid == 0 {
            drop(pchan);
            init::run(args);
        }
        pid
    } else {
        let ns_fds: Vec<(LinuxNamespaceType, OwnedFd)> = joins
            .iter()
            .map(|(t, p)| {
                sys::open(p.to_str().unwrap_or_default(), libc::O_RDONLY, 0)
                    .sys(|| format!("opening namespace {t} at {}", p.display()))
                    .map(|fd| (*t, fd))
            })
            .collect::<Result<_, SysError>>()?;
        let mid = sys::clone3(0, None).sys(|| "forking the namespace-joining helper")?;
        if mid == 0 {
            drop(pchan);
            let r = (|| -> Result<()> {
                for (t, fd) in &ns_fds {
                    // SAFETY: setns on an fd we opened and still own.
                    sys::cvt(unsafe { libc::setns(fd.as_raw_fd(), ns_flag(*t)) })
                        .sys(|| format!("joining the {t} namespace"))?;
                }
                if new_time {
                    // SAFETY: plain syscall without pointers; affects only our children.
                    sys::cvt(unsafe { libc::unshare(0x80) })
                        .sys(|| "creating the time namespace")?;
                    write_time_offsets(&spec)?;
                }
                let pid = sys::clone3(
                    flags | libc::CLONE_PARENT as u64,
                    cgfd.as_ref().map(|f| f.as_raw_fd()),
                )
                .sys(|| "cloning the container's init (clone3)")?;
                if pid == 0 {
                    init::run(args);
                }
                Ok(cchan.send_pid(pid)?)
            })();
            if let Err(e) = r {
                cchan.send_error(ChildError::of(&e));
                // SAFETY: leaving the helper child.
                unsafe { libc::_exit(1) };
            }
            // SAFETY: leaving the helper child.
            unsafe { libc::_exit(0) };
        }
        let pid = pchan.recv_pid();
        // SAFETY: reaping our helper child.
        unsafe { libc::waitpid(mid, std::ptr::null_mut(), 0) };
        pid?
    };
    drop(cchan);
    drop(console);
    cleanup.pid = pid;
    crate::debug!("{}: init cloned, host pid {pid}", o.id);
    if flags & libc::CLONE_NEWUSER as u64 != 0 {
        write_id_maps(&spec, pid)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        sys::write_file(
            &format!("/proc/{pid}/oom_score_adj"),
            adj.to_string().as_bytes(),
        )
        .sys(|| format!("setting oom_score_adj {adj} (lowering it needs CAP_SYS_RESOURCE)"))?;
    }
    pchan.send_go(pid)?;
    // The init prepares its mounts meanwhile. From here `state` and `list` show the container
    // as `creating` (hooks may ask for it).
    // The init works on its own now: when a step here fails, its own report (if it failed
    // first) is the more useful message.
    let theirs = |e: ContainerError| match pchan.pending_error() {
        Some(m) => StageError::Child(m).into(),
        None => e,
    };
    let pid_start = berth_sys::proc::stat(pid)
        .map_err(|_| theirs(ContainerError::InitExited))?
        .start_time;
    let mut container = Container {
        dir: dir.clone(),
        saved: Saved {
            id: o.id.clone(),
            pid,
            pid_start,
            bundle: bundle.clone(),
            rootfs: spec.root().as_ref().expect("validated").path().clone(),
            created: state::now_rfc3339(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup: mgr.as_ref().map(|m| m.to_saved()),
            paused: false,
            no_pivot: o.no_pivot,
            // SAFETY: getuid cannot fail.
            owner: unsafe { libc::getuid() },
            creating: true,
        },
    };
    container.save()?;
    let copy = container.config_copy();
    std::fs::write(&copy, &config_text).sys(|| format!("writing {}", copy.display()))?;
    drop(config_text);
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
        cleanup.poststop = Some((h, hook_state(&o.id, "stopped", pid, &bundle, &spec)));
    }
    // What the init did not join itself (v1 from a user namespace; cgroup2 when it could
    // not be cloned into it) is added here, overlapping its mounts.
    if let Some(m) = &mgr {
        if let Err(e) = m.add_pid_to(pid, join_self.is_empty(), cgfd.is_none()) {
            // SAFETY: killing our own child; its report (if it failed first) stays readable.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(theirs(cgroup("adding the init to its cgroup")(e)));
        }
    }
    pchan.send_joined().map_err(|e| theirs(e.into()))?;
    crate::debug!("{}: init released and in its cgroup", o.id);
    loop {
        match pchan.wait_ready()? {
            Step::Ready => break,
            Step::SeccompFd(fd) => crate::secc::forward(fd, &spec, &o.id, pid, &bundle)?,
            Step::Hooks => {
                crate::debug!("{}: running prestart and createRuntime hooks", o.id);
                let st = hook_state(&o.id, "creating", pid, &bundle, &spec);
                let h = spec.hooks().as_ref();
                hooks::run_all("prestart", h.and_then(|h| h.prestart().as_ref()), &st)?;
                hooks::run_all(
                    "createRuntime",
                    h.and_then(|h| h.create_runtime().as_ref()),
                    &st,
                )?;
                pchan.hooks_done()?;
            }
        }
    }
    if !container.alive() {
        return Err(ContainerError::InitExited);
    }
    if run_mode {
        // `run` starts the program at once: it execs while the state is written.
        pchan.send_start()?;
    }
    container.saved.creating = false;
    container.save()?;
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid)?;
    }
    crate::debug!("{}: created (init pid {pid} ready)", o.id);
    cleanup.pid = 0;
    cleanup.cgroup = None;
    cleanup.dir = None;
    cleanup.poststop = None;
    Ok(Launched {
        container,
        spec,
        chan: pchan,
        cgroup: mgr,
        console_peer,
    })
}

/// Creates the container's cgroups and applies `linux.resources` plus runc's default device
/// rules.
fn setup_cgroup(spec: &Spec, cg_path: Option<&str>, id: &str) -> Result<Manager, ContainerError> {
    let mgr = Manager::new(cg_path, id).map_err(cgroup("cgroup"))?;
    mgr.create().map_err(cgroup("cgroup"))?;
    let mut r = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut devs = r.devices().clone().unwrap_or_default();
    devs.extend(crate::cgroups::devices::default_allowed());
    r.set_devices(Some(devs));
    if let Err(e) = mgr.apply(&r) {
        let _ = mgr.destroy();
        return Err(cgroup("applying linux.resources")(e));
    }
    Ok(mgr)
}

fn write_time_offsets(spec: &Spec) -> Result<()> {
    let Some(offs) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offs {
        let id = match clock.as_str() {
            "monotonic" => "monotonic",
            "boottime" => "boottime",
            other => return Err(ConfigError::TimeOffsetClock(other.to_string()).into()),
        };
        text.push_str(&format!(
            "{id} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    Ok(
        sys::write_file("/proc/self/timens_offsets", text.as_bytes())
            .sys(|| "writing /proc/self/timens_offsets")?,
    )
}

fn write_id_maps(spec: &Spec, pid: i32) -> Result<(), SysError> {
    let l = spec.linux().as_ref().expect("validated");
    let fmt = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    sys::write_file(
        &format!("/proc/{pid}/uid_map"),
        fmt(l.uid_mappings()).as_bytes(),
    )
    .sys(|| "writing uid_map (check linux.uidMappings)")?;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Unprivileged, the kernel accepts a gid map only with setgroups denied.
        sys::write_file(&format!("/proc/{pid}/setgroups"), b"deny")
            .sys(|| "denying setgroups in the user namespace (rootless)")?;
    }
    sys::write_file(
        &format!("/proc/{pid}/gid_map"),
        fmt(l.gid_mappings()).as_bytes(),
    )
    .sys(|| "writing gid_map (check linux.gidMappings)")?;
    Ok(())
}

/// Writes a pid file atomically.
pub fn write_pid_file(p: &Path, pid: i32) -> Result<(), StateError> {
    let tmp = p.with_extension("berth-tmp");
    berth_sys::atomic::write_via(
        &tmp,
        p,
        pid.to_string().as_bytes(),
        berth_sys::atomic::Durability::NoSync,
    )?;
    Ok(())
}

fn load_mgr(c: &Container) -> Option<Manager> {
    c.saved
        .cgroup
        .as_ref()
        .and_then(|v| Manager::from_saved(v).ok())
}

/// The container's spec as it was at create (the copy in its state directory; the bundle's
/// config.json for a container made before copies were kept).
pub fn load_spec(c: &Container) -> Option<Spec> {
    let data = spec_text(c)?;
    config::parse(&data, &c.config_copy(), false).ok()
}

fn spec_text(c: &Container) -> Option<Vec<u8>> {
    std::fs::read(c.config_copy())
        .or_else(|_| std::fs::read(c.saved.bundle.join("config.json")))
        .ok()
}

/// The spec, for running `kind` hooks (`poststart`, `poststop`): None, without parsing the
/// whole spec, when it has none.
fn spec_with_hooks(c: &Container, kind: &str) -> Option<Spec> {
    let data = spec_text(c)?;
    let key = format!("\"{kind}\"");
    if !data.windows(key.len()).any(|w| w == key.as_bytes()) {
        return None;
    }
    config::parse(&data, &c.config_copy(), false).ok()
}

/// `start`: unblocks the init through the exec fifo, then runs poststart hooks.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    let _lock = state::lock(&c.dir)?;
    c.status().check(id, Op::Start)?;
    let fifo = c.fifo();
    let f = sys::open(
        fifo.to_str().unwrap_or_default(),
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    )
    .sys(|| format!("opening {}", fifo.display()))?;
    let pidfd = sys::pidfd_open(c.saved.pid).sys(|| "watching the init")?;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: valid pollfd array.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
        if r < 0 && sys::last().raw_os_error() != Some(libc::EINTR) {
            return Err(Err(sys::last()).sys(|| "waiting on the exec fifo")?);
        }
        if fds[0].revents & libc::POLLIN != 0 {
            let mut b = [0u8; 1];
            // SAFETY: b is a live one-byte buffer and f an open fd.
            let n = unsafe { libc::read(f.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            if n == 1 {
                break;
            }
        }
        // End of file (the init closed the fifo without its byte) or the init gone.
        if fds[0].revents & libc::POLLHUP != 0 || fds[1].revents != 0 {
            let _ = std::fs::remove_file(&fifo);
            // The init closes the fifo as it exits: wait for the exit, so that the container
            // is stopped, as this says, when `start` returns.
            sys::pidfd_wait(&pidfd, 5000);
            return Err(ContainerError::StartFailed);
        }
    }
    std::fs::remove_file(&fifo).sys(|| format!("removing {}", fifo.display()))?;
    crate::debug!("{id}: started (init pid {})", c.saved.pid);
    if let Some(spec) = spec_with_hooks(&c, "poststart") {
        run_poststart(&c, &spec);
    }
    Ok(())
}

fn run_poststart(c: &Container, spec: &Spec) {
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()) {
        let st = hook_state(&c.saved.id, "running", c.saved.pid, &c.saved.bundle, spec);
        hooks::run_all_warn("poststart", Some(h), &st);
    }
}

/// `run`: create, start, and (foreground) wait; returns the exit code.
pub fn run(o: &CreateOpts, detach: bool) -> Result<i32> {
    let blocked = if detach { None } else { Some(block_signals()) };
    let (c, spec, cgroup, master) = await_exec(create(o, true, !detach)?)?;
    run_poststart(&c, &spec);
    if detach {
        return Ok(0);
    }
    let set = blocked.expect("foreground");
    let code = match master {
        Some(m) => {
            // The proxy ends when the container's side of the pty closes.
            crate::terminal::proxy(&m);
            wait_child(c.saved.pid, None)
        }
        None => wait_child(c.saved.pid, Some(&set)),
    };
    crate::debug!("{}: init exited, code {code}", c.saved.id);
    destroy(&c, cgroup.as_ref(), Some(&spec));
    Ok(code)
}

/// `run --detach` for a supervisor that links the runtime and reaps the init itself (berth's
/// monitor): the init is cloned from the calling process, which must be single-threaded. Its
/// stdio is the caller's fds 0-2, or with `process.terminal` a new pty whose master is
/// returned. Returns the init's pid once the program has exec'd.
///
/// Until that exec, `/proc/<init>/exe` is the caller's binary, not a read-only view of it
/// (CVE-2019-5736). Only a container that gets a new pid namespace and runs no hooks may be
/// launched this way: then no process of the container exists before the init's exec.
pub fn launch(o: &CreateOpts) -> Result<(i32, Option<OwnedFd>)> {
    let (c, spec, _, master) = await_exec(create(o, true, true)?)?;
    run_poststart(&c, &spec);
    Ok((c.saved.pid, master))
}

/// The container, its spec and cgroup, and its pty master (when the runtime holds the
/// console), once a `create`d init in run mode has exec'd the program; the container is
/// destroyed when that fails.
fn await_exec(l: Launched) -> Result<(Container, Spec, Option<Manager>, Option<OwnedFd>)> {
    let Launched {
        container: c,
        spec,
        chan,
        cgroup,
        console_peer,
    } = l;
    let r = (|| {
        let master = match &console_peer {
            Some(peer) => Some(
                channel::recv_fd(peer.as_raw_fd())
                    .sys(|| "receiving the container's pty")?
                    .0,
            ),
            None => None,
        };
        let forward = |fd| {
            crate::secc::forward(fd, &spec, &c.saved.id, c.saved.pid, &c.saved.bundle)
                .map_err(ContainerError::from)
        };
        chan.wait_exec(forward)?;
        Ok(master)
    })();
    match r {
        Ok(master) => {
            crate::debug!("{}: started (init pid {})", c.saved.id, c.saved.pid);
            Ok((c, spec, cgroup, master))
        }
        Err(e) => {
            destroy(&c, cgroup.as_ref(), Some(&spec));
            Err(e)
        }
    }
}

/// Blocks the signals a foreground run forwards to the container; returns the set.
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: building and installing a signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

const FORWARDED: [libc::c_int; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

/// Waits for our child `pid`, forwarding blocked signals from `set` to it; returns the exit code
/// (128+signal when killed).
pub fn wait_child(pid: i32, set: Option<&libc::sigset_t>) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waiting on our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return decode_status(status);
        }
        if r < 0 && sys::last().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
        match set {
            Some(set) => {
                // SAFETY: valid set and info buffer.
                let sig = unsafe {
                    let mut info: libc::siginfo_t = std::mem::zeroed();
                    libc::sigwaitinfo(set, &mut info)
                };
                if sig > 0 && sig != libc::SIGCHLD {
                    // SAFETY: forwarding a signal to the container's init.
                    unsafe { libc::kill(pid, sig) };
                }
            }
            None => {
                let mut status = 0;
                // SAFETY: blocking wait on our child.
                let r = unsafe { libc::waitpid(pid, &mut status, 0) };
                if r == pid {
                    return decode_status(status);
                }
            }
        }
    }
}

fn decode_status(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Removes everything of a stopped container: remaining processes, cgroup, poststop hooks, state.
pub fn destroy(c: &Container, mgr: Option<&Manager>, spec: Option<&Spec>) {
    if let Some(m) = mgr {
        // Usually the init was the last process: skip the (freezing) kill when nothing is left.
        if m.populated() {
            let _ = m.kill_all(libc::SIGKILL);
        }
        if let Err(e) = m.destroy() {
            crate::log::warn(&format!("removing the cgroup of {}: {e}", c.saved.id));
        }
    }
    if let Some(spec) = spec {
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()) {
            let st = hook_state(&c.saved.id, "stopped", c.saved.pid, &c.saved.bundle, spec);
            hooks::run_all_warn("poststop", Some(h), &st);
        }
    }
    state::remove_dir(&c.dir);
}

/// Parses a signal given by name (KILL, SIGKILL) or number.
pub fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(ContainerError::SignalNumber(n));
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            if let Some(rest) = name.strip_prefix("RTMIN+") {
                libc::SIGRTMIN()
                    + rest
                        .parse::<i32>()
                        .map_err(|_| ContainerError::RtSignal(s.to_string()))?
            } else {
                return Err(ContainerError::UnknownSignal(s.to_string()));
            }
        }
    };
    Ok(n)
}

/// `kill`.
pub fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<()> {
    let c = Container::load(root, id)?;
    c.status().check(id, Op::Kill)?;
    if all {
        if let Some(m) = load_mgr(&c) {
            return m.kill_all(sig).map_err(cgroup("kill --all"));
        }
    }
    crate::debug!("{id}: signal {sig} to init pid {}", c.saved.pid);
    // SAFETY: signalling the container's init (its start time was just checked).
    sys::cvt(unsafe { libc::kill(c.saved.pid, sig) }).sys(|| format!("signalling {id}"))?;
    Ok(())
}

/// `delete`.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let c = match Container::load(root, id) {
        Ok(c) => c,
        Err(e) => {
            if force && !state::dir(root, id).join("state.json").exists() {
                // Leftover directory of a create that died half-way.
                let _ = std::fs::remove_dir_all(state::dir(root, id));
                return Ok(());
            }
            return Err(e.into());
        }
    };
    let _lock = state::lock(&c.dir)?;
    let mgr = load_mgr(&c);
    let status = c.status();
    if !status.allows(Op::Delete) {
        if !force {
            status.check(id, Op::Delete)?;
        }
        kill_and_wait(&c, mgr.as_ref())?;
    }
    let spec = spec_with_hooks(&c, "poststop");
    crate::debug!("{id}: deleting (was {})", c.status().as_str());
    destroy(&c, mgr.as_ref(), spec.as_ref());
    Ok(())
}

fn kill_and_wait(c: &Container, mgr: Option<&Manager>) -> Result<(), ContainerError> {
    let pidfd = sys::pidfd_open(c.saved.pid).ok();
    if let Some(m) = mgr {
        let _ = m.thaw();
        let _ = m.kill_all(libc::SIGKILL);
    }
    // SAFETY: signalling the init.
    unsafe { libc::kill(c.saved.pid, libc::SIGKILL) };
    if let Some(fd) = pidfd {
        for _ in 0..100 {
            if sys::pidfd_wait(&fd, 100) || !c.alive() {
                return Ok(());
            }
        }
        return Err(ContainerError::KillTimeout(c.saved.id.clone()));
    }
    Ok(())
}

/// `pause` / `resume`.
pub fn set_paused(root: &Path, id: &str, pause: bool) -> Result<()> {
    let mut c = Container::load(root, id)?;
    let _lock = state::lock(&c.dir)?;
    let op = if pause { Op::Pause } else { Op::Resume };
    c.status().check(id, op)?;
    let Some(m) = load_mgr(&c) else {
        return Err(no_cgroup(id, true));
    };
    if pause { m.freeze() } else { m.thaw() }.map_err(cgroup(if pause {
        "pause"
    } else {
        "resume"
    }))?;
    c.saved.paused = pause;
    Ok(c.save()?)
}

/// `update`: applies new resources to the container's cgroup.
pub fn update(root: &Path, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let c = Container::load(root, id)?;
    c.status().check(id, Op::Update)?;
    let Some(m) = load_mgr(&c) else {
        return Err(no_cgroup(id, false));
    };
    m.apply(r).map_err(cgroup("update"))
}

/// The container's pids (from its cgroup; the init alone without one).
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let c = Container::load(root, id)?;
    match load_mgr(&c) {
        Some(m) => Ok(m.pids().map_err(cgroup("ps"))?),
        None if c.alive() => Ok(vec![c.saved.pid]),
        None => Ok(vec![]),
    }
}

/// `events --stats` data.
pub fn stats(root: &Path, id: &str) -> Result<serde_json::Value> {
    let c = Container::load(root, id)?;
    c.status().check(id, Op::Stats)?;
    let Some(m) = load_mgr(&c) else {
        return Err(no_cgroup(id, false));
    };
    let s = m.stats().map_err(cgroup("stats"))?;
    Ok(serde_json::json!({"type": "stats", "id": id, "data": s}))
}

/// Every container under `root`.
pub fn list(root: &Path) -> Vec<Container> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if let Some(id) = e.file_name().to_str() {
                if let Ok(c) = Container::load(root, id) {
                    out.push(c);
                }
            }
        }
    }
    out.sort_by(|a, b| a.saved.id.cmp(&b.saved.id));
    out
}

/// Whether the kernel's OOM killer has killed a process of the container. Reads the
/// container's cgroup, so it answers after the container stopped, until `delete`.
pub fn oom_killed(root: &Path, id: &str) -> Result<bool> {
    let c = Container::load(root, id)?;
    let Some(m) = load_mgr(&c) else {
        return Ok(false);
    };
    m.oom_killed()
        .map_err(cgroup(format!("reading the OOM kills of {id}")))
}

fn no_cgroup(id: &str, to_freeze: bool) -> ContainerError {
    ContainerError::NoCgroup {
        id: id.to_string(),
        to_freeze,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigusr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn exit_status_decoding() {
        assert_eq!(decode_status(7 << 8), 7);
        assert_eq!(decode_status(libc::SIGKILL), 128 + 9);
    }
}

//! `exec`: a new process in a running container. A helper child opens nothing new: it `setns`es
//! into the init's namespaces (user first, mount last) and clones the exec process with
//! `CLONE_PARENT` (so it is the runtime's child and lands in the container's pid namespace).
//! The runtime adds it to the container's cgroup and sends "go"; the process then applies the
//! process config (rlimits, user, caps, cwd, no_new_privs, seccomp) and execs. An error before
//! exec comes back over the channel; a successful exec closes it.

use crate::cgroups::{CgroupError, Manager};
use crate::channel::{self, ChildEnd, ChildError, ProtocolError, StageError};
use crate::container::{block_signals, wait_child, write_pid_file};
use crate::init::{load_seccomp, prepare_process, InitError};
use crate::seccomp::SeccompError;
use crate::state::{Container, Op, StateError};
use crate::sys;
use crate::sys::{Errno, SysCtx, SysError};
use oci_spec::runtime::{LinuxNamespaceType, Process};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Errors of the `exec` command's options and set-up (the process's own failures come back
/// over the stage channel).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The container's id or state; an operation its state does not allow.
    #[error(transparent)]
    State(#[from] StateError),
    /// The stage protocol failed, or the exec process reported an error (with its errno).
    #[error(transparent)]
    Stage(#[from] StageError),
    /// Compiling seccomp, or handing its listener to the agent.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// `--process` does not parse.
    #[error("parsing --process {}: {source}", path.display())]
    ProcessFile {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// Neither a command nor `--process`.
    #[error("exec needs a command: berth-runtime exec ID COMMAND [ARGS...] or --process FILE")]
    NoCommand,
    /// `--user` is not numeric.
    #[error("--user {0:?}: use a numeric uid[:gid]")]
    User(String),
    /// `--cap` names no capability.
    #[error("--cap {0}: unknown capability")]
    Cap(String),
    /// The container's config cannot be read.
    #[error("reading the config of container {id:?} (in {} or its bundle)", dir.display())]
    NoConfig {
        /// The container.
        id: String,
        /// Its state directory.
        dir: PathBuf,
    },
    /// `-t` with `--detach` and no console socket.
    #[error("cannot allocate tty if berth-runtime will detach without setting console socket")]
    TerminalWithoutConsole,
    /// `--console-socket` without `-t`.
    #[error("--console-socket given but no terminal was requested (-t)")]
    ConsoleWithoutTerminal,
    /// Adding the process to the container's cgroup failed.
    #[error("adding the exec process to the cgroup: {0}")]
    Cgroup(#[source] CgroupError),
}

impl From<ProtocolError> for ExecError {
    fn from(e: ProtocolError) -> ExecError {
        ExecError::Stage(e.into())
    }
}

impl Errno for ExecError {
    fn errno(&self) -> Option<i32> {
        match self {
            ExecError::Stage(e) => e.errno(),
            e => std::error::Error::source(e).and_then(sys::chain_errno),
        }
    }

    fn during_exec(&self) -> bool {
        match self {
            ExecError::Stage(e) => e.during_exec(),
            _ => false,
        }
    }
}

type Result<T, E = ExecError> = std::result::Result<T, E>;

/// Options of `exec`.
#[derive(Debug, Default, Clone)]
pub struct ExecOpts {
    /// Container id.
    pub id: String,
    /// `--process FILE`.
    pub process_file: Option<PathBuf>,
    /// Command and arguments.
    pub args: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `-d`.
    pub detach: bool,
    /// `--cwd`.
    pub cwd: Option<String>,
    /// `--env`.
    pub env: Vec<String>,
    /// `--user uid[:gid]`.
    pub user: Option<String>,
    /// `--additional-gids`.
    pub additional_gids: Vec<u32>,
    /// `--cap`.
    pub caps: Vec<String>,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`.
    pub console_socket: Option<String>,
    /// `--no-new-privs`.
    pub no_new_privs: bool,
    /// `--apparmor`.
    pub apparmor: Option<String>,
    /// `--process-label`.
    pub label: Option<String>,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
}

const NS: [(LinuxNamespaceType, &str, libc::c_int); 8] = [
    (LinuxNamespaceType::User, "user", libc::CLONE_NEWUSER),
    (LinuxNamespaceType::Ipc, "ipc", libc::CLONE_NEWIPC),
    (LinuxNamespaceType::Uts, "uts", libc::CLONE_NEWUTS),
    (LinuxNamespaceType::Network, "net", libc::CLONE_NEWNET),
    (LinuxNamespaceType::Pid, "pid", libc::CLONE_NEWPID),
    (LinuxNamespaceType::Cgroup, "cgroup", libc::CLONE_NEWCGROUP),
    (LinuxNamespaceType::Time, "time", 0x80),
    (LinuxNamespaceType::Mount, "mnt", libc::CLONE_NEWNS),
];

fn build_process(o: &ExecOpts, base: &Process) -> Result<Process> {
    if let Some(f) = &o.process_file {
        let data = std::fs::read(f).sys(|| format!("reading --process {}", f.display()))?;
        return serde_json::from_slice(&data).map_err(|source| ExecError::ProcessFile {
            path: f.clone(),
            source,
        });
    }
    if o.args.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let mut p = base.clone();
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    if let Some(c) = &o.cwd {
        p.set_cwd(PathBuf::from(c));
    }
    if !o.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &o.env {
            let key = kv.split('=').next().unwrap_or("");
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &o.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let uid: u32 = uid.parse().map_err(|_| ExecError::User(u.clone()))?;
        let gid: u32 = match gid {
            Some(g) => g.parse().map_err(|_| ExecError::User(u.clone()))?,
            None => 0,
        };
        let user = p.user_mut();
        user.set_uid(uid);
        user.set_gid(gid);
    }
    if !o.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(o.additional_gids.clone()));
    }
    if !o.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<oci_spec::runtime::Capabilities>| -> Result<oci_spec::runtime::Capabilities, ExecError> {
            let mut s = set.clone().unwrap_or_default();
            for c in &o.caps {
                let cap = serde_json::from_value(serde_json::Value::String(c.to_ascii_uppercase()))
                    .map_err(|_| ExecError::Cap(c.clone()))?;
                s.insert(cap);
            }
            Ok(s)
        };
        caps.set_bounding(Some(add(caps.bounding())?));
        caps.set_effective(Some(add(caps.effective())?));
        caps.set_permitted(Some(add(caps.permitted())?));
        caps.set_inheritable(Some(add(caps.inheritable())?));
        caps.set_ambient(Some(add(caps.ambient())?));
        p.set_capabilities(Some(caps));
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &o.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &o.label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

fn ns_inode(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `exec`; returns the exit code (foreground) or 0 (detached).
pub fn exec(root: &Path, o: &ExecOpts) -> Result<i32> {
    let c = Container::load(root, &o.id)?;
    c.status().check(&o.id, Op::Exec)?;
    let spec = crate::container::load_spec(&c).ok_or_else(|| ExecError::NoConfig {
        id: o.id.clone(),
        dir: c.dir.clone(),
    })?;
    let base = spec.process().clone().unwrap_or_default();
    let process = build_process(o, &base)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && o.console_socket.is_none() && o.detach {
        return Err(ExecError::TerminalWithoutConsole);
    }
    if !terminal && o.console_socket.is_some() {
        return Err(ExecError::ConsoleWithoutTerminal);
    }
    let pid = c.saved.pid;
    let mut ns_fds: Vec<(libc::c_int, OwnedFd)> = Vec::new();
    for (t, name, flag) in NS {
        if !crate::config::has_ns(&spec, t) {
            continue;
        }
        let theirs = format!("/proc/{pid}/ns/{name}");
        if ns_inode(&theirs) == ns_inode(&format!("/proc/self/ns/{name}")) {
            continue;
        }
        let fd = sys::open(&theirs, libc::O_RDONLY, 0).sys(|| format!("opening {theirs}"))?;
        ns_fds.push((flag, fd));
    }
    crate::debug!(
        "{}: exec {:?}: joining {} namespaces of init pid {pid}",
        o.id,
        process.args().as_deref().unwrap_or_default(),
        ns_fds.len()
    );
    let mgr = c
        .saved
        .cgroup
        .as_ref()
        .and_then(|v| Manager::from_saved(v).ok());
    let (console, console_peer) =
        crate::terminal::console_fds(o.console_socket.as_deref(), terminal)?;
    let set = if o.detach {
        None
    } else {
        Some(block_signals())
    };
    let (pchan, cchan) = channel::pair()?;
    let filter = crate::secc::compile(&spec, root)?;
    let personality = spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
        .map(|p| p.domain().to_string());
    let mid = sys::clone3(0, None).sys(|| "forking the exec helper")?;
    if mid == 0 {
        drop(pchan);
        let r = (|| -> Result<()> {
            sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).sys(|| "PR_SET_DUMPABLE")?;
            for (flag, fd) in &ns_fds {
                // SAFETY: setns on an fd we opened and still own.
                sys::cvt(unsafe { libc::setns(fd.as_raw_fd(), *flag) })
                    .sys(|| format!("joining the container's namespace ({flag:#x})"))?;
            }
            let child =
                sys::clone3(libc::CLONE_PARENT as u64, None).sys(|| "cloning the exec process")?;
            if child == 0 {
                let e = match exec_child(
                    &process,
                    &cchan,
                    console.as_ref().map(|f| f.as_raw_fd()),
                    o.preserve_fds,
                    personality.as_deref(),
                    filter.clone(),
                ) {
                    Ok(e) => e,
                    Err(e) => e,
                };
                cchan.send_error(ChildError::of(&e));
                // SAFETY: leaving the forked child without running the runtime's destructors.
                unsafe { libc::_exit(127) };
            }
            Ok(cchan.send_pid(child)?)
        })();
        if let Err(e) = r {
            cchan.send_error(ChildError::of(&e));
            // SAFETY: leaving the helper.
            unsafe { libc::_exit(1) };
        }
        // SAFETY: leaving the helper.
        unsafe { libc::_exit(0) };
    }
    drop(cchan);
    drop(console);
    let child = pchan.recv_pid();
    // SAFETY: reaping the helper.
    unsafe { libc::waitpid(mid, std::ptr::null_mut(), 0) };
    let child = child?;
    let fail = |e: ExecError| -> ExecError {
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        e
    };
    if let Some(m) = &mgr {
        m.add_pid(child).map_err(|e| fail(ExecError::Cgroup(e)))?;
    }
    crate::debug!("{}: exec process is pid {child}", o.id);
    pchan.send_go(child).map_err(|e| fail(e.into()))?;
    let master = match &console_peer {
        Some(peer) => Some(
            channel::recv_fd(peer.as_raw_fd())
                .sys(|| "receiving the exec process's pty")
                .map_err(|e| fail(e.into()))?
                .0,
        ),
        None => None,
    };
    pchan
        .wait_exec(|fd| {
            crate::secc::forward(fd, &spec, &o.id, child, &c.saved.bundle).map_err(ExecError::from)
        })
        .map_err(fail)?;
    if let Some(p) = &o.pid_file {
        write_pid_file(p, child)?;
    }
    if o.detach {
        return Ok(0);
    }
    Ok(match master {
        Some(m) => {
            crate::terminal::proxy(&m);
            wait_child(child, None)
        }
        None => wait_child(child, set.as_ref()),
    })
}

#[allow(clippy::too_many_arguments)]
fn exec_child(
    process: &Process,
    chan: &ChildEnd,
    console: Option<RawFd>,
    preserve_fds: u32,
    personality: Option<&str>,
    filter: Option<crate::seccomp::Filter>,
) -> Result<InitError, InitError> {
    crate::init::unblock_signals();
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).sys(|| "PR_SET_DUMPABLE")?;
    chan.wait_go()?;
    if let Some(aff) = process.exec_cpu_affinity() {
        if let Some(init) = aff.initial() {
            crate::process::set_affinity(init)?;
        }
    }
    // SAFETY: setsid takes no arguments and touches no memory of ours.
    unsafe { libc::setsid() };
    if process.terminal().unwrap_or(false) {
        crate::init::setup_terminal(console, false)?;
    }
    let mut keep: Vec<RawFd> = (3..3 + preserve_fds as RawFd).collect();
    keep.push(chan.as_raw_fd());
    let nnp = process.no_new_privileges().unwrap_or(false);
    let mut filter = filter;
    let exec = prepare_process(process, &keep, personality, || {
        if nnp {
            Ok(())
        } else {
            load_seccomp(filter.take(), chan)
        }
    })?;
    if nnp {
        load_seccomp(filter.take(), chan)?;
    }
    Ok(exec.exec().into())
}

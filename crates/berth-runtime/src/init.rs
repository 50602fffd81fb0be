//! The container's init, from clone to `execve` of the user program. Runs in the cloned child
//! (single-threaded, a copy of the runtime's memory, so the parsed spec is already here).
//!
//! Stages: wait for the parent's go-ahead (id maps) → session → root in a user namespace →
//! rootfs (mounts, /dev; before a cgroup mount, or after the last mount, wait until the parent
//! has added us to our cgroups, then the cgroup namespace) → createRuntime hooks in the parent →
//! createContainer hooks here → pivot_root → sysctl → masked/read-only paths → hostname →
//! terminal → process attributes (rlimits, LSM, fds closed, user, caps, umask, cwd,
//! no_new_privs, executable lookup) → ready → block on the exec fifo until `start` opens it
//! (or on the channel for `run`) → startContainer hooks → the fifo's byte → seccomp → execve.

use crate::cgroups::CgroupError;
use crate::channel::{ChildEnd, ChildError, ProtocolError};
use crate::config::{self, ConfigError};
use crate::hooks::{self, HookError};
use crate::process::{self, ProcessError};
use crate::rootfs::{self, RootfsCtx};
use crate::seccomp::{Filter, SeccompError};
use crate::sys;
use crate::sys::{Errno, SysCtx, SysError};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// What fails in the init, or in an exec process, before `execve`. It is never returned to
/// the runtime: the child sends it over the stage channel ([`ChildError::of`]) and exits.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A value of the spec is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Process attributes, the program lookup, `execve`.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A createContainer or startContainer hook.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The stage protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Loading seccomp.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// Preparing the root filesystem.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    /// Joining the v1 cgroup hierarchies failed.
    #[error("joining the container's cgroups: {0}")]
    JoinCgroups(#[source] CgroupError),
    /// `process.terminal` without a socket to send the pty to.
    #[error("process.terminal is set but there is no console socket to send the pty to")]
    NoConsoleSocket,
    /// `/dev/console` in the container is something that must not be mounted over.
    #[error("/dev/console in the container is not a regular file or a character device")]
    BadConsole,
}

impl Errno for InitError {
    fn errno(&self) -> Option<i32> {
        match self {
            InitError::Process(e) => e.errno(),
            InitError::Rootfs(e) => e.errno(),
            e => std::error::Error::source(e).and_then(sys::chain_errno),
        }
    }

    fn during_exec(&self) -> bool {
        match self {
            InitError::Process(e) => e.is_exec(),
            _ => false,
        }
    }
}

type Result<T, E = InitError> = std::result::Result<T, E>;

/// Everything the init needs, prepared by the parent before clone.
pub struct InitArgs<'a> {
    /// The validated spec.
    pub spec: &'a Spec,
    /// Container id.
    pub id: &'a str,
    /// Bundle path.
    pub bundle: &'a PathBuf,
    /// Child end of the channel.
    pub chan: &'a ChildEnd,
    /// O_PATH fd of the exec fifo (`create`); None for `run`.
    pub fifo: Option<RawFd>,
    /// Console socket to send the pty master to.
    pub console: Option<RawFd>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// Idmapped mount trees prepared by the runtime: (mount index, fd).
    pub idmapped: Vec<(usize, RawFd)>,
    /// The compiled `linux.seccomp` filter.
    pub seccomp: Option<crate::seccomp::Filter>,
    /// The container's directory in each cgroup hierarchy, by mount point.
    pub cgroup_dirs: Vec<(PathBuf, PathBuf)>,
    /// v1 cgroup directories the init moves itself into (empty when the runtime does it).
    pub join_self: Vec<PathBuf>,
}

/// Runs the init; never returns (execs the user program or exits 1 after reporting the error).
pub fn run(mut a: InitArgs) -> ! {
    let err = match stage(&mut a) {
        Ok(e) => e,
        Err(e) => e,
    };
    a.chan.send_error(ChildError::of(&err));
    // SAFETY: exiting the forked child without running the parent's destructors (they
    // belong to the runtime's copy of this memory).
    unsafe { libc::_exit(1) }
}

/// Empties the signal mask and resets every disposition to the default, so the user's program
/// starts as a fresh process would (the runtime ignores SIGPIPE and blocks what it forwards).
pub fn unblock_signals() {
    // SAFETY: manipulating our own signal mask / dispositions.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Every signal, real-time ones included (an ignored one survives execve); the raw
        // syscall also reaches the two that glibc reserves for itself.
        #[repr(C)]
        struct KSigaction {
            handler: libc::sighandler_t,
            flags: libc::c_ulong,
            restorer: usize,
            mask: u64,
        }
        let dfl = KSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for s in 1..=64 {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    s,
                    &dfl as *const KSigaction,
                    std::ptr::null_mut::<KSigaction>(),
                    8usize,
                );
            }
        }
    }
}

fn stage(a: &mut InitArgs) -> Result<InitError> {
    let spec = a.spec;
    let mut filter = a.seccomp.take();
    unblock_signals();
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0)
        .sys(|| "PR_SET_PDEATHSIG")?;
    let host_pid = a.chan.wait_go()?;
    crate::debug!("{}: init {host_pid}: preparing the container", a.id);
    // Non-dumpable from here on (its /proc files become root's, so only after the runtime,
    // possibly unprivileged, has written the id maps): nothing in the container may open
    // /proc/<init>/exe or ptrace the runtime binary.
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).sys(|| "PR_SET_DUMPABLE")?;
    // Into the v1 hierarchies on its own (fast: see cgroups::join_self); the cgroup2 one
    // it was cloned into.
    crate::cgroups::join_self(&a.join_self).map_err(InitError::JoinCgroups)?;
    let cgroupns = config::new_ns(spec, LinuxNamespaceType::Cgroup);
    let joined = std::cell::Cell::new(false);
    let enter_cgroup = || -> Result<(), InitError> {
        if !joined.get() {
            a.chan.wait_joined()?;
            if cgroupns {
                // SAFETY: unshare takes only flags; we are in the container's cgroup now.
                sys::cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) })
                    .sys(|| "creating the cgroup namespace")?;
            }
            joined.set(true);
        }
        Ok(())
    };
    // SAFETY: setsid takes no arguments and touches no memory of ours.
    unsafe { libc::setsid() };
    let userns = config::has_ns(spec, LinuxNamespaceType::User);
    if userns {
        // SAFETY: setresgid takes only integers.
        sys::cvt(unsafe { libc::setresgid(0, 0, 0) })
            .sys(|| "becoming gid 0 in the user namespace (map container gid 0)")?;
        // SAFETY: setresuid takes only integers.
        sys::cvt(unsafe { libc::setresuid(0, 0, 0) })
            .sys(|| "becoming uid 0 in the user namespace (map container uid 0)")?;
    }
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0) };
    let process = spec.process().as_ref().expect("validated");
    let terminal = process.terminal().unwrap_or(false);
    let root = spec.root().as_ref().expect("validated").path();
    let root = root.to_str().unwrap_or_default();
    if !config::has_ns(spec, LinuxNamespaceType::Mount) {
        return Err(ConfigError::NoMountNamespace.into());
    }
    rootfs::prepare(&RootfsCtx {
        spec,
        root,
        userns,
        cgroupns,
        terminal,
        idmapped: &a.idmapped,
        enter_cgroup: &|| enter_cgroup().map_err(|e| -> rootfs::BoxError { Box::new(e) }),
        cgroup_dirs: &a.cgroup_dirs,
    })?;
    if let Some(h) = spec.hooks() {
        // Hooks find the init in its cgroups.
        enter_cgroup()?;
        let any = h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty());
        if any {
            a.chan.request_hooks()?;
        }
        if let Some(cc) = h.create_container() {
            let st = hooks::state(a.id, "created", host_pid, a.bundle, spec);
            hooks::run_all("createContainer", Some(cc), &st)?;
        }
    }
    crate::debug!(
        "{}: init {host_pid}: {} into {root}",
        a.id,
        if a.no_pivot {
            "MS_MOVE + chroot"
        } else {
            "pivot_root"
        }
    );
    rootfs::switch_root(root, a.no_pivot)?;
    if let Some(s) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in s {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            sys::write_file(&path, v.as_bytes()).sys(|| format!("setting sysctl {k}={v}"))?;
        }
    }
    rootfs::finalize(spec)?;
    if let Some(h) = spec.hostname().as_ref().filter(|h| !h.is_empty()) {
        // SAFETY: the kernel reads h.len() bytes of h, which lives for the call.
        sys::cvt(unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) })
            .sys(|| format!("setting hostname {h}"))?;
    }
    if config::new_ns(spec, LinuxNamespaceType::Network) {
        loopback_up()?;
    }
    if let Some(d) = spec.domainname().as_ref().filter(|h| !h.is_empty()) {
        // SAFETY: the kernel reads d.len() bytes of d, which lives for the call.
        sys::cvt(unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) })
            .sys(|| format!("setting domainname {d}"))?;
    }
    // Nothing before needed the cgroups (the runtime adds the init meanwhile); the cgroup
    // namespace must exist before the capabilities go.
    enter_cgroup()?;
    if terminal {
        setup_terminal(a.console, true)?;
    }
    if !a.no_new_keyring {
        // A fresh session keyring so the container cannot read the host's keys.
        // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a null name (an anonymous keyring):
        // the kernel reads no memory of ours.
        unsafe { libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<libc::c_char>()) };
    }
    let mut keep: Vec<RawFd> = (3..3 + a.preserve_fds as RawFd).collect();
    keep.push(a.chan.as_raw_fd());
    if let Some(f) = a.fifo {
        keep.push(f);
    }
    let personality = spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
        .map(|p| p.domain().to_string());
    let nnp = process.no_new_privileges().unwrap_or(false);
    let exec = prepare_process(process, &keep, personality.as_deref(), || {
        if nnp {
            Ok(())
        } else {
            // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it before dropping caps.
            load_seccomp(filter.take(), a.chan)
        }
    })?;
    if filter.as_ref().is_some_and(|f| f.uses_notify()) {
        // The listener must reach the runtime before it exits: load now, not after start.
        load_seccomp(filter.take(), a.chan)?;
    }
    sys::prctl(libc::PR_SET_PDEATHSIG, 0, 0).sys(|| "PR_SET_PDEATHSIG")?;
    crate::debug!(
        "{}: init {host_pid}: ready, waiting for start ({})",
        a.id,
        if a.fifo.is_some() { "exec fifo" } else { "run" }
    );
    a.chan.send_ready()?;
    let start_hooks = || -> Result<()> {
        if let Some(sc) = spec
            .hooks()
            .as_ref()
            .and_then(|h| h.start_container().as_ref())
        {
            let st = hooks::state(a.id, "created", host_pid, a.bundle, spec);
            hooks::run_all("startContainer", Some(sc), &st)?;
        }
        Ok(())
    };
    match a.fifo {
        Some(fd) => {
            // Opening the fifo for writing blocks until `start` opens it for reading.
            let f = sys::open(&format!("/proc/self/fd/{fd}"), libc::O_WRONLY, 0).sys(|| {
                "opening the exec fifo through /proc/self/fd (is /proc mounted in the container?)"
            })?;
            // The startContainer hooks run while `start` waits for our byte: if one fails,
            // the init exits without writing it, and `start` reports the failure.
            start_hooks()?;
            // SAFETY: one byte from a static buffer.
            unsafe { libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            drop(f);
            // SAFETY: closing our copy of the O_PATH fifo fd.
            unsafe { libc::close(fd) };
        }
        None => {
            a.chan.wait_start()?;
            start_hooks()?;
        }
    }
    if nnp {
        load_seccomp(filter.take(), a.chan)?;
    }
    Ok(exec.exec().into())
}

/// Loads `filter` into the calling process; a notify listener goes to the runtime over the
/// channel (the agent's socket path is only reachable from the runtime's mount namespace),
/// which hands it on ([`crate::secc::forward`]).
pub fn load_seccomp(filter: Option<Filter>, chan: &ChildEnd) -> Result<()> {
    let Some(filter) = filter else {
        return Ok(());
    };
    if let Some(fd) = filter.load()? {
        chan.send_seccomp_fd(fd)?;
    }
    Ok(())
}

/// A new network namespace starts with `lo` down. runc and crun bring it up, and programs
/// expect 127.0.0.1 to answer, so the init does too (one ioctl; no netlink needed).
fn loopback_up() -> Result<(), SysError> {
    // SAFETY: socket takes only integers.
    let fd =
        sys::cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
            .sys(|| "opening a socket to bring lo up")?;
    // SAFETY: socket returned a new fd that we own.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    sys::cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })
        .sys(|| "reading the flags of lo")?;
    // SAFETY: the flags member is the one SIOCGIFFLAGS filled in.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above.
    sys::cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) })
        .sys(|| "bringing lo up")?;
    Ok(())
}

/// Opens a pty inside the container, sends the master over the console socket, and makes the
/// slave the controlling terminal and stdio. `console_dev`: also bind it to /dev/console.
pub fn setup_terminal(console: Option<RawFd>, console_dev: bool) -> Result<()> {
    let Some(sock) = console else {
        return Err(InitError::NoConsoleSocket);
    };
    let (master, slave, name) = crate::terminal::open_pty()?;
    if console_dev {
        // Never follow a symlink planted at /dev/console (CVE-2025-52565).
        let root = sys::open("/", libc::O_PATH | libc::O_DIRECTORY, 0).sys(|| "opening /")?;
        let open = || {
            sys::openat2(
                root.as_raw_fd(),
                "dev/console",
                libc::O_PATH | libc::O_NOFOLLOW,
                0,
                sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_SYMLINKS,
            )
        };
        let null = match open() {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                rootfs::ensure_target(&root, "dev/console", false)?;
                open()
            }
            r => r,
        }
        .sys(|| "opening /dev/console in the container (it must not be a symlink)")?;
        let st = sys::fstat(null.as_raw_fd()).sys(|| "fstat /dev/console")?;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt != libc::S_IFREG && fmt != libc::S_IFCHR {
            return Err(InitError::BadConsole);
        }
        sys::mount(
            Some(&sys::fd_path(&slave)),
            &sys::fd_path(&null),
            None,
            libc::MS_BIND,
            None,
        )
        .sys(|| format!("bind-mounting {name} onto /dev/console"))?;
    }
    crate::terminal::send_master(sock, &master, &name)?;
    drop(master);
    // SAFETY: closing the console socket; we are done with it.
    unsafe { libc::close(sock) };
    crate::terminal::make_controlling(&slave)?;
    let _: OwnedFd = slave;
    Ok(())
}

/// Process attributes in runc's order; returns the resolved program.
pub fn prepare_process(
    process: &oci_spec::runtime::Process,
    keep: &[RawFd],
    personality: Option<&str>,
    early_seccomp: impl FnOnce() -> Result<()>,
) -> Result<process::Exec> {
    process::set_rlimits(process)?;
    process::set_sched(process)?;
    process::set_personality(personality)?;
    process::set_lsm(process)?;
    // The debug log (close-on-exec) stays open so that no other file takes its number.
    let mut keep = keep.to_vec();
    keep.extend(crate::log::fd());
    sys::close_fds_except(&keep);
    let caps = process::cap_sets(process)?;
    early_seccomp()?;
    process::set_user_and_caps(process, &caps)?;
    process::set_umask(process);
    process::enter_cwd(process)?;
    if process.no_new_privileges().unwrap_or(false) {
        process::set_no_new_privs()?;
    }
    Ok(process::lookup(process)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_keeps_the_errno_and_whether_the_program_failed() {
        let e: InitError = ProcessError::NotFound("nope".into()).into();
        let r = ChildError::of(&e);
        assert_eq!((r.errno, r.exec), (Some(libc::ENOENT), true));
        assert_eq!(
            r.message,
            "exec: \"nope\": executable file not found in $PATH"
        );
        let e: InitError = SysError {
            what: "mounting /proc".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        }
        .into();
        let r = ChildError::of(&e);
        assert_eq!((r.errno, r.exec), (Some(libc::EPERM), false));
        assert_eq!(r.message, e.to_string());
        let r = ChildError::of(&InitError::NoConsoleSocket);
        assert_eq!((r.errno, r.exec), (None, false));
        // What rootfs.rs returns keeps its errno too.
        let e: InitError = crate::rootfs::RootfsError::Cgroup(Box::new(SysError {
            what: "creating the cgroup namespace".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        }))
        .into();
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }
}

//! The last stage before `execve`, shared by the init and `exec`: rlimits, I/O priority,
//! scheduler, personality, CPU affinity, LSM labels, user and groups, the five capability sets,
//! umask, the working directory (checked to be inside the container), no_new_privs, seccomp,
//! and the executable lookup.

use crate::config::ConfigError;
use crate::sys::{self, cvt};
use crate::sys::{SysCtx, SysError};
use oci_spec::runtime::{IOPriorityClass, LinuxSchedulerPolicy, Process};
use std::ffi::CString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::str::FromStr;

/// The last stage before `execve` failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A value of the process config is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `setrlimit` failed.
    #[error("setting {name} soft={soft} hard={hard}: {source} (the runtime's hard limit is {current_hard}; raising it needs CAP_SYS_RESOURCE)")]
    Rlimit {
        /// The rlimit (`RLIMIT_NOFILE`).
        name: String,
        /// The soft limit asked for.
        soft: u64,
        /// The hard limit asked for.
        hard: u64,
        /// The hard limit the process has.
        current_hard: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `additionalGids` in a user namespace that denies `setgroups`.
    #[error("cannot set additionalGids: setgroups is denied in this user namespace")]
    SetgroupsDenied,
    /// The working directory resolves outside the root (CVE-2024-21626).
    #[error("working directory {0:?} resolves outside the container's root: refusing to start")]
    CwdOutsideRoot(String),
    /// `process.args` is empty.
    #[error("process.args must not be empty")]
    NoArgs,
    /// An argument or environment variable holds a NUL byte.
    #[error("argument {0:?} contains a NUL byte")]
    Nul(String),
    /// The program is not in any directory of `$PATH` (ENOENT).
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The program named by a path cannot be executed: missing (ENOENT), a directory (EISDIR),
    /// without execute permission (EACCES), or another error of `stat`.
    #[error("exec: {program:?}: {}", not_executable(source))]
    NotExecutable {
        /// The program, as given.
        program: String,
        /// Why, with the errno.
        #[source]
        source: io::Error,
    },
    /// `execve` failed.
    #[error("exec {path:?}: {source}")]
    Execve {
        /// The resolved program.
        path: CString,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The words runc uses for why a program cannot be executed.
fn not_executable(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::EISDIR) => "is a directory".into(),
        Some(libc::EACCES) => "permission denied".into(),
        _ => e.to_string(),
    }
}

impl ProcessError {
    /// The errno: of the failed system call, or the one that says why the program cannot be
    /// found or executed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ProcessError::NotFound(_) => Some(libc::ENOENT),
            e => std::error::Error::source(e).and_then(crate::sys::chain_errno),
        }
    }

    /// Whether finding or executing the program failed.
    pub fn is_exec(&self) -> bool {
        matches!(
            self,
            ProcessError::NotFound(_)
                | ProcessError::NotExecutable { .. }
                | ProcessError::Execve { .. }
        )
    }
}

type Result<T> = std::result::Result<T, ProcessError>;

/// The default PATH when the process env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `execve` gets.
pub struct Exec {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

/// Finds the program (`args[0]`) in the container with the process env's PATH, as runc does.
pub fn lookup(p: &Process) -> Result<Exec> {
    let args = p.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(ProcessError::NoArgs);
    };
    let env = p.env().clone().unwrap_or_default();
    let path = if arg0.contains('/') {
        check_exec(arg0).map_err(|source| ProcessError::NotExecutable {
            program: arg0.clone(),
            source,
        })?;
        arg0.clone()
    } else {
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        search
            .split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| format!("{d}/{arg0}"))
            .find(|c| check_exec(c).is_ok())
            .ok_or_else(|| ProcessError::NotFound(arg0.clone()))?
    };
    let c = |s: &str| sys::cstr(s).map_err(|_| ProcessError::Nul(s.to_string()));
    Ok(Exec {
        path: c(&path)?,
        argv: args.iter().map(|a| c(a)).collect::<Result<_>>()?,
        envp: env.iter().map(|a| c(a)).collect::<Result<_>>()?,
    })
}

/// Whether `path` is an executable file; the error's errno says why not.
fn check_exec(path: &str) -> io::Result<()> {
    let m = std::fs::metadata(path)?;
    if m.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    if m.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    Ok(())
}

impl Exec {
    /// execve; returns only on failure.
    pub fn exec(&self) -> ProcessError {
        crate::debug!("exec {:?} {:?}", self.path, self.argv);
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        // SAFETY: NULL-terminated arrays of valid C strings.
        unsafe { libc::execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        ProcessError::Execve {
            path: self.path.clone(),
            source: sys::last(),
        }
    }
}

/// Applies process.rlimits.
pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let name = r.typ().to_string();
        let res = match name.as_str() {
            "RLIMIT_CPU" => libc::RLIMIT_CPU,
            "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
            "RLIMIT_DATA" => libc::RLIMIT_DATA,
            "RLIMIT_STACK" => libc::RLIMIT_STACK,
            "RLIMIT_CORE" => libc::RLIMIT_CORE,
            "RLIMIT_RSS" => libc::RLIMIT_RSS,
            "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
            "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
            "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
            "RLIMIT_AS" => libc::RLIMIT_AS,
            "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
            "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
            "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => libc::RLIMIT_NICE,
            "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
            "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
            other => return Err(ConfigError::Rlimit(other.to_string()).into()),
        };
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: valid rlimit struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            let e = sys::last();
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: valid out-buffer.
            unsafe { libc::getrlimit(res, &mut cur) };
            return Err(ProcessError::Rlimit {
                name,
                soft: r.soft(),
                hard: r.hard(),
                current_hard: cur.rlim_max,
                source: e,
            });
        }
    }
    Ok(())
}

/// ioPriority, scheduler, personality and execCPUAffinity.final.
pub fn set_sched(p: &Process) -> Result<()> {
    if let Some(io) = p.io_priority() {
        let class: i64 = match io.class() {
            IOPriorityClass::IoprioClassRt => 1,
            IOPriorityClass::IoprioClassBe => 2,
            IOPriorityClass::IoprioClassIdle => 3,
        };
        let v = (class << 13) | io.priority();
        // SAFETY: ioprio_set takes only integers (IOPRIO_WHO_PROCESS, self, the priority).
        let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, v) };
        if r != 0 {
            return Err(SysError::last("setting process.ioPriority").into());
        }
    }
    if let Some(s) = p.scheduler() {
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        let policy = match s.policy() {
            LinuxSchedulerPolicy::SchedOther => 0,
            LinuxSchedulerPolicy::SchedFifo => 1,
            LinuxSchedulerPolicy::SchedRr => 2,
            LinuxSchedulerPolicy::SchedBatch => 3,
            LinuxSchedulerPolicy::SchedIso => 4,
            LinuxSchedulerPolicy::SchedIdle => 5,
            LinuxSchedulerPolicy::SchedDeadline => 6,
        };
        let mut flags = 0u64;
        for f in s.flags().iter().flatten() {
            flags |= match f.to_string().as_str() {
                "SCHED_RESET_ON_FORK" => 0x01,
                "SCHED_FLAG_RECLAIM" => 0x02,
                "SCHED_FLAG_DL_OVERRUN" => 0x04,
                "SCHED_FLAG_KEEP_POLICY" => 0x08,
                "SCHED_FLAG_KEEP_PARAMS" => 0x10,
                "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
                "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
                _ => 0,
            };
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy,
            flags,
            nice: s.nice().unwrap_or(0),
            priority: s.priority().unwrap_or(0) as u32,
            runtime: s.runtime().unwrap_or(0),
            deadline: s.deadline().unwrap_or(0),
            period: s.period().unwrap_or(0),
        };
        // SAFETY: valid attr struct.
        let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        if r != 0 {
            return Err(SysError::last("setting process.scheduler (sched_setattr)").into());
        }
    }
    if let Some(aff) = p.exec_cpu_affinity() {
        if let Some(fin) = aff.cpu_affinity_final() {
            set_affinity(fin)?;
        }
    }
    Ok(())
}

/// Sets the CPU affinity from a list like "0-3,7".
pub fn set_affinity(list: &str) -> Result<()> {
    let Some(set) = sys::parse_cpuset(list) else {
        return Err(ConfigError::CpuList(list.to_string()).into());
    };
    // SAFETY: valid cpu set.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })
        .sys(|| format!("setting CPU affinity {list}"))?;
    Ok(())
}

/// linux.personality.
pub fn set_personality(domain: Option<&str>) -> Result<()> {
    let v = match domain {
        None => return Ok(()),
        Some("LINUX") => 0x0000,
        Some("LINUX32") => 0x0008,
        Some(d) => return Err(ConfigError::Personality(d.to_string()).into()),
    };
    // SAFETY: personality takes only an integer.
    if unsafe { libc::personality(v) } == -1 {
        return Err(SysError::last("setting the personality").into());
    }
    Ok(())
}

/// apparmorProfile / selinuxLabel, only where the host has the LSM (ignored otherwise, as runc).
pub fn set_lsm(p: &Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_ref().filter(|s| !s.is_empty()) {
        let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false);
        if enabled {
            let attr = if std::path::Path::new("/proc/self/attr/apparmor/exec").exists() {
                "/proc/self/attr/apparmor/exec"
            } else {
                "/proc/self/attr/exec"
            };
            sys::write_file(attr, format!("exec {profile}").as_bytes())
                .sys(|| format!("setting apparmor profile {profile}"))?;
        }
    }
    if let Some(label) = p.selinux_label().as_ref().filter(|s| !s.is_empty()) {
        if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
            sys::write_file("/proc/self/attr/exec", label.as_bytes())
                .sys(|| format!("setting selinux label {label}"))?;
        }
    }
    Ok(())
}

fn cap_bits(set: Option<&oci_spec::runtime::Capabilities>, last: u32) -> Result<u64> {
    let mut bits = 0u64;
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        let Ok(cap) = caps::Capability::from_str(&name) else {
            crate::warning!("capability {name} is unknown: not granted");
            continue;
        };
        let i = cap.index() as u32;
        if i <= last {
            bits |= 1 << i;
        } else {
            crate::warning!("capability {name} is not supported by this kernel: not granted");
        }
    }
    Ok(bits)
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Capability bitmasks of a process config.
#[derive(Clone, Copy, Default)]
pub struct CapSets {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
    last: u32,
}

/// Reads process.capabilities into bitmasks (absent: no capabilities at all).
pub fn cap_sets(p: &Process) -> Result<CapSets> {
    let last = last_cap();
    let Some(c) = p.capabilities() else {
        return Ok(CapSets {
            last,
            ..Default::default()
        });
    };
    Ok(CapSets {
        bounding: cap_bits(c.bounding().as_ref(), last)?,
        effective: cap_bits(c.effective().as_ref(), last)?,
        permitted: cap_bits(c.permitted().as_ref(), last)?,
        inheritable: cap_bits(c.inheritable().as_ref(), last)?,
        ambient: cap_bits(c.ambient().as_ref(), last)?,
        last,
    })
}

fn capset(e: u64, p: u64, i: u64) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let d = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: valid header and 2-element data array.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &h as *const Header, d.as_ptr()) as i32 })
        .map(drop)
}

/// Drops the bounding set, switches to the process user and groups (keeping capabilities across
/// the switch), then sets effective/permitted/inheritable and raises ambient capabilities last.
pub fn set_user_and_caps(p: &Process, caps: &CapSets) -> Result<()> {
    for i in 0..=caps.last {
        if caps.bounding & (1 << i) == 0 {
            // SAFETY: integer prctl.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, i as libc::c_ulong, 0, 0, 0) };
            if r != 0 && sys::last().raw_os_error() != Some(libc::EINVAL) {
                return Err(SysError::last(format!(
                    "dropping capability {i} from the bounding set"
                ))
                .into());
            }
        }
    }
    sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).sys(|| "PR_SET_KEEPCAPS")?;
    let u = p.user();
    let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true);
    if setgroups_allowed {
        let gids: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
        // SAFETY: valid array.
        cvt(unsafe { libc::setgroups(gids.len(), gids.as_ptr()) })
            .sys(|| format!("setting additional groups {gids:?}"))?;
    } else if u.additional_gids().as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(ProcessError::SetgroupsDenied);
    }
    let (uid, gid) = (u.uid(), u.gid());
    // SAFETY: setresgid takes only integers.
    cvt(unsafe { libc::setresgid(gid, gid, gid) })
        .sys(|| format!("setting gid {gid} (is it mapped in the user namespace?)"))?;
    // SAFETY: setresuid takes only integers.
    cvt(unsafe { libc::setresuid(uid, uid, uid) })
        .sys(|| format!("setting uid {uid} (is it mapped in the user namespace?)"))?;
    sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).sys(|| "PR_SET_KEEPCAPS")?;
    capset(caps.effective, caps.permitted, caps.inheritable)
        .sys(|| "setting the effective/permitted/inheritable capabilities")?;
    // SAFETY: integer prctl.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    for i in 0..=caps.last {
        if caps.ambient & (1 << i) != 0 {
            // Ambient needs the capability permitted and inheritable; skip silently like runc.
            // SAFETY: integer prctl.
            unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    i as libc::c_ulong,
                    0,
                    0,
                )
            };
        }
    }
    Ok(())
}

/// umask (default 0022).
pub fn set_umask(p: &Process) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(p.user().umask().unwrap_or(0o022) as libc::mode_t) };
}

/// chdir to process.cwd and check it resolved inside the container's root (a cwd reached through
/// a leaked host fd, CVE-2024-21626, shows up as an unreachable path).
pub fn enter_cwd(p: &Process) -> Result<()> {
    let cwd = p.cwd().to_str().unwrap_or("/").to_string();
    let c = sys::cstr(&cwd).sys(|| "bad cwd")?;
    // SAFETY: valid C string.
    if unsafe { libc::chdir(c.as_ptr()) } != 0 {
        return Err(SysError::last(format!(
            "changing to the working directory {cwd:?} (process.cwd)"
        ))
        .into());
    }
    match std::env::current_dir() {
        Ok(p) if p.is_absolute() && !p.starts_with("(unreachable)") => Ok(()),
        _ => Err(ProcessError::CwdOutsideRoot(cwd)),
    }
}

/// PR_SET_NO_NEW_PRIVS.
pub fn set_no_new_privs() -> Result<()> {
    Ok(sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).sys(|| "setting no_new_privs")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn process(args: &[&str]) -> Process {
        let mut p = Process::default();
        p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        p.set_env(Some(vec!["PATH=/nonexistent:/bin:/usr/bin".into()]));
        p
    }

    fn lookup_err(args: &[&str]) -> Error {
        match lookup(&process(args)) {
            Ok(_) => panic!("{args:?} was found"),
            Err(e) => e.into(),
        }
    }

    #[test]
    fn a_missing_program_keeps_enoent() {
        let e = lookup_err(&["no-such-program-here"]);
        assert_eq!(
            e.to_string(),
            "exec: \"no-such-program-here\": executable file not found in $PATH"
        );
        assert_eq!((e.errno(), e.during_exec()), (Some(libc::ENOENT), true));
        let e = lookup_err(&["/no/such/program"]);
        assert_eq!(
            e.to_string(),
            "exec: \"/no/such/program\": no such file or directory"
        );
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn a_program_that_cannot_be_executed_keeps_its_errno() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        let e = lookup_err(&[dir]);
        assert_eq!(e.to_string(), format!("exec: {dir:?}: is a directory"));
        assert_eq!((e.errno(), e.during_exec()), (Some(libc::EISDIR), true));
        let f = d.path().join("data");
        std::fs::write(&f, "not a program").unwrap();
        let e = lookup_err(&[f.to_str().unwrap()]);
        assert!(e.to_string().ends_with(": permission denied"), "{e}");
        assert_eq!(e.errno(), Some(libc::EACCES));
        assert!(lookup(&process(&["sh"])).is_ok());
    }

    #[test]
    fn config_values_are_config_errors() {
        let e: Error = set_personality(Some("PDP11")).unwrap_err().into();
        assert_eq!(e.to_string(), "unknown personality domain PDP11");
        assert_eq!((e.errno(), e.during_exec()), (None, false));
        assert!(matches!(
            set_affinity("3-1"),
            Err(ProcessError::Config(ConfigError::CpuList(_)))
        ));
    }
}

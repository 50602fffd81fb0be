//! `linux.seccomp`: compile the profile with libseccomp into a classic BPF program once, then
//! load it with `seccomp(2)` directly, so the load itself is one syscall that allocates
//! nothing (it can run in the container's init right before `execve`) and the filter flags,
//! including `SECCOMP_FILTER_FLAG_NEW_LISTENER` for `SCMP_ACT_NOTIFY`, are under our control.

use std::io::{Read, Seek};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// Errors of compiling, loading and handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile cannot be compiled as written.
    #[error("linux.seccomp: {0}")]
    Invalid(String),
    /// libseccomp refused a step.
    #[error("linux.seccomp: {what}: {source}")]
    Library {
        /// The step.
        what: String,
        /// libseccomp's error.
        source: libseccomp::error::SeccompError,
    },
    /// Reading the compiled program back failed.
    #[error("linux.seccomp: exporting the compiled filter: {0}")]
    Export(#[source] std::io::Error),
    /// `seccomp(2)` refused the filter.
    #[error("loading the seccomp filter: {source}{hint}")]
    Load {
        /// The OS error.
        source: std::io::Error,
        /// What usually causes it.
        hint: &'static str,
    },
    /// The notify listener could not be handed to the agent.
    #[error("sending the seccomp notify fd to listenerPath {}: {source}", path.display())]
    Listener {
        /// `linux.seccomp.listenerPath`.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A notify listener arrived but the profile names no agent.
    #[error("linux.seccomp uses SCMP_ACT_NOTIFY but has no listenerPath for the agent")]
    NoListenerPath,
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
pub const FLAG_TSYNC: u32 = 1;
pub const FLAG_LOG: u32 = 2;
pub const FLAG_SPEC_ALLOW: u32 = 4;
pub const FLAG_NEW_LISTENER: u32 = 8;
pub const FLAG_TSYNC_ESRCH: u32 = 16;
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// A compiled filter, ready to load.
#[derive(Debug, Clone)]
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    flags: u32,
    notify: bool,
}

fn action(a: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let errno = |e: Option<u32>| -> Result<u16, SeccompError> {
        let e = e.unwrap_or(libc::EPERM as u32);
        u16::try_from(e)
            .map_err(|_| SeccompError::Invalid(format!("errnoRet {e} is out of range (0-65535)")))
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(errno(errno_ret)?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno(errno_ret)?),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn cond(index: u32, o: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> ScmpArgCompare {
    let (op, datum) = match o {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // OCI: value is the mask, valueTwo the value compared with the masked argument.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0))
        }
    };
    ScmpArgCompare::new(index, op, datum)
}

fn lib<T>(
    r: Result<T, libseccomp::error::SeccompError>,
    what: impl FnOnce() -> String,
) -> Result<T, SeccompError> {
    r.map_err(|source| SeccompError::Library {
        what: what(),
        source,
    })
}

/// Whether the profile uses `SCMP_ACT_NOTIFY` anywhere.
pub fn uses_notify(s: &LinuxSeccomp) -> bool {
    s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls()
            .iter()
            .flatten()
            .any(|c| c.action() == LinuxSeccompAction::ScmpActNotify)
}

/// Compiles `linux.seccomp` into a BPF program. Unknown syscall names are skipped (a profile
/// written for a newer kernel still works, as with runc); rules with the default action are
/// redundant and skipped.
pub fn compile(s: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let default = action(s.default_action(), s.default_errno_ret())?;
    let notify = uses_notify(s);
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::Invalid(
            "SCMP_ACT_NOTIFY cannot be the default action: the container could not even reach \
             its first instruction before the listener answered; notify specific syscalls instead"
                .into(),
        ));
    }
    if notify && s.listener_path().is_none() {
        return Err(SeccompError::Invalid(
            "SCMP_ACT_NOTIFY is used but listenerPath is not set: name the unix socket that \
             receives the notify file descriptor"
                .into(),
        ));
    }
    let mut ctx = lib(ScmpFilterContext::new(default), || {
        format!(
            "creating a filter with default action {}",
            s.default_action()
        )
    })?;
    for a in s.architectures().iter().flatten() {
        let sa = arch(*a);
        lib(ctx.add_arch(sa), || format!("adding architecture {a}"))?;
    }
    for (i, call) in s.syscalls().iter().flatten().enumerate() {
        let act = action(call.action(), call.errno_ret())?;
        if act == default {
            continue;
        }
        let mut conds = Vec::new();
        let mut per_index = [0u32; 6];
        for a in call.args().iter().flatten() {
            if a.index() > 5 {
                return Err(SeccompError::Invalid(format!(
                    "syscalls[{i}]: argument index {} is out of range (0-5)",
                    a.index()
                )));
            }
            per_index[a.index()] += 1;
            conds.push(cond(a.index() as u32, a.op(), a.value(), a.value_two()));
        }
        // Several conditions on one argument cannot all hold at once: like runc, treat each
        // as its own rule (OR). Otherwise all conditions make one rule (AND).
        let or_each = per_index.iter().any(|n| *n > 1);
        for name in call.names() {
            let sc = match ScmpSyscall::from_name(name) {
                Ok(sc) => sc,
                Err(_) => {
                    crate::debug!("seccomp: skipping unknown syscall {name:?}");
                    continue;
                }
            };
            let what = || format!("adding a rule for {name} ({})", call.action());
            if conds.is_empty() {
                lib(ctx.add_rule(act, sc), what)?;
            } else if or_each {
                for c in &conds {
                    lib(
                        ctx.add_rule_conditional(act, sc, std::slice::from_ref(c)),
                        what,
                    )?;
                }
            } else {
                lib(ctx.add_rule_conditional(act, sc, &conds), what)?;
            }
        }
    }

    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }
    if notify {
        flags |= FLAG_NEW_LISTENER;
        // TSYNC reports a failing thread by its id, which collides with returning the
        // listener fd; TSYNC_ESRCH makes the two compatible.
        if flags & FLAG_TSYNC != 0 {
            flags |= FLAG_TSYNC_ESRCH;
        }
    } else if flags & FLAG_WAIT_KILLABLE_RECV != 0 {
        crate::debug!(
            "seccomp: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored without SCMP_ACT_NOTIFY"
        );
        flags &= !FLAG_WAIT_KILLABLE_RECV;
    }

    Ok(Filter {
        prog: export(&ctx)?,
        flags,
        notify,
    })
}

/// The filter as `struct sock_filter`s, through a memfd (libseccomp 2.5 exports to an fd).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let fd = rustix::fs::memfd_create("berth-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    lib(ctx.export_bpf(&fd), || "exporting the BPF program".into())?;
    let mut f = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;
    let prog = insns_from_bytes(&bytes);
    if prog.is_empty() || prog.len() > u16::MAX as usize {
        return Err(SeccompError::Invalid(format!(
            "the compiled filter has {} instructions (the kernel takes 1 to 4096)",
            prog.len()
        )));
    }
    Ok(prog)
}

/// `struct sock_filter`s from their in-memory bytes (8 each, native byte order).
fn insns_from_bytes(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

impl Filter {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.prog.len()
    }

    /// Never true: a compiled filter has at least its default action.
    pub fn is_empty(&self) -> bool {
        self.prog.is_empty()
    }

    /// The `seccomp(2)` flags the filter will be loaded with.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether loading returns a notify listener fd.
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// The raw BPF program.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.prog
    }

    /// Loads the filter into the calling thread (all threads with TSYNC). The caller must have
    /// set no_new_privs or hold CAP_SYS_ADMIN. Returns the notify listener fd when the
    /// profile uses SCMP_ACT_NOTIFY. Performs no allocation on success.
    pub fn load(self) -> Result<Option<OwnedFd>, SeccompError> {
        let fprog = libc::sock_fprog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: fprog points to a live program of the stated length for the whole call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                libc::c_ulong::from(self.flags),
                &fprog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            let source = std::io::Error::last_os_error();
            let hint = match source.raw_os_error() {
                Some(libc::EACCES) => " (set process.noNewPrivileges, or load seccomp while CAP_SYS_ADMIN is still held)",
                Some(libc::EINVAL) => " (a filter flag or action is not supported by this kernel)",
                Some(libc::ESRCH) => " (another thread of the process has a different filter: TSYNC failed)",
                _ => "",
            };
            return Err(SeccompError::Load { source, hint });
        }
        if self.flags & FLAG_NEW_LISTENER != 0 {
            // SAFETY: with NEW_LISTENER the kernel returns a new fd that we own.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(r as i32) }))
        } else {
            Ok(None)
        }
    }
}

/// The cache key of a profile: the profile itself plus what else shapes the program
/// (libseccomp's version and the kernel, whose features libseccomp probes).
fn cache_key(s: &LinuxSeccomp) -> Vec<u8> {
    let lib = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let kernel = rustix::system::uname();
    let mut key = format!(
        "berth-seccomp-1\0{lib}\0{}\0",
        kernel.release().to_string_lossy()
    )
    .into_bytes();
    key.extend(serde_json::to_vec(s).unwrap_or_default());
    key
}

/// [`compile`] with a cache of compiled programs in `cache_dir` (compiling Docker's default
/// profile takes milliseconds, loading it from the cache microseconds). A cache entry holds
/// its full key and is used only when that matches exactly; entries are written atomically.
/// The directory must be private to the runtime (it is trusted like the runtime's state).
pub fn compile_cached(s: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, SeccompError> {
    use std::hash::{Hash, Hasher};
    let key = cache_key(s);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let file = cache_dir.join(format!("seccomp-{:016x}.bpf", h.finish()));
    if let Ok(bytes) = std::fs::read(&file) {
        if let Some(f) = Filter::from_cache_bytes(&key, &bytes) {
            return Ok(f);
        }
    }
    let f = compile(s)?;
    let written = std::fs::create_dir_all(cache_dir)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            berth_sys::atomic::write(
                &file,
                &f.to_cache_bytes(&key),
                berth_sys::atomic::Durability::NoSync,
            )
            .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        crate::debug!("seccomp cache {}: {e}", file.display());
    }
    Ok(f)
}

impl Filter {
    /// Serialises the filter behind `key`: key length, key, flags, notify, instructions.
    fn to_cache_bytes(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + 9 + self.prog.len() * 8);
        out.extend((key.len() as u32).to_le_bytes());
        out.extend(key);
        out.extend(self.flags.to_le_bytes());
        out.push(u8::from(self.notify));
        for i in &self.prog {
            out.extend(i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend(i.k.to_ne_bytes());
        }
        out
    }

    fn from_cache_bytes(key: &[u8], b: &[u8]) -> Option<Filter> {
        let klen = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        if b.get(4..4 + klen)? != key {
            return None;
        }
        let rest = &b[4 + klen..];
        let flags = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
        let notify = *rest.get(4)? != 0;
        let insns = &rest[5..];
        if insns.is_empty() || insns.len() & 7 != 0 {
            return None;
        }
        let prog = insns_from_bytes(insns);
        Some(Filter {
            prog,
            flags,
            notify,
        })
    }
}

/// The runtime-spec's container process state sent with the listener fd: `fds` names the
/// single fd passed alongside ("seccompFd"). `state` is the container's state object.
pub fn process_state(
    pid: i32,
    metadata: Option<&str>,
    state: serde_json::Value,
) -> serde_json::Value {
    let version = state
        .get("ociVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("1.2.0")
        .to_string();
    let mut v = serde_json::json!({
        "ociVersion": version,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = metadata {
        v["metadata"] = serde_json::Value::String(m.to_string());
    }
    v
}

/// Connects to the unix socket `path` (`linux.seccomp.listenerPath`) and sends `state_json`
/// (see [`process_state`]) with the listener fd in one message (SCM_RIGHTS).
pub fn send_to_listener(
    path: &Path,
    listener_fd: BorrowedFd<'_>,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let err = |source: std::io::Error| SeccompError::Listener {
        path: path.to_path_buf(),
        source,
    };
    let sock = std::os::unix::net::UnixStream::connect(path).map_err(err)?;
    let n = berth_sys::fdpass::send(&sock, state_json, &[listener_fd]).map_err(err)?;
    if n != state_json.len() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("sent {n} of {} bytes", state_json.len()),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_action_compiles() {
        for a in [
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_TRAP",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_TRACE",
            "SCMP_ACT_LOG",
            "SCMP_ACT_NOTIFY",
        ] {
            let p = profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": ["getcwd"], "action": a, "errnoRet": 5}]
            }));
            let f = compile(&p).unwrap_or_else(|e| panic!("{a}: {e}"));
            assert!(f.len() > 2, "{a}");
            assert_eq!(f.uses_notify(), a == "SCMP_ACT_NOTIFY");
            assert_eq!(f.flags() & FLAG_NEW_LISTENER != 0, a == "SCMP_ACT_NOTIFY");
        }
        // The default action itself, with and without defaultErrnoRet.
        for a in [
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_LOG",
            "SCMP_ACT_TRAP",
        ] {
            let p = profile(
                serde_json::json!({"defaultAction": a, "defaultErrnoRet": 38,
                "syscalls": [{"names": ["write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}),
            );
            compile(&p).unwrap();
        }
    }

    #[test]
    fn flags_are_mapped_and_made_compatible() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]
        }));
        // WAIT_KILLABLE_RECV only means something with a listener.
        assert_eq!(compile(&p).unwrap().flags(), FLAG_LOG | FLAG_SPEC_ALLOW);
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/x",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert_eq!(
            compile(&p).unwrap().flags(),
            FLAG_TSYNC | FLAG_TSYNC_ESRCH | FLAG_NEW_LISTENER | FLAG_WAIT_KILLABLE_RECV
        );
    }

    #[test]
    fn bad_profiles_are_refused_with_a_reason() {
        let e = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot be the default action"), "{e}");
        let e = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("listenerPath"), "{e}");
        let e = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("index 6"), "{e}");
        let e = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("70000"), "{e}");
    }

    #[test]
    fn unknown_syscalls_and_default_action_rules_are_skipped() {
        let base = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}),
        ))
        .unwrap();
        let more = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd", "no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO"},
                         {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}),
        ))
        .unwrap();
        assert_eq!(base.len(), more.len());
    }

    #[test]
    fn more_architectures_make_a_longer_program() {
        let rules = serde_json::json!([{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]);
        let native = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}),
        ))
        .unwrap();
        let multi = compile(&profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules})))
        .unwrap();
        assert!(
            multi.len() > native.len(),
            "{} vs {}",
            multi.len(),
            native.len()
        );
        // Every program starts by loading seccomp_data.arch (offset 4).
        let first = multi.instructions()[0];
        assert_eq!((first.code, first.k), (0x20, 4));
    }

    #[test]
    fn cache_returns_the_same_program_and_ignores_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7}]}));
        let fresh = compile(&p).unwrap();
        let first = compile_cached(&p, dir.path()).unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1);
        let cached = compile_cached(&p, dir.path()).unwrap();
        for f in [&first, &cached] {
            assert_eq!(f.flags(), fresh.flags());
            assert_eq!(f.len(), fresh.len());
            for (a, b) in f.instructions().iter().zip(fresh.instructions()) {
                assert_eq!((a.code, a.jt, a.jf, a.k), (b.code, b.jt, b.jf, b.k));
            }
        }
        // A different profile whose entry would land in the same file is not confused with it.
        let other = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 8}]}));
        let path = entries[0].path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(Filter::from_cache_bytes(&cache_key(&other), &bytes).is_none());
        assert!(Filter::from_cache_bytes(&cache_key(&p), &bytes[..bytes.len() - 3]).is_none());
    }

    #[test]
    fn process_state_has_the_spec_fields() {
        let v = process_state(
            42,
            Some("meta"),
            serde_json::json!({"ociVersion": "1.2.1", "id": "c"}),
        );
        assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "meta");
        assert_eq!(v["ociVersion"], "1.2.1");
        assert_eq!(v["state"]["id"], "c");
    }
}

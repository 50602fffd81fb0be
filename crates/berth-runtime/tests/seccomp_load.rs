//! Compiled seccomp filters loaded for real. Each load happens in a forked child: fork leaves
//! only the calling thread, so the child is a fresh single-threaded process whatever the test
//! harness runs; the filter is compiled before the fork and the child only makes raw
//! syscalls, writes its results to a pipe and `_exit`s.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use berth_runtime::seccomp::{self, Filter};
use oci_spec::runtime::LinuxSeccomp;

const TRAPPED: i32 = 99;
const LOAD_FAILED: i32 = 98;

#[derive(Debug, PartialEq)]
enum End {
    Exit(i32),
    Signal(i32),
}

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).unwrap()
}

fn errno() -> i64 {
    // SAFETY: errno location is per thread and always valid.
    i64::from(unsafe { *libc::__errno_location() })
}

/// A raw syscall result: the value, or minus errno.
fn sys(r: libc::c_long) -> i64 {
    if r < 0 {
        -errno()
    } else {
        r
    }
}

extern "C" fn on_sigsys(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(TRAPPED) }
}

/// Loads `filter` in a forked child, runs `body` there (it fills up to 16 results), and
/// returns how the child ended with the results it sent.
fn in_child(filter: Filter, body: impl FnOnce(&mut [i64; 16])) -> (End, Vec<i64>) {
    in_child_raw(filter, |listener, o| {
        std::mem::forget(listener);
        body(o)
    })
}

fn mkdir_probe() -> i64 {
    // SAFETY: a constant C string.
    sys(unsafe { libc::syscall(libc::SYS_mkdir, c"/nonexistent-berth/x".as_ptr(), 0o755) })
}

fn getcwd_probe() -> i64 {
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer of the given size.
    sys(unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) })
}

fn getpid_probe() -> i64 {
    // SAFETY: no arguments.
    sys(unsafe { libc::syscall(libc::SYS_getpid) })
}

#[test]
fn seccomp_errno_ret_and_default_action() {
    let f = seccomp::compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}
        ]
    })))
    .unwrap();
    let (end, v) = in_child(f, |o| {
        o[0] = mkdir_probe();
        o[1] = getcwd_probe();
        o[2] = getpid_probe();
    });
    assert_eq!(end, End::Exit(0));
    assert_eq!(v[0], -i64::from(libc::EXDEV));
    assert_eq!(v[1], -i64::from(libc::EPERM), "errno defaults to EPERM");
    assert!(v[2] > 0, "unlisted syscalls follow the default action");
}

#[test]
fn seccomp_default_errno_ret_applies_to_unlisted_syscalls() {
    let f = seccomp::compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EOPNOTSUPP,
        "syscalls": [
            {"names": ["write", "exit_group", "exit"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_LOG"}
        ]
    })))
    .unwrap();
    let (end, v) = in_child(f, |o| {
        o[0] = getpid_probe();
        o[1] = getcwd_probe();
        // SAFETY: no arguments.
        o[2] = sys(unsafe { libc::syscall(libc::SYS_getppid) });
    });
    assert_eq!(end, End::Exit(0));
    assert_eq!(v[0], -i64::from(libc::EOPNOTSUPP));
    assert_eq!(v[1], -i64::from(libc::EOPNOTSUPP));
    assert!(v[2] > 0, "SCMP_ACT_LOG lets the syscall run");
}

#[test]
fn seccomp_kill_trap_and_trace_actions() {
    let run = |action: &str| {
        let f = seccomp::compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": action}]
        })))
        .unwrap();
        in_child(f, |o| o[0] = getcwd_probe())
    };
    assert_eq!(run("SCMP_ACT_KILL").0, End::Signal(libc::SIGSYS));
    assert_eq!(run("SCMP_ACT_KILL_THREAD").0, End::Signal(libc::SIGSYS));
    assert_eq!(run("SCMP_ACT_KILL_PROCESS").0, End::Signal(libc::SIGSYS));
    // TRAP raises SIGSYS, which the child catches.
    assert_eq!(run("SCMP_ACT_TRAP").0, End::Exit(TRAPPED));
    // TRACE without a tracer: the syscall is skipped with ENOSYS.
    assert_eq!(
        run("SCMP_ACT_TRACE"),
        (End::Exit(0), vec![-i64::from(libc::ENOSYS)])
    );
    let (end, v) = run("SCMP_ACT_ALLOW");
    assert_eq!(end, End::Exit(0));
    assert!(v[0] > 0);
}

#[test]
fn seccomp_argument_conditions_with_every_operator() {
    let rule = |name: &str, errno: i32, args: serde_json::Value| serde_json::json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": args});
    let arg = |index: u32, op: &str, value: u64| serde_json::json!({"index": index, "value": value, "op": op});
    let f = seccomp::compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            rule("fsync", 40, serde_json::json!([arg(0, "SCMP_CMP_EQ", 1000)])),
            rule("fdatasync", 41, serde_json::json!([arg(0, "SCMP_CMP_NE", 1000)])),
            rule("dup", 42, serde_json::json!([arg(0, "SCMP_CMP_LT", 1000)])),
            rule("fchdir", 43, serde_json::json!([arg(0, "SCMP_CMP_LE", 1000)])),
            rule("syncfs", 44, serde_json::json!([arg(0, "SCMP_CMP_GE", 1000)])),
            rule("close", 45, serde_json::json!([arg(0, "SCMP_CMP_GT", 1000)])),
            rule("lseek", 46, serde_json::json!([{"index": 2, "value": 0xf0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}])),
            // Two conditions on one argument: either matches (OR).
            rule("flock", 47, serde_json::json!([arg(0, "SCMP_CMP_EQ", 1000), arg(0, "SCMP_CMP_EQ", 1002)])),
            // Conditions on different arguments: both must match (AND).
            rule("ftruncate", 48, serde_json::json!([arg(0, "SCMP_CMP_EQ", 1000), arg(1, "SCMP_CMP_EQ", 5)]))
        ]
    })))
    .unwrap();
    let (end, v) = in_child(f, |o| {
        // SAFETY: syscalls on fds that are not open; they fail with EBADF unless filtered.
        unsafe {
            use libc::syscall as s;
            o[0] = sys(s(libc::SYS_fsync, 1000)) * 100 + sys(s(libc::SYS_fsync, 1001));
            o[1] = sys(s(libc::SYS_fdatasync, 1001)) * 100 + sys(s(libc::SYS_fdatasync, 1000));
            o[2] = sys(s(libc::SYS_dup, 999)) * 100 + sys(s(libc::SYS_dup, 1000));
            o[3] = sys(s(libc::SYS_fchdir, 1000)) * 100 + sys(s(libc::SYS_fchdir, 1001));
            o[4] = sys(s(libc::SYS_syncfs, 1000)) * 100 + sys(s(libc::SYS_syncfs, 999));
            o[5] = sys(s(libc::SYS_close, 1001)) * 100 + sys(s(libc::SYS_close, 1000));
            o[6] = sys(s(libc::SYS_lseek, 1000, 0, 0x13)) * 100
                + sys(s(libc::SYS_lseek, 1000, 0, 0x23));
            o[7] = sys(s(libc::SYS_flock, 1000, libc::LOCK_SH)) * 100
                + sys(s(libc::SYS_flock, 1001, libc::LOCK_SH));
            o[8] = sys(s(libc::SYS_flock, 1002, libc::LOCK_SH));
            o[9] =
                sys(s(libc::SYS_ftruncate, 1000, 5)) * 100 + sys(s(libc::SYS_ftruncate, 1000, 6));
            o[10] = sys(s(libc::SYS_ftruncate, 1001, 5));
        }
    });
    assert_eq!(end, End::Exit(0));
    let ebadf = -i64::from(libc::EBADF);
    // Each pair: (matching call's errno) * 100 + (non-matching call's EBADF).
    let want: Vec<i64> = (40..=48).map(|e| -e * 100 + ebadf).collect();
    assert_eq!(&v[..8], &want[..8], "EQ NE LT LE GE GT MASKED_EQ OR");
    assert_eq!(v[8], -47, "the second condition of an OR");
    assert_eq!(v[9], want[8], "AND");
    assert_eq!(v[10], ebadf, "AND needs both");
}

/// getpid through the i386 entry point (int 0x80, syscall 20), as a 32-bit program would.
fn getpid_x86() -> i64 {
    let ret: i64;
    // SAFETY: int 0x80 with eax = 20 (getpid) takes no pointers.
    unsafe {
        std::arch::asm!("int 0x80", inlateout("rax") 20i64 => ret, options(nostack));
    }
    ret as i32 as i64
}

/// getpid through the x32 ABI (x86_64 number with bit 30 set).
fn getpid_x32() -> i64 {
    // SAFETY: no arguments.
    sys(unsafe { libc::syscall(libc::SYS_getpid | 0x4000_0000) })
}

#[test]
fn seccomp_architectures_x86_and_x32() {
    let allow_all = || {
        seccomp::compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}),
        ))
        .unwrap()
    };
    // Without IA32 emulation int 0x80 faults; without x32 support the call fails.
    let x86 = in_child(allow_all(), |o| o[0] = getpid_x86())
        .1
        .first()
        .is_some_and(|v| *v > 0);
    let x32 = in_child(allow_all(), |o| o[0] = getpid_x32())
        .1
        .first()
        .is_some_and(|v| *v > 0);
    eprintln!("kernel runs x86 syscalls: {x86}, x32 syscalls: {x32}");
    let rules =
        serde_json::json!([{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77}]);
    if x86 {
        // The rule is translated for each listed architecture.
        let f = seccomp::compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": rules}),
        ))
        .unwrap();
        let (end, v) = in_child(f, |o| {
            o[0] = getpid_probe();
            o[1] = getpid_x86();
        });
        assert_eq!((end, v), (End::Exit(0), vec![-77, -77]));
        // An architecture left out of the filter is killed.
        let f = seccomp::compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules}),
        ))
        .unwrap();
        assert_eq!(
            in_child(f, |o| o[0] = getpid_x86()).0,
            End::Signal(libc::SIGSYS)
        );
    }
    let f = seccomp::compile(&profile(
        serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"], "syscalls": rules}),
    ))
    .unwrap();
    let (end, v) = in_child(f, |o| {
        o[0] = getpid_probe();
        o[1] = getpid_x32();
    });
    assert_eq!(end, End::Exit(0));
    assert_eq!(v[0], -77);
    if x32 {
        assert_eq!(v[1], -77);
    }
}

#[test]
fn seccomp_log_and_spec_allow_flags_load() {
    let f = seccomp::compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3}]
    })))
    .unwrap();
    let (end, v) = in_child(f, |o| o[0] = getcwd_probe());
    assert_eq!((end, v), (End::Exit(0), vec![-3]));
}

#[test]
fn seccomp_notify_sends_the_listener_and_the_agent_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "berth-test",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let f = seccomp::compile(&p).unwrap();
    assert!(f.uses_notify());
    // The agent: receive the fd and state, answer one notification with 4242.
    let agent = std::thread::spawn(move || {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 8192];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut fd = -1;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(f) = c {
                fd = f[0];
            }
        }
        let n = msg.bytes;
        let state: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert!(fd >= 0, "no fd received");
        let req = libseccomp::ScmpNotifReq::receive(fd).unwrap();
        libseccomp::ScmpNotifResp::new_val(req.id, 4242, libseccomp::ScmpNotifRespFlags::empty())
            .respond(fd)
            .unwrap();
        // SAFETY: fd came to us by SCM_RIGHTS.
        unsafe { libc::close(fd) };
        (state, req.pid)
    });
    let (end, v) = in_child_with_listener(f, &sock, |o| {
        // SAFETY: no arguments.
        o[0] = sys(unsafe { libc::syscall(libc::SYS_getppid) });
    });
    assert_eq!(end, End::Exit(0));
    assert_eq!(v, vec![4242], "the agent's answer is the syscall's result");
    let (state, pid) = agent.join().unwrap();
    assert_eq!(state["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(state["metadata"], "berth-test");
    assert_eq!(state["pid"].as_u64().unwrap() as u32, pid);
    assert_eq!(state["state"]["id"], "notify-test");
}

/// Like [`in_child`], but the child sends its listener fd to the agent at `sock` first (in
/// the runtime the container's init does this).
fn in_child_with_listener(
    filter: Filter,
    sock: &std::path::Path,
    body: impl FnOnce(&mut [i64; 16]),
) -> (End, Vec<i64>) {
    let sock = sock.to_path_buf();
    in_child_raw(filter, move |listener, o| {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let st = seccomp::process_state(
            pid,
            Some("berth-test"),
            serde_json::json!({"ociVersion": "1.2.0", "id": "notify-test", "status": "creating", "pid": pid}),
        );
        let fd = listener.expect("a listener fd");
        use std::os::fd::AsFd;
        if seccomp::send_to_listener(&sock, fd.as_fd(), st.to_string().as_bytes()).is_err() {
            o[15] = -1;
            return;
        }
        body(o)
    })
}

fn in_child_raw(
    filter: Filter,
    body: impl FnOnce(Option<OwnedFd>, &mut [i64; 16]),
) -> (End, Vec<i64>) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only makes syscalls and _exits (glibc keeps malloc usable after fork).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain syscalls in the child.
        unsafe {
            libc::close(fds[0]);
            libc::signal(libc::SIGSYS, on_sigsys as *const () as usize);
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        }
        let listener = match filter.load() {
            Ok(l) => l,
            // SAFETY: _exit is always fine.
            Err(_) => unsafe { libc::_exit(LOAD_FAILED) },
        };
        let mut out = [i64::MIN; 16];
        body(listener, &mut out);
        // SAFETY: writes a local buffer to our pipe, then exits.
        unsafe {
            libc::write(fds[1], out.as_ptr().cast(), std::mem::size_of_val(&out));
            libc::_exit(0);
        }
    }
    // SAFETY: we own both ends here.
    unsafe { libc::close(fds[1]) };
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let end = if libc::WIFSIGNALED(status) {
        End::Signal(libc::WTERMSIG(status))
    } else {
        End::Exit(libc::WEXITSTATUS(status))
    };
    let vals = bytes
        .chunks_exact(8)
        .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
        .filter(|v| *v != i64::MIN)
        .collect();
    (end, vals)
}

/// Docker's default profile (kept by the engine), reduced to the rules every container gets
/// (no capability or architecture conditions).
fn dockers_base_profile() -> Option<LinuxSeccomp> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../berth-engine/src/seccomp_default.json"
    );
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let empty = |x: &serde_json::Value| x.as_object().is_none_or(|o| o.is_empty());
    let syscalls: Vec<serde_json::Value> = v["syscalls"]
        .as_array()?
        .iter()
        .filter(|r| empty(&r["includes"]) && empty(&r["excludes"]))
        .map(|r| {
            let mut r = r.clone();
            let o = r.as_object_mut().unwrap();
            o.remove("includes");
            o.remove("excludes");
            o.remove("comment");
            r
        })
        .collect();
    Some(profile(serde_json::json!({
        "defaultAction": v["defaultAction"],
        "defaultErrnoRet": v["defaultErrnoRet"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })))
}

#[test]
fn seccomp_dockers_default_profile_compiles_and_loads() {
    let Some(p) = dockers_base_profile() else {
        eprintln!("Docker's default profile is not in the tree: skipped");
        return;
    };
    let t = std::time::Instant::now();
    let f = seccomp::compile(&p).unwrap();
    eprintln!(
        "compiled Docker's default profile: {} instructions in {:?}",
        f.len(),
        t.elapsed()
    );
    // From the cache: the same program, much faster; the cached copy is what gets loaded.
    let dir = tempfile::tempdir().unwrap();
    seccomp::compile_cached(&p, dir.path()).unwrap();
    let t = std::time::Instant::now();
    let cached = seccomp::compile_cached(&p, dir.path()).unwrap();
    eprintln!("from the cache in {:?}", t.elapsed());
    assert_eq!(cached.len(), f.len());
    let (end, v) = in_child(cached, |o| {
        o[0] = getpid_probe();
        // SAFETY: SYSLOG_ACTION_SIZE_BUFFER takes no buffer.
        o[1] = sys(unsafe { libc::syscall(libc::SYS_syslog, 10, 0, 0) });
        o[2] = getcwd_probe();
    });
    assert_eq!(end, End::Exit(0));
    assert!(v[0] > 0 && v[2] > 0, "{v:?}");
    assert_eq!(
        v[1],
        -i64::from(libc::EPERM),
        "syslog needs CAP_SYSLOG in the profile"
    );
}

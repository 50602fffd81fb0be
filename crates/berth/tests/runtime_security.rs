//! Security cases, each attempted and refused: symlinked mount targets (CVE-2021-30465 family),
//! a fake /dev/null for masked paths (CVE-2025-31133), a /dev/console symlink (CVE-2025-52565),
//! a cwd through a leaked fd (CVE-2024-21626), the host binary reachable through /proc/<init>/exe
//! (CVE-2019-5736); plus people-readable errors for a missing binary and a bad config.

mod runtime_common;
use runtime_common::*;
use serde_json::json;

#[test]
fn symlinked_mount_target_stays_inside_the_rootfs() {
    let mut rt = Rt::new();
    rt.config["root"]["readonly"] = json!(false);
    let host_dir = rt.path("host-target");
    std::fs::create_dir_all(&host_dir).unwrap();
    // rootfs/mnt/evil -> <absolute host path>
    std::fs::create_dir_all(rt.rootfs().join("mnt")).unwrap();
    std::os::unix::fs::symlink(&host_dir, rt.rootfs().join("mnt/evil")).unwrap();
    // and a relative escape: rootfs/mnt/up -> ../../../../../../..<host path>
    let rel = format!("../../../../../../../..{}", host_dir.display());
    std::os::unix::fs::symlink(&rel, rt.rootfs().join("mnt/up")).unwrap();
    rt.mount(json!({"destination": "/mnt/evil", "type": "tmpfs", "source": "tmpfs"}));
    let src = rt.path("bind-src");
    std::fs::create_dir_all(&src).unwrap();
    rt.mount(
        json!({"destination": "/mnt/up/sub", "type": "bind", "source": src, "options": ["bind"]}),
    );
    rt.args(&[
        "sh",
        "-c",
        "echo pwned > /mnt/evil/file; test -d /mnt/up/sub && echo ok",
    ]);
    assert_eq!(rt.run_ok("symlink"), "ok\n");
    assert_eq!(
        std::fs::read_dir(&host_dir).unwrap().count(),
        0,
        "the host directory was written to"
    );
    let inside = rt.rootfs().join(host_dir.strip_prefix("/").unwrap());
    assert!(
        inside.is_dir(),
        "the symlink target was not created inside the rootfs"
    );
}

#[test]
fn fake_dev_null_is_refused_for_masked_paths() {
    for kind in ["symlink", "file"] {
        let mut rt = Rt::new();
        // /dev comes from the rootfs itself (bind), with a planted "null".
        let dev = rt.rootfs().join("fakedev");
        std::fs::create_dir_all(&dev).unwrap();
        match kind {
            "symlink" => {
                std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", dev.join("null"))
                    .unwrap()
            }
            _ => std::fs::write(dev.join("null"), "not a device").unwrap(),
        }
        let mounts = rt.config["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
        mounts.insert(
            1,
            json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}),
        );
        rt.args(&["true"]);
        let (code, _, err) = rt.run("devnull");
        assert_eq!(code, 1, "{kind}: container started with a fake /dev/null");
        assert!(err.contains("/dev/null"), "{kind}: {err}");
    }
}

#[test]
fn console_symlink_is_not_followed() {
    let mut rt = Rt::new();
    let dev = rt.rootfs().join("fakedev");
    std::fs::create_dir_all(dev.join("pts")).unwrap();
    std::os::unix::fs::symlink("/proc/sysrq-trigger", dev.join("console")).unwrap();
    std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx")).unwrap();
    let mounts = rt.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/dev");
    mounts.insert(
        1,
        json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}),
    );
    rt.config["linux"]["maskedPaths"] = json!([]);
    rt.config["process"]["terminal"] = json!(true);
    rt.args(&["true"]);
    rt.write();
    let id = rt.id("console");
    let sock = rt.path("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(&rt.bundle)
        .arg("--console-socket")
        .arg(&sock)
        .arg(&id)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "created with /dev/console -> /proc/sysrq-trigger"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/dev/console"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cwd_through_a_leaked_fd_is_refused() {
    let mut rt = Rt::new();
    let host_dir = rt.path("host-secret");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("secret"), "s3cret").unwrap();
    rt.args(&["cat", "secret"]);
    for (preserve, fd) in [("0", "7"), ("1", "3")] {
        rt.config["process"]["cwd"] = json!(format!("/proc/self/fd/{fd}"));
        rt.write();
        let id = rt.id("cwd");
        // The runtime itself inherits an fd on a host directory (as in the runc CVE).
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(r#"exec "$0" --root "$1" run --preserve-fds {preserve} --bundle "$2" "$3" {fd}<"$4""#))
            .arg(BIN)
            .arg(&rt.root)
            .arg(&rt.bundle)
            .arg(&id)
            .arg(&host_dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("s3cret"),
            "host file read through a leaked fd (preserve {preserve})"
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("working directory"), "{err}");
    }
}

#[test]
fn host_binary_is_not_reachable_from_the_container() {
    let mut rt = Rt::new();
    rt.args(&["sleep", "1000"]);
    let id = rt.create("exe");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    // The init is still the runtime binary (blocked on the exec fifo), run from a read-only
    // view of it: a process in the container must not be able to read or open it through
    // /proc/1/exe, and nothing can write it through that link.
    assert!(
        berth_runtime::selfexe::exe_is_read_only(&format!("/proc/{pid}/exe")).unwrap(),
        "the init runs from a writable binary"
    );
    let (code, out, err) = rt.exec(
        &id,
        &["sh", "-c", "cat /proc/1/exe > /dev/null 2>&1 && echo READ; echo x >> /proc/1/exe 2>/dev/null && echo WROTE; ls -l /proc/1/fd 2>/dev/null | grep -c berth; echo end"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("READ"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    // After start the init is the user program, not the runtime.
    assert!(rt.rt(&["start", &id]).status.success());
    let exe = || std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    for _ in 0..100 {
        if exe().display().to_string().contains("busybox") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        exe().display().to_string().ends_with("/bin/busybox"),
        "{}",
        exe().display()
    );
}

/// CVE-2019-5736 itself: whoever holds a reference to a container process's runtime binary
/// (as a process in the container can, through /proc/<pid>/exe) cannot write the binary once
/// it stops running. A copy of the runtime is attacked, so a failure harms nothing else.
#[test]
fn runtime_binary_cannot_be_overwritten_through_proc_exe() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut rt = Rt::new();
    let copy = rt.path("berth-runtime-copy");
    std::fs::copy(BIN, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    rt.args(&["sleep", "1000"]);
    rt.write();
    let id = rt.id("cve5736");
    // The container inherits the runtime's stdio: nothing here may wait for pipes to close.
    let rt_copy = |args: &[&str]| {
        std::process::Command::new(&copy)
            .arg("--root")
            .arg(&rt.root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    };
    assert!(rt_copy(&["create", "--bundle", &rt.b(), &id]).success());
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let link = std::ffi::CString::new(format!("/proc/{pid}/exe")).unwrap();
    // SAFETY: a valid C string; the fd returned is owned below.
    let held = unsafe { libc::open(link.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    assert!(held >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: just opened.
    let held = unsafe { OwnedFd::from_raw_fd(held) };
    assert!(rt_copy(&["delete", "--force", &id]).success());
    let reopen = std::ffi::CString::new(format!("/proc/self/fd/{}", held.as_raw_fd())).unwrap();
    let mut err = None;
    for _ in 0..200 {
        // SAFETY: a valid C string.
        let w = unsafe { libc::open(reopen.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if w >= 0 {
            // SAFETY: w was just opened; the write goes to the attacked copy only.
            unsafe {
                libc::write(w, b"pwned".as_ptr().cast(), 5);
                libc::close(w);
            }
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ETXTBSY) {
            err = Some(e);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        err.and_then(|e| e.raw_os_error()),
        Some(libc::EROFS),
        "the runtime's binary was writable through /proc/<pid>/exe"
    );
    assert!(
        std::fs::read(&copy).unwrap() == before,
        "the runtime binary changed"
    );
}

#[test]
fn missing_binary_and_bad_config_are_clear_errors() {
    let mut rt = Rt::new();
    rt.args(&["nosuchprogram"]);
    let (code, _, err) = rt.run("missing");
    assert_eq!(code, 1);
    assert!(
        err.contains(r#"exec: "nosuchprogram": executable file not found in $PATH"#),
        "{err}"
    );
    rt.args(&["/bin/nosuch"]);
    let (code, _, err) = rt.run("missing2");
    assert_eq!(code, 1);
    assert!(
        err.contains("/bin/nosuch") && err.contains("no such file"),
        "{err}"
    );
    // Nothing is left behind by failed creates.
    assert_eq!(String::from_utf8_lossy(&rt.rt(&["list", "-q"]).stdout), "");

    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("args", json!({"process": {"args": 5}}), "config.json"),
        (
            "emptyargs",
            json!({"process": {"args": []}}),
            "process.args",
        ),
        ("relcwd", json!({"process": {"cwd": "tmp"}}), "cwd"),
        (
            "ns",
            json!({"linux": {"namespaces": [{"type": "bogus"}]}}),
            "config.json",
        ),
        (
            "hostname",
            json!({"linux": {"namespaces": [{"type": "mount"}]}, "hostname": "x"}),
            "UTS",
        ),
        ("root", json!({"root": {"path": "nope"}}), "rootfs"),
        (
            "userns",
            json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}]}}),
            "uidMappings",
        ),
        (
            "rlimits",
            json!({"process": {"rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                {"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}
            ]}}),
            "RLIMIT_NOFILE twice",
        ),
        (
            "intelrdt",
            json!({"linux": {"intelRdt": {"closID": "berth"}}}),
            "intelRdt",
        ),
    ];
    for (name, patch, want) in cases {
        let mut r2 = Rt::new();
        merge(&mut r2.config, &patch);
        let (code, _, err) = r2.run(name);
        assert_eq!(code, 1, "{name}");
        assert!(err.contains(want), "{name}: {err}");
    }
    // An unknown capability is a warning, not a failure; the known ones are still granted.
    let mut r3 = Rt::new();
    r3.config["process"]["capabilities"] = json!({"bounding": ["CAP_KILL", "CAP_NOT_A_THING"], "effective": ["CAP_KILL"],
               "permitted": ["CAP_KILL", "CAP_NOT_A_THING"]});
    r3.args(&["grep", "CapEff", "/proc/self/status"]);
    let (code, out, err) = r3.run("unknowncap");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("CAP_NOT_A_THING"),
        "{err}"
    );
    assert!(out.contains("0000000000000020"), "{out}");
    let out = rt
        .cmd()
        .args(["--systemd-cgroup", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("systemd cgroup driver not supported"));
}

fn merge(a: &mut serde_json::Value, b: &serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                if v.is_object() && a.get(k).is_some_and(|x| x.is_object()) {
                    merge(a.get_mut(k).unwrap(), v);
                } else {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

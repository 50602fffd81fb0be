//! What berth answers when a run cannot be set up or its input is wrong: Docker's exit codes
//! (127 only for a missing program, 126 only for one that cannot be executed, 125 for
//! everything berth itself fails at), and messages that name the flag and say each OS error
//! once.

mod container_support;
use berth_testutil::fixtures::{Compression, LayoutWriter, Platform};
use berth_testutil::{push, PushOpts};
use container_support::*;
use std::process::Output;

/// `berth run --rm FLAGS IMAGE CMD...`'s output (not asserting success).
fn run(env: &Env, flags: &[&str], cmd: &[&str]) -> Output {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(flags);
    a.push(&env.image);
    a.extend_from_slice(cmd);
    env.berth(&a)
}

/// Asserts the exit code and that stderr holds `needle`; returns stderr.
fn expect(out: &Output, code: i32, needle: &str, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
    err
}

/// Each OS error appears once in a message ("... (os error 2)" never twice).
fn said_once(err: &str) {
    let n = err.matches("(os error").count();
    assert!(n <= 1, "an OS error is repeated: {err}");
}

#[test]
fn only_the_program_gives_126_or_127_and_setup_failures_give_125() {
    let env = Env::new();
    let src = tempfile::tempdir().unwrap();
    let src = src.path().to_str().unwrap().to_string();
    // Binds that break the container's set-up: the runtime fails with ENOENT, which is not a
    // missing program.
    for (dst, what) in [
        ("/", "a bind over the root"),
        ("/proc", "a bind over /proc"),
    ] {
        let v = format!("{src}:{dst}");
        let out = run(&env, &["-v", &v], &["true"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{what}: {err}");
        assert!(!err.trim().is_empty(), "{what}: no message");
        said_once(&err);
    }
    // The program: missing, not executable, a directory.
    let out = run(&env, &[], &["no-such-program"]);
    expect(
        &out,
        127,
        "executable file not found",
        "a program not in $PATH",
    );
    let out = run(&env, &[], &["/no/such/program"]);
    expect(&out, 127, "no such file or directory", "a missing path");
    let out = run(&env, &[], &["/etc"]);
    expect(&out, 126, "is a directory", "a directory");
    let out = run(&env, &[], &["/etc/passwd"]);
    expect(&out, 126, "permission denied", "a file without x");
}

/// An image whose `/etc/resolv.conf` is a symlink (to a host path, or relative): berth
/// bind-mounts its own file over the path, resolved inside the root, as Docker does. The run
/// works and nothing is written on the host at the link's target.
#[test]
fn an_image_with_a_symlinked_resolv_conf_runs() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let host_target = tmp.path().join("host-resolv.conf");
    let registry = env.image.split('/').next().unwrap().to_string();
    for (tag, target) in [
        ("abs", host_target.to_str().unwrap().to_string()),
        ("rel", "../run/systemd/resolve/stub-resolv.conf".to_string()),
        ("dangling-dir", "/run/nowhere/resolv.conf".to_string()),
    ] {
        let rootfs = tmp.path().join(format!("rootfs-{tag}"));
        berth_testutil::busybox_rootfs(&rootfs).unwrap();
        let link = rootfs.join("etc/resolv.conf");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let layout = tmp.path().join(format!("layout-{tag}"));
        let mut w = LayoutWriter::create(&layout).unwrap();
        let layer = w.write_layer_from_dir(Compression::Gzip, &rootfs).unwrap();
        let config = serde_json::json!({"Env": ["PATH=/bin:/sbin:/usr/bin"], "Cmd": ["sh"]});
        let m = w.write_image(&Platform::host(), config, &[layer]).unwrap();
        w.tag("latest", &m);
        w.finish().unwrap();
        let image = format!("{registry}/rsym-{tag}:latest");
        push(&layout, "latest", &image, &PushOpts::default()).expect("push");
        env.ok(&["pull", "-q", &image]);
        for net in [&["--network", "none"][..], &["--dns", "9.9.9.9"][..]] {
            let mut a = vec!["run", "--rm"];
            a.extend_from_slice(net);
            a.extend_from_slice(&[&image, "cat", "/etc/resolv.conf"]);
            let out = env.berth(&a);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{tag} {net:?}: {}",
                text(&out.stderr)
            );
            if net.contains(&"--dns") {
                assert!(
                    text(&out.stdout).contains("9.9.9.9"),
                    "{tag}: {}",
                    text(&out.stdout)
                );
            }
        }
        assert!(
            !host_target.exists(),
            "{tag}: the image's symlink was followed onto the host"
        );
    }
}

/// `rm -f` of a container while `run` starts it: the run succeeds (and is then killed) or
/// fails with 125 saying the container was removed; never 127 ("exec: not found") or 126.
#[test]
fn rm_f_racing_run_is_never_127() {
    let env = Env::new();
    let mut codes = std::collections::BTreeMap::<i32, usize>::new();
    for i in 0..40u64 {
        let name = format!("race{i}");
        let mut c = env.cmd();
        c.args(["run", "--name", &name, &env.image, "sleep", "5"]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let child = c.spawn().unwrap();
        let guard = berth_testutil::ChildGuard::new(child);
        std::thread::sleep(std::time::Duration::from_millis(i % 10 * 3));
        let rm = env.berth(&["rm", "-f", &name]);
        let out = guard.into_inner().wait_with_output().unwrap();
        let err = text(&out.stderr);
        let code = out.status.code().unwrap_or(-1);
        *codes.entry(code).or_default() += 1;
        let _ = env.berth(&["rm", "-f", &name]);
        assert!(
            code != 127 && code != 126,
            "run {i} exited {code} after rm -f: {err}"
        );
        if code == 125 && !err.contains("No such container") && !err.contains("is already in use") {
            assert!(
                err.contains("removed while starting"),
                "run {i}: 125 without saying why: {err} (rm -f: {})",
                text(&rm.stderr)
            );
        }
    }
    eprintln!("exit codes: {codes:?}");
}

#[test]
fn input_that_is_refused_names_its_flag() {
    let env = Env::new();
    let nproc = std::process::Command::new("nproc").output().unwrap();
    let n: usize = text(&nproc.stdout).trim().parse().unwrap();
    let out = run(&env, &["--cpus", "1000"], &["true"]);
    expect(
        &out,
        125,
        &format!("Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"),
        "--cpus 1000",
    );
    let out = run(&env, &["-e", "=x"], &["true"]);
    let err = expect(&out, 125, "--env", "-e =x");
    assert!(err.contains("name is empty"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env");
    std::fs::write(&file, "A=1\n=x\n").unwrap();
    let out = run(&env, &["--env-file", file.to_str().unwrap()], &["true"]);
    let err = expect(&out, 125, "--env-file", "an env file line =x");
    assert!(err.contains("no variable name"), "{err}");
    let long = "a".repeat(300);
    let out = run(&env, &["--name", &long], &["true"]);
    let err = expect(&out, 125, "--name", "a 300-character name");
    assert!(err.contains("253"), "{err}");
    assert!(!err.contains("File name too long"), "{err}");
    // Nothing was created by any of them.
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "");
    // The longest name works.
    let max = "b".repeat(253);
    env.run(&["--name", &max], &["true"]);
}

#[test]
fn os_errors_are_said_once() {
    let env = Env::new();
    let out = env.berth(&["run", "--rm", "--env-file", "/nope/env", &env.image, "true"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("/nope/env"), "{err}");
    said_once(&err);
    // A name too long for the file system fails before any file is made.
    let long = "c".repeat(260);
    let out = run(&env, &["--name", &long], &["true"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    said_once(&err);
}

/// Removes a file on drop (the filler of a full disk, so cleanup has room).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A container whose output could not be written (the disk holding its log was full):
/// `logs` shows what was kept and warns that output was lost, with how much and why.
#[test]
fn logs_say_that_output_was_lost_on_a_full_disk() {
    let env = Env::new();
    let containers = env.root.join("containers");
    std::fs::create_dir_all(&containers).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "berth-test-full"])
        .arg(&containers)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _mount = berth_testutil::MountGuard::new(&containers);
    let sig = tempfile::tempdir().unwrap();
    let v = format!("{}:/sig", sig.path().display());
    let script = "echo before; while [ ! -e /sig/go ]; do sleep 0.05; done; \
                  seq 1 20000; touch /sig/done; \
                  while [ ! -e /sig/end ]; do sleep 0.05; done; echo after";
    let id = env.ok(&["run", "-d", "-v", &v, &env.image, "sh", "-c", script]);
    let id = id.trim().to_string();
    env.wait_for("the first line", std::time::Duration::from_secs(10), || {
        env.ok(&["logs", &id]).contains("before")
    });
    // Fill the disk, let the container write, then make room again.
    let filler = RemoveOnDrop(containers.join("filler"));
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.0.display()))
        .stderr(std::process::Stdio::null())
        .status();
    std::fs::write(sig.path().join("go"), b"").unwrap();
    env.wait_for("the burst", std::time::Duration::from_secs(20), || {
        sig.path().join("done").exists()
    });
    drop(filler);
    std::fs::write(sig.path().join("end"), b"").unwrap();
    assert_eq!(env.ok(&["wait", &id]).trim(), "0");
    let out = env.berth(&["logs", &id]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("before\n"), "{stdout}");
    assert!(stdout.ends_with("after\n"), "{stdout}");
    assert!(
        stderr.contains("bytes of output were lost") && stderr.contains("No space left"),
        "logs does not say that output was lost: {stderr:?}"
    );
    said_once(&stderr);
    env.ok(&["rm", "-f", &id]);
}

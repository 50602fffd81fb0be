//! Runtime lifecycle: create blocks until start, state transitions, errors for unknown ids and
//! wrong states, run exit codes, pid file, list, kill --all, pause/resume, exec, preserve-fds.

mod runtime_common;
use runtime_common::*;
use serde_json::json;

fn cmdline(pid: i64) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn create_blocks_until_start_and_states_follow_the_lifecycle() {
    let mut rt = Rt::new();
    rt.config["root"]["readonly"] = json!(false);
    rt.args(&["sh", "-c", "echo started > /tmp/started; exec sleep 1000"]);
    let id = rt.create("life");
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(
        st["ociVersion"].as_str().unwrap().split('.').next(),
        Some("1")
    );
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    // The init has not exec'd the user program: it is still the runtime, blocked on the fifo.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        cmdline(pid).contains("berth-runtime"),
        "cmdline {}",
        cmdline(pid)
    );
    assert!(!rt.rootfs().join("tmp/started").exists());
    // Wrong state: a created container cannot be paused; a second create with the id fails.
    assert!(!rt.rt(&["pause", &id]).status.success());
    let (ok, err) = rt.bg(&["create", "--bundle", &rt.b(), &id]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");

    let out = rt.rt(&["start", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rt.state(&id)["status"], "running");
    for _ in 0..200 {
        if rt.rootfs().join("tmp/started").exists() && cmdline(pid).starts_with("sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(rt.rootfs().join("tmp/started").exists());
    assert!(
        cmdline(pid).starts_with("sleep"),
        "cmdline {}",
        cmdline(pid)
    );
    // start again: wrong state.
    let again = rt.rt(&["start", &id]);
    assert!(!again.status.success());
    // delete of a running container needs --force.
    let del = rt.rt(&["delete", &id]);
    assert!(!del.status.success());
    assert!(String::from_utf8_lossy(&del.stderr).contains("not stopped"));

    assert!(rt.rt(&["kill", &id, "KILL"]).status.success());
    rt.wait_status(&id, "stopped");
    assert_eq!(rt.state(&id)["pid"], 0);
    // kill of a stopped container fails; delete works and the state is gone.
    let k = rt.rt(&["kill", &id, "9"]);
    assert!(!k.status.success());
    // containerd matches this text to treat the kill as done.
    assert!(String::from_utf8_lossy(&k.stderr).contains("container not running"));
    assert!(rt.rt(&["delete", &id]).status.success());
    let gone = rt.rt(&["state", &id]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
    assert!(!rt.root.join(&id).exists());
}

#[test]
fn state_and_list_say_creating_while_create_runs() {
    let mut rt = Rt::new();
    let id = rt.id("creating");
    let root = rt.root.display().to_string();
    let from_runtime = rt.path("state-createRuntime.json");
    let from_container = rt.path("state-createContainer.json");
    let list = rt.path("list.json");
    let sh = |cmd: String| json!({"path": "/bin/sh", "args": ["sh", "-c", cmd]});
    rt.config["hooks"] = json!({
        "createRuntime": [sh(format!(
            "{BIN} --root {root} state {id} > {}; {BIN} --root {root} list -f json > {}",
            from_runtime.display(),
            list.display()
        ))],
        "createContainer": [sh(format!(
            "{BIN} --root {root} state {id} > {}",
            from_container.display()
        ))],
    });
    rt.args(&["sleep", "1000"]);
    rt.write();
    let (ok, err) = rt.bg(&["create", "--bundle", &rt.b(), &id]);
    assert!(ok, "create failed: {err}");
    for f in [&from_runtime, &from_container] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let st: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}: {text:?}", f.display()));
        assert_eq!(st["status"], "creating", "{}: {st}", f.display());
        assert_eq!(st["id"], id.as_str());
        assert!(st["pid"].as_i64().unwrap() > 0, "{st}");
    }
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&list).unwrap()).expect("list json");
    let mine = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .expect("the container is listed during create");
    assert_eq!(mine["status"], "creating");
    // Once create has returned, the init waits for start.
    assert_eq!(rt.state(&id)["status"], "created");
}

#[test]
fn debug_flag_logs_what_the_runtime_does() {
    let mut rt = Rt::new();
    rt.args(&["true"]);
    rt.write();
    let run = |global: &[&str], name: &str| {
        let id = format!("{name}-{}", std::process::id());
        let out = rt
            .cmd()
            .args(global)
            .args(["run", "--bundle", &rt.b(), &id])
            .output()
            .unwrap();
        succeeded(&out)
    };
    let wanted = [
        "config.json loaded",
        "cgroup",
        "namespaces: new",
        "mount proc on /proc",
        "pivot_root into",
        "exec \\\"/bin/true\\\"",
    ];
    // Text to the --log file.
    let text_log = rt.path("debug.log");
    let stderr = run(
        &["--debug", "--log", text_log.to_str().unwrap()],
        "dbg-text",
    );
    assert!(!stderr.contains("level=debug"), "{stderr}");
    let text = std::fs::read_to_string(&text_log).unwrap();
    for w in wanted {
        assert!(
            text.lines()
                .any(|l| l.contains("level=debug") && l.contains(w)),
            "no debug line with {w:?} in:\n{text}"
        );
    }
    assert!(text.lines().all(|l| l.starts_with("time=\"")), "{text}");
    // JSON to the --log file.
    let json_log = rt.path("debug.json");
    run(
        &[
            "--debug",
            "--log",
            json_log.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        "dbg-json",
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["level"] == "debug" && l["msg"].as_str().unwrap().contains("pivot_root")));
    assert!(lines.iter().all(|l| l["time"].is_string()));
    // No --log: debug lines go to stderr.
    let stderr = run(&["--debug"], "dbg-stderr");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("level=debug") && l.contains("pivot_root")),
        "{stderr}"
    );
    // Without --debug: nothing at debug level, in the file or on stderr.
    let quiet_log = rt.path("quiet.log");
    let stderr = run(&["--log", quiet_log.to_str().unwrap()], "dbg-quiet");
    let quiet = std::fs::read_to_string(&quiet_log).unwrap_or_default();
    assert!(!quiet.contains("level=debug"), "{quiet}");
    assert!(!stderr.contains("level=debug"), "{stderr}");
}

#[test]
fn container_processes_start_with_default_signals() {
    let mut rt = Rt::new();
    let want = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
    rt.args(&["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    assert_eq!(rt.run_ok("sigrun"), want);
    rt.args(&["sleep", "1000"]);
    let id = rt.run_detached("sigexec");
    let (code, out, err) = rt.exec(&id, &["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, want);
}

#[test]
fn config_changes_after_create_do_not_affect_the_container() {
    let mut rt = Rt::new();
    let marker = rt.path("poststart-ran");
    rt.args(&["sleep", "1000"]);
    let id = rt.create("cfgcopy");
    // Replace the bundle's config with one that has no process and a poststart hook.
    std::fs::write(
        rt.bundle.join("config.json"),
        serde_json::to_vec(&json!({
            "ociVersion": "1.0.0",
            "hooks": {"poststart": [{"path": "/bin/touch", "args": ["touch", marker]}]}
        }))
        .unwrap(),
    )
    .unwrap();
    succeeded(&rt.rt(&["start", &id]));
    rt.wait_status(&id, "running");
    assert!(
        !marker.exists(),
        "a hook added to config.json after create ran"
    );
    // exec still finds the container's process settings.
    let (code, out, err) = rt.exec(&id, &["echo", "still here"]);
    assert_eq!((code, out.as_str()), (0, "still here\n"), "{err}");
}

#[test]
fn delete_refuses_a_container_that_is_not_stopped() {
    let mut rt = Rt::new();
    rt.args(&["sleep", "1000"]);
    let id = rt.create("delcreated");
    let out = rt.rt(&["delete", &id]);
    assert!(
        !out.status.success(),
        "delete of a created container worked"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No effect on the container.
    assert_eq!(rt.state(&id)["status"], "created");
    succeeded(&rt.rt(&["delete", "--force", &id]));
    assert!(!rt.rt(&["state", &id]).status.success());
}

#[test]
fn unknown_ids_are_errors() {
    let rt = Rt::new();
    for cmd in [
        vec!["state", "nope"],
        vec!["start", "nope"],
        vec!["kill", "nope", "KILL"],
        vec!["delete", "nope"],
        vec!["pause", "nope"],
        vec!["exec", "nope", "true"],
    ] {
        let out = rt.rt(&cmd);
        // runc's codes: 1 for every command, 255 when exec cannot start its process.
        let code = if cmd[0] == "exec" { 255 } else { 1 };
        assert_eq!(out.status.code(), Some(code), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not exist"),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!rt.rt(&["state", "../etc"]).status.success());
    // Errors also go to --log, as runc's JSON lines (containerd and podman read them).
    let log = rt.path("runtime.log");
    let out = rt
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"));
    assert!(line["time"].is_string());
    // delete --force of a missing container is fine (runc).
    assert!(rt.rt(&["delete", "--force", "nope"]).status.success());
}

#[test]
fn run_exits_with_the_container_status_and_cleans_up() {
    let mut rt = Rt::new();
    rt.args(&["sh", "-c", "echo out; echo err >&2; exit 7"]);
    let (code, out, err) = rt.run("exit");
    assert_eq!(code, 7);
    assert_eq!(out, "out\n");
    assert!(err.contains("err"));
    let list = rt.rt(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "");
}

#[test]
fn pid_file_and_list() {
    let mut rt = Rt::new();
    rt.args(&["sleep", "1000"]);
    rt.write();
    let id = rt.id("pidf");
    let pidfile = rt.path("init.pid");
    let (ok, err) = rt.bg(&[
        "create",
        "--bundle",
        &rt.b(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    assert!(ok, "{err}");
    let pid: i64 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    assert_eq!(rt.state(&id)["pid"], pid);
    let q = rt.rt(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&q.stdout).trim(), id);
    let table = String::from_utf8_lossy(&rt.rt(&["list"]).stdout).into_owned();
    assert!(table.starts_with("ID"));
    assert!(table.contains(&id) && table.contains("created"));
    let js: serde_json::Value =
        serde_json::from_slice(&rt.rt(&["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(js[0]["id"], id.as_str());
    assert_eq!(js[0]["pid"], pid);
    // delete --force of a created container kills its init.
    assert!(rt.rt(&["delete", "--force", &id]).status.success());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || cmdline(pid).is_empty()
            || !cmdline(pid).contains("berth-runtime")
    );
}

#[test]
fn kill_all_reaches_every_process() {
    let mut rt = Rt::new();
    rt.args(&["sh", "-c", "sleep 1000 & sleep 1000 & sleep 1000"]);
    let id = rt.run_detached("killall");
    let mut pids: Vec<i64> = vec![];
    for _ in 0..100 {
        pids = serde_json::from_slice(&rt.rt(&["ps", "--format", "json", &id]).stdout).unwrap();
        if pids.len() >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(pids.len() >= 3, "pids {pids:?}");
    let table = String::from_utf8_lossy(&rt.rt(&["ps", &id]).stdout).into_owned();
    assert!(table.contains("sleep 1000"), "{table}");
    assert!(rt.rt(&["kill", "--all", &id, "SIGKILL"]).status.success());
    rt.wait_status(&id, "stopped");
    for _ in 0..200 {
        if pids.iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        }) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for p in &pids {
        let alive = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        assert!(!alive, "pid {p} survived kill --all");
    }
}

#[test]
fn pause_and_resume_freeze_the_container() {
    let mut rt = Rt::new();
    rt.config["root"]["readonly"] = json!(false);
    rt.args(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.02; done",
    ]);
    let id = rt.run_detached("pause");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = rt.rt(&["pause", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rt.state(&id)["status"], "paused");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let a = std::fs::read_to_string(rt.rootfs().join("tmp/tick")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let b = std::fs::read_to_string(rt.rootfs().join("tmp/tick")).unwrap();
    assert_eq!(a, b, "the counter moved while paused");
    let (code, _, err) = rt.exec(&id, &["true"]);
    assert_ne!(code, 0);
    assert!(err.contains("paused"));
    assert!(rt.rt(&["resume", &id]).status.success());
    assert_eq!(rt.state(&id)["status"], "running");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let c = std::fs::read_to_string(rt.rootfs().join("tmp/tick")).unwrap();
    assert_ne!(b, c, "the counter did not move after resume");
    assert!(!rt.rt(&["resume", &id]).status.success());
    assert!(rt.rt(&["delete", "--force", &id]).status.success());
}

#[test]
fn exec_joins_namespaces_and_cgroup() {
    let mut rt = Rt::new();
    rt.args(&["sleep", "1000"]);
    let id = rt.run_detached("exec");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let (code, out, err) = rt.exec(
        &id,
        &["sh", "-c", "for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup; echo $$"],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
        .iter()
        .enumerate()
    {
        let init = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        assert_eq!(lines[i], init.display().to_string(), "{n} namespace");
        assert_ne!(lines[i], host_ns(n), "{n} is the host's");
    }
    let exec_pid: i64 = lines.last().unwrap().parse().unwrap();
    assert!(exec_pid > 1, "exec'd process is not the init");
    let ps: Vec<i64> =
        serde_json::from_slice(&rt.rt(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&pid));
    // Exit code, user, cwd and env of exec.
    let (code, out, _) = rt.exec(
        &id,
        &[
            "--user",
            "1000:1000",
            "--cwd",
            "/tmp",
            "--env",
            "FOO=bar",
            "sh",
            "-c",
            "id -u; id -g; pwd; echo $FOO; exit 5",
        ],
    );
    assert_eq!(code, 5);
    assert_eq!(out, "1000\n1000\n/tmp\nbar\n");
    // --process FILE gives the whole process config.
    let pfile = rt.path("process.json");
    std::fs::write(
        &pfile,
        serde_json::to_vec(&json!({
            "args": ["sh", "-c", "echo $A-$(id -u)-$(pwd)"],
            "env": ["A=from-file", "PATH=/bin"],
            "cwd": "/home",
            "user": {"uid": 1000, "gid": 1000}
        }))
        .unwrap(),
    )
    .unwrap();
    let (code, out, err) = rt.exec(&id, &["--process", pfile.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from-file-1000-/home\n");
    // Detached exec writes a pid file of a process in the container's cgroup.
    let pf = rt.path("exec.pid");
    let (ok, err) = rt.bg(&[
        "exec",
        "-d",
        "--pid-file",
        pf.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ]);
    assert!(ok, "{err}");
    let epid: i64 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    let ps: Vec<i64> =
        serde_json::from_slice(&rt.rt(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&epid), "{ps:?} lacks {epid}");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{epid}/cgroup")).unwrap(),
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        "exec'd process is not in the container's cgroups"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{epid}/ns/pid")).unwrap(),
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap()
    );
    assert!(rt.rt(&["delete", "--force", &id]).status.success());
}

#[test]
fn preserve_fds_passes_only_the_listed_fds() {
    let mut rt = Rt::new();
    rt.args(&["sh", "-c", "echo through-fd3 >&3; ls /proc/self/fd"]);
    rt.write();
    let id = rt.id("fds");
    let out3 = rt.path("fd3.txt");
    let out4 = rt.path("fd4.txt");
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#""$0" --root "$1" run --preserve-fds 1 --bundle "$2" "$3" 3>"$4" 9>"$5""#)
        .arg(BIN)
        .arg(&rt.root)
        .arg(&rt.bundle)
        .arg(&id)
        .arg(&out3)
        .arg(&out4)
        .output()
        .unwrap();
    succeeded(&out);
    assert_eq!(std::fs::read_to_string(&out3).unwrap(), "through-fd3\n");
    let fds: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(fds.contains(&"3".to_string()), "{fds:?}");
    assert!(!fds.contains(&"9".to_string()), "fd 9 leaked: {fds:?}");
}

#[test]
fn update_and_events_stats() {
    let mut rt = Rt::new();
    rt.args(&["sleep", "1000"]);
    let id = rt.run_detached("update");
    let out = rt.rt(&["update", "--pids-limit", "77", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out, err) = rt.exec(
        &id,
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "77");
    let ev = rt.rt(&["events", "--stats", &id]);
    assert!(
        ev.status.success(),
        "{}",
        String::from_utf8_lossy(&ev.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], id.as_str());
    assert!(v["data"].is_object());
    assert!(rt.rt(&["delete", "--force", &id]).status.success());
}

#[test]
fn features_and_spec() {
    let rt = Rt::new();
    let f: serde_json::Value = serde_json::from_slice(&rt.rt(&["features"]).stdout).unwrap();
    assert!(f["ociVersionMax"].as_str().unwrap().starts_with("1."));
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("user")));
    assert!(f["hooks"]
        .as_array()
        .unwrap()
        .contains(&json!("createContainer")));
    // spec refuses to overwrite, and --rootless adds a user namespace with mappings.
    let out = rt
        .cmd()
        .args(["spec", "--bundle"])
        .arg(&rt.bundle)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let dir = rt.path("rootless");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(rt
        .cmd()
        .args(["spec", "--rootless", "--bundle"])
        .arg(&dir)
        .status()
        .unwrap()
        .success());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert!(v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!({"type": "user"})));
    assert_eq!(v["linux"]["uidMappings"][0]["size"], 1);
}

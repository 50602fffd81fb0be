//! Detached containers and the lifecycle commands; exit codes; crash recovery.

mod container_support;
use container_support::*;
use std::time::{Duration, Instant};

#[test]
fn exit_codes_follow_docker() {
    let env = Env::new();
    let code = |args: &[&str]| env.berth(args).status.code();
    assert_eq!(code(&["run", "--rm", &env.image, "true"]), Some(0));
    assert_eq!(
        code(&["run", "--rm", &env.image, "sh", "-c", "exit 1"]),
        Some(1)
    );
    assert_eq!(
        code(&["run", "--rm", &env.image, "sh", "-c", "exit 42"]),
        Some(42)
    );
    // A flag berth does not know: berth fails (125), not the container.
    assert_eq!(
        code(&["run", "--rm", "--bogus-flag", &env.image, "true"]),
        Some(125)
    );
    assert_eq!(
        code(&["run", "--rm", "--pull", "sometimes", &env.image, "true"]),
        Some(125)
    );
    let out = env.berth(&["run", "--rm", &env.image, "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    let out = env.berth(&["run", "--rm", &env.image, "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nosuchcommand"));
    // --rm cleaned up even the containers that failed to start.
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    assert!(mounts_under(&env.root).is_empty());

    // 128 + signal: a foreground container killed from outside.
    let mut child = env
        .cmd()
        .args(["run", "--rm", "--name", "victim", &env.image, "sleep", "60"])
        .spawn()
        .unwrap();
    env.wait_for("victim running", Duration::from_secs(10), || {
        env.ok(&["ps", "-q", "--no-trunc"]).len() > 10
    });
    env.ok(&["kill", "victim"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));

    // Signals to the foreground berth reach the container (without -t).
    let child = env
        .cmd()
        .args([
            "run",
            "--rm",
            "--name",
            "trapper",
            &env.image,
            "sh",
            "-c",
            "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_for("trapper ready", Duration::from_secs(10), || {
        env.berth(&["logs", "trapper"]).stdout.starts_with(b"ready")
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(text(&out.stdout), "ready\ngot TERM\n");
}

#[test]
fn detached_logs_exec_stop_restart_rm() {
    let env = Env::new();
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            &env.image,
            "sh",
            "-c",
            "trap '' TERM; echo started; echo oops >&2; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = env.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        ps.contains(&id[..12]) && ps.contains("Up ") && ps.contains("web"),
        "{ps}"
    );
    let json: serde_json::Value =
        serde_json::from_str(env.ok(&["ps", "--format", "json"]).lines().next().unwrap()).unwrap();
    assert_eq!(json["Names"], "web");
    assert_eq!(json["State"], "running");

    env.wait_for("logs", Duration::from_secs(10), || {
        let o = env.berth(&["logs", "web"]);
        o.stdout == b"started\n" && o.stderr == b"oops\n"
    });
    let o = env.ok(&["logs", "-t", "web"]);
    assert!(o.contains("T") && o.ends_with(" started\n"), "{o}");
    let o = env.berth(&["logs", "--tail", "1", "web"]);
    assert_eq!(o.stdout.len() + o.stderr.len(), 5, "{o:?}");
    let o = env.berth(&["logs", "--since", "2h", "web"]);
    assert_eq!(o.stdout, b"started\n");
    let o = env.berth(&["logs", "--since", "2099-01-01T00:00:00Z", "web"]);
    assert!(o.stdout.is_empty());
    let log = std::fs::read_to_string(env.container_dir(&id).join("ctr.log")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(first["stream"] == "stdout" || first["stream"] == "stderr");
    assert!(first["time"].as_str().unwrap().contains('T'));

    // exec joins the container: same hostname, sees its PID 1.
    let o = env.ok(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; pwd; echo $X; id -u",
    ]);
    assert!(o.starts_with(&format!("{}\nsh -c trap", &id[..12])), "{o}");
    assert!(o.ends_with("/tmp\n1\n0\n"), "{o}");
    assert_eq!(
        env.ok(&["exec", "-u", "berth", "web", "id", "-u"]),
        "1000\n"
    );
    assert_eq!(
        env.berth(&["exec", "web", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        env.berth(&["exec", "web", "nosuch"]).status.code(),
        Some(127)
    );
    assert_eq!(
        env.berth(&["exec", "web", "/etc/passwd"]).status.code(),
        Some(126)
    );
    let top = env.ok(&["top", "web"]);
    assert!(top.contains("sh -c trap"), "{top}");
    let stats = env.ok(&["stats", "--no-stream", "web"]);
    assert!(
        stats.contains("MEM USAGE") && stats.contains("web"),
        "{stats}"
    );
    // The counters come from the container's cgroup: some memory in use, its processes.
    let row: Vec<&str> = stats
        .lines()
        .find(|l| l.contains("web"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(!row[3].starts_with("0B"), "no memory usage read: {stats}");
    let pids: u32 = row.last().unwrap().parse().unwrap();
    assert!(pids >= 1, "{stats}");

    env.ok(&["pause", "web"]);
    assert_eq!(env.inspect("web")["State"]["Status"], "paused");
    env.ok(&["unpause", "web"]);

    // rm without -f refuses a running container.
    let o = env.berth(&["rm", "web"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o.stderr).contains("Stop the container"),
        "{}",
        text(&o.stderr)
    );

    // The container ignores SIGTERM: stop -t 1 ends in SIGKILL after ~1s.
    let start = Instant::now();
    env.ok(&["stop", "-t", "1", "web"]);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let i = env.inspect("web");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 137);
    assert_eq!(i["GraphDriver"]["Name"], "overlay2");
    assert!(i["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .contains("image/layers"));
    assert!(env.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert!(!env.ok(&["ps"]).contains("web"));
    assert!(
        mounts_under(&env.root).is_empty(),
        "the overlay is unmounted after exit"
    );

    // The image is held while the container exists.
    let rmi = env.berth(&["rmi", &env.image]);
    assert_ne!(rmi.status.code(), Some(0));
    assert!(
        text(&rmi.stderr).contains("in use"),
        "{}",
        text(&rmi.stderr)
    );

    env.ok(&["restart", "web"]);
    assert_eq!(env.inspect("web")["State"]["Status"], "running");
    assert_eq!(env.inspect("web")["RestartCount"], 1);
    env.ok(&["rm", "-f", "web"]);
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    assert!(!env.container_dir(&id).exists());
    assert!(mounts_under(&env.root).is_empty());

    // logs -f follows until the container exits.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        &env.image,
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.3; done",
    ]);
    assert_eq!(env.ok(&["logs", "-f", "counter"]), "1\n2\n3\n");
    env.ok(&["rm", "counter"]);

    // create + start + wait + container prune.
    let id = env
        .ok(&["create", &env.image, "sh", "-c", "exit 7"])
        .trim()
        .to_string();
    assert_eq!(env.inspect(&id)["State"]["Status"], "created");
    env.ok(&["start", &id]);
    assert_eq!(env.ok(&["wait", &id]), "7\n");
    env.ok(&["container", "prune", "-f"]);
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

#[test]
fn name_conflicts_and_lookup() {
    let env = Env::new();
    env.ok(&["create", "--name", "same", &env.image, "true"]);
    let o = env.berth(&["create", "--name", "same", &env.image, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr)
            .contains("Conflict. The container name \"/same\" is already in use by container"),
        "{}",
        text(&o.stderr)
    );
    let o = env.berth(&["inspect", "nosuch"]);
    assert!(text(&o.stderr).contains("No such container: nosuch"));
    let auto = env.ok(&["create", &env.image, "true"]).trim().to_string();
    let name = env.inspect(&auto)["Name"].as_str().unwrap().to_string();
    assert!(name.starts_with('/') && name.contains('_'), "{name}");
    // A unique id prefix finds it.
    env.ok(&["rm", &auto[..8]]);
}

#[test]
fn monitor_killed_then_state_recovered() {
    let env = Env::new();
    let id = env
        .ok(&["run", "-d", &env.image, "sleep", "600"])
        .trim()
        .to_string();
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.container_dir(&id).join("config.json")).unwrap())
            .unwrap();
    let mon = rec["state"]["monitor_pid"].as_i64().unwrap() as i32;
    let pid = rec["state"]["pid"].as_i64().unwrap() as i32;
    assert!(mon > 0 && pid > 0);
    unsafe { libc::kill(mon, libc::SIGKILL) };
    // The container outlives its monitor; ps still says running.
    std::thread::sleep(Duration::from_millis(100));
    assert!(env.ok(&["ps", "-q"]).contains(&id[..12]));
    // Kill the container behind berth's back: the next command reconciles.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    env.wait_for(
        "pid gone",
        Duration::from_secs(5),
        || unsafe { libc::kill(pid, 0) } != 0,
    );
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited"), "{ps}");
    assert!(
        mounts_under(&env.root).is_empty(),
        "reconcile unmounted the root"
    );
    env.ok(&["rm", &id]);

    // berth itself killed -9 in the foreground: the monitor carries on, --rm still happens.
    let mut child = env
        .cmd()
        .args(["run", "--rm", "--name", "fg", &env.image, "sleep", "1"])
        .spawn()
        .unwrap();
    env.wait_for("fg running", Duration::from_secs(10), || {
        env.ok(&["ps", "-q"]).len() > 5
    });
    child.kill().unwrap();
    child.wait().unwrap();
    env.wait_for("fg removed", Duration::from_secs(10), || {
        env.ok(&["ps", "-aq"]).is_empty()
    });
    assert!(mounts_under(&env.root).is_empty());

    // rm -f works whatever is left: a running container whose monitor is gone.
    let id = env
        .ok(&["run", "-d", &env.image, "sleep", "600"])
        .trim()
        .to_string();
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.container_dir(&id).join("config.json")).unwrap())
            .unwrap();
    unsafe {
        libc::kill(
            rec["state"]["monitor_pid"].as_i64().unwrap() as i32,
            libc::SIGKILL,
        )
    };
    env.ok(&["rm", "-f", &id]);
    assert!(!env.container_dir(&id).exists());
    assert!(mounts_under(&env.root).is_empty());
}

#[test]
fn attach_volumes_and_disk_usage() {
    let env = Env::new();
    // attach to a detached container: its output streams, and its exit status comes back.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        &env.image,
        "sh",
        "-c",
        "sleep 1; echo late line; exit 5",
    ]);
    let out = env.berth(&["attach", "talker"]);
    assert_eq!(text(&out.stdout), "late line\n");
    assert_eq!(out.status.code(), Some(5));

    // Anonymous volumes from -v /path go away with rm -v; named ones stay.
    let id = env
        .ok(&[
            "create",
            "-v",
            "/anon",
            "-v",
            "keep:/keep",
            &env.image,
            "true",
        ])
        .trim()
        .to_string();
    let mounts = env.inspect(&id)["Mounts"].clone();
    let anon = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/anon")
        .unwrap()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(anon.len(), 64);
    let vols = env.ok(&["volume", "ls", "-q"]);
    assert!(vols.contains(&anon) && vols.contains("keep"), "{vols}");
    let busy = env.berth(&["volume", "rm", "keep"]);
    assert!(
        text(&busy.stderr).contains("volume is in use"),
        "{}",
        text(&busy.stderr)
    );
    let df = env.ok(&["system", "df"]);
    assert!(
        df.contains("Images") && df.contains("Containers") && df.contains("Local Volumes"),
        "{df}"
    );
    env.ok(&["rm", "-v", &id]);
    let vols = env.ok(&["volume", "ls", "-q"]);
    assert!(!vols.contains(&anon) && vols.contains("keep"), "{vols}");
    env.ok(&["volume", "create", "extra"]);
    env.ok(&["volume", "prune", "-a", "-f"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn init_forwards_signals_and_reaps() {
    let env = Env::new();
    // PID 1 is berth's init; the command is its child.
    let out = env.run(&["--init"], &["ps", "-o", "pid,args"]);
    let pid1 = out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(pid1.contains("berth init -- ps"), "{out}");
    // Orphans are reaped: no zombie left behind.
    let out = env.run(
        &["--init"],
        &[
            "sh",
            "-c",
            "sh -c 'sleep 0.1 &'; sleep 0.6; ps -o stat,comm",
        ],
    );
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with('Z')),
        "{out}"
    );
    // SIGTERM reaches a command that is not PID 1 and so dies of it: 128+15.
    env.ok(&[
        "run", "-d", "--init", "--name", "sleeper", &env.image, "sleep", "100",
    ]);
    // Until the init has forked the command it cannot forward anything (and a PID 1
    // without a handler never sees SIGTERM): wait for `sleep` to be there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.ok(&["top", "sleeper"]).contains("sleep 100") {
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The command does not inherit the ignored SIGPIPE of berth's own code.
    let status = env.ok(&[
        "exec",
        "sleeper",
        "sh",
        "-c",
        "grep SigIgn /proc/$(pidof sleep)/status",
    ]);
    assert!(status.trim().ends_with("0000000000000000"), "{status}");
    let start = Instant::now();
    env.ok(&["stop", "sleeper"]);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(env.inspect("sleeper")["State"]["ExitCode"], 143);
    env.ok(&["rm", "sleeper"]);
    assert_eq!(
        env.berth(&["run", "--rm", "--init", &env.image, "sh", "-c", "exit 9"])
            .status
            .code(),
        Some(9)
    );
}

#[test]
fn concurrent_commands_are_safe() {
    let env = Env::new();
    // Eight creates at once with the same name: exactly one wins.
    let kids: Vec<_> = (0..8)
        .map(|_| {
            env.cmd()
                .args(["create", "--name", "dup", &env.image, "true"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = kids
        .into_iter()
        .map(|k| k.wait_with_output().unwrap())
        .collect();
    assert_eq!(outs.iter().filter(|o| o.status.success()).count(), 1);
    assert!(outs
        .iter()
        .filter(|o| !o.status.success())
        .all(|o| text(&o.stderr).contains("is already in use")));
    // Six detached runs at once: all start, with distinct names.
    let kids: Vec<_> = (0..6)
        .map(|_| {
            env.cmd()
                .args(["run", "-d", &env.image, "sleep", "30"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        assert!(k.wait_with_output().unwrap().status.success());
    }
    let names: std::collections::BTreeSet<String> = env
        .ok(&["ps", "--format", "json"])
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Names"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), 6);
    let ids = env.ok(&["ps", "-aq"]);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.split_whitespace());
    env.ok(&args);
    assert!(mounts_under(&env.root).is_empty());
}

//! Docker's argument rule: berth's flags end at the image (`run`, `create`) or the container
//! (`exec`); everything after it belongs to the container's command, flags included.

mod container_support;
use container_support::*;

/// No container may be left behind by a test that ran with `--rm`.
fn assert_no_containers(env: &Env) {
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "", "containers left behind");
}

#[test]
fn flags_after_the_image_belong_to_the_command() {
    let env = Env::new();
    // `-d` after the image is echo's argument, not berth's detach flag.
    let out = env.ok(&["run", "--rm", "--entrypoint", "echo", &env.image, "-d", "x"]);
    assert_eq!(out, "-d x\n");
    // `-c` after the image is the shell's, not an error about berth's flags.
    let out = env.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &env.image,
        "-c",
        "echo hi",
    ]);
    assert_eq!(out, "hi\n");
    // berth's own long flags after the image reach the command untouched.
    let out = env.ok(&[
        "run",
        "--rm",
        &env.image,
        "sh",
        "-c",
        "echo \"$@\"",
        "sh",
        "--rm",
        "-v",
        "/x:/y",
        "--name",
        "n",
    ]);
    assert_eq!(out, "--rm -v /x:/y --name n\n");
    assert_no_containers(&env);
}

#[test]
fn help_after_the_image_is_the_commands_not_berths() {
    let env = Env::new();
    let out = env.berth(&["run", "--rm", &env.image, "--help"]);
    // As Docker: the image's command is `--help`, which does not exist.
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("Usage"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("--help"),
        "{}",
        text(&out.stderr)
    );
    assert_no_containers(&env);
}

#[test]
fn create_keeps_the_commands_flags() {
    let env = Env::new();
    let id = env.ok(&[
        "create",
        "--entrypoint",
        "/bin/sh",
        &env.image,
        "-c",
        "exit 3",
    ]);
    let id = id.trim();
    let c = env.inspect(id);
    assert_eq!(c["Args"], serde_json::json!(["-c", "exit 3"]), "{c}");
    let out = env.berth(&["start", "-a", id]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    env.ok(&["rm", id]);
}

#[test]
fn flags_after_the_container_belong_to_execs_command() {
    let env = Env::new();
    let id = env.ok(&["run", "-d", &env.image, "sleep", "100"]);
    let id = id.trim();
    let out = env.ok(&[
        "exec",
        id,
        "sh",
        "-c",
        "echo \"$@\"",
        "sh",
        "-d",
        "-it",
        "-u",
        "x",
    ]);
    assert_eq!(out, "-d -it -u x\n");
    // berth's exec flags before the container still apply.
    let out = env.ok(&[
        "exec",
        "-w",
        "/etc",
        "-e",
        "A=b",
        id,
        "sh",
        "-c",
        "echo $PWD $A",
    ]);
    assert_eq!(out, "/etc b\n");
    let out = env.berth(&["exec", id]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("requires at least 2 arguments"),
        "{}",
        text(&out.stderr)
    );
    env.ok(&["rm", "-f", id]);
}

#[test]
fn an_unknown_flag_before_the_image_is_an_error_not_the_image() {
    let env = Env::new();
    for cmd in ["run", "create"] {
        let out = env.berth(&[cmd, "--bogus", &env.image, "true"]);
        assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("unknown flag: --bogus"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = env.berth(&["exec", "--bogus", "c", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown flag: --bogus"),
        "{}",
        text(&out.stderr)
    );
    assert_no_containers(&env);
}

/// Runs berth with its stdout on a pipe whose reader is already closed.
fn into_closed_pipe(env: &Env, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    env.cmd()
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_berth_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    let id = env.ok(&["run", "-d", &env.image, "sh", "-c", "seq 1 2000; sleep 100"]);
    let id = id.trim();
    env.wait_for("the log", std::time::Duration::from_secs(10), || {
        env.ok(&["logs", id]).lines().count() == 2000
    });
    // As `berth inspect X | head -n 1`: no panic, no error message, death by SIGPIPE as a C
    // tool or the docker CLI would.
    for args in [
        vec!["inspect", id],
        vec!["ps", "-a", "--no-trunc"],
        vec!["images"],
        vec!["logs", id],
    ] {
        let out = into_closed_pipe(&env, &args);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "berth {args:?}: {:?} {}",
            out.status,
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "berth {args:?}");
    }
    env.ok(&["rm", "-f", id]);
}

#[test]
fn a_missing_working_directory_is_created_as_docker_does() {
    let env = Env::new();
    // Docker creates `-w`'s directory (root-owned, 0755) instead of failing to start.
    let out = env.ok(&[
        "run",
        "--rm",
        "-w",
        "/new/dir",
        &env.image,
        "sh",
        "-c",
        "pwd; stat -c '%u %a' /new/dir",
    ]);
    assert_eq!(out, "/new/dir\n0 755\n");
    // Also under a read-only root, and for a user other than root.
    let out = env.ok(&[
        "run",
        "--rm",
        "--read-only",
        "-u",
        "1000",
        "-w",
        "/w2",
        &env.image,
        "pwd",
    ]);
    assert_eq!(out, "/w2\n");
    assert_no_containers(&env);
}

#[test]
fn a_stop_signal_that_is_no_signal_is_refused() {
    let env = Env::new();
    let out = env.berth(&["run", "--rm", "--stop-signal", "NOPE", &env.image, "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("--stop-signal") && err.contains("NOPE"),
        "{err}"
    );
    // Names with and without SIG, and numbers, are signals.
    for sig in ["SIGUSR1", "usr1", "10"] {
        env.ok(&["run", "--rm", "--stop-signal", sig, &env.image, "true"]);
    }
    assert_no_containers(&env);
}

#[test]
fn add_host_is_kept_without_a_network() {
    let env = Env::new();
    let hosts = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--add-host",
        "db.example:10.1.2.3",
        &env.image,
        "cat",
        "/etc/hosts",
    ]);
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["10.1.2.3", "db.example"]),
        "{hosts}"
    );
}

#[test]
fn run_it_without_a_terminal_is_refused_as_docker_does() {
    let env = Env::new();
    // The test's stdin is /dev/null: no terminal.
    let out = env.berth(&["run", "--rm", "-it", &env.image, "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("the input device is not a TTY"),
        "{}",
        text(&out.stderr)
    );
    assert_no_containers(&env);
    // Detached, or without -i, a terminal is not needed.
    let id = env.ok(&["run", "-dit", &env.image, "sh"]);
    env.ok(&["rm", "-f", id.trim()]);
    env.ok(&["run", "--rm", "-t", &env.image, "true"]);
}

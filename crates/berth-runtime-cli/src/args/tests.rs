//! The parser accepts runc's command line (runc 1.1's global flags and every subcommand's
//! flags, in the `--flag value`, `--flag=value`, `-f value` and single-dash `-flag` forms), and
//! the hand-written fast path gives what clap gives.

use super::*;
use std::path::Path;

fn argv(line: &str) -> Vec<String> {
    std::iter::once("berth-runtime")
        .chain(line.split_whitespace())
        .map(String::from)
        .collect()
}

/// Parses `line` (without the program name), panicking with clap's message on an error.
fn p(line: &str) -> Cli {
    parse(argv(line)).unwrap_or_else(|e| panic!("{line:?} was refused: {e}"))
}

/// clap's parse alone (no fast path), after the single-dash normalisation.
fn clap_only(line: &str) -> Cli {
    Cli::try_parse_from(normalize(argv(line))).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn global_flags_in_every_form() {
    for line in [
        "--root /r --log /l --log-format json --debug --systemd-cgroup --criu /c --rootless true state x",
        "--root=/r --log=/l --log-format=json --debug --systemd-cgroup --criu=/c --rootless=true state x",
        "-root /r -log /l -log-format json -debug -systemd-cgroup -criu /c -rootless=true state x",
        "-root=/r -log=/l -log-format=json -debug -systemd-cgroup -criu=/c --rootless true state x",
    ] {
        let c = p(line);
        assert_eq!(c.root, Path::new("/r"), "{line}");
        assert_eq!(c.log.as_deref(), Some(Path::new("/l")), "{line}");
        assert_eq!(c.log_format, "json", "{line}");
        assert!(c.debug && c.systemd_cgroup, "{line}");
        assert_eq!(c.criu.as_deref(), Some("/c"), "{line}");
        assert_eq!(c.rootless.as_deref(), Some("true"), "{line}");
        assert!(matches!(c.cmd, Cmd::State { ref id } if id == "x"), "{line}");
    }
    let c = p("state x");
    assert_eq!(c.root, Path::new(state::DEFAULT_ROOT));
    assert_eq!(
        (c.log, c.log_format.as_str(), c.debug),
        (None, "text", false)
    );
}

#[test]
fn create_and_run_flags() {
    for line in [
        "create --bundle /b --console-socket /s --pid-file /p --no-pivot --no-new-keyring --preserve-fds 2 id1",
        "create --bundle=/b --console-socket=/s --pid-file=/p --no-pivot --no-new-keyring --preserve-fds=2 id1",
        "create -b /b -console-socket /s -pid-file /p -no-pivot -no-new-keyring -preserve-fds 2 id1",
        "create id1 -b /b --console-socket /s --pid-file /p --no-pivot --no-new-keyring --preserve-fds 2",
    ] {
        let Cmd::Create(c) = p(line).cmd else {
            panic!("{line}: not create")
        };
        assert_eq!(c.id, "id1", "{line}");
        assert_eq!(c.bundle, Path::new("/b"), "{line}");
        assert_eq!(c.console_socket.as_deref(), Some("/s"), "{line}");
        assert_eq!(c.pid_file.as_deref(), Some(Path::new("/p")), "{line}");
        assert!(c.no_pivot && c.no_new_keyring, "{line}");
        assert_eq!(c.preserve_fds, 2, "{line}");
    }
    let Cmd::Create(c) = p("create id2").cmd else {
        panic!("not create")
    };
    assert_eq!((c.bundle.as_path(), c.preserve_fds), (Path::new("."), 0));
    for (line, want_detach, want_keep) in [
        ("run -d -b /b id1", true, false),
        ("run --detach --bundle=/b id1", true, false),
        ("run --keep -b /b id1", false, true),
        ("run -b /b --pid-file /p --console-socket /s --no-pivot --no-new-keyring --preserve-fds 1 id1", false, false),
    ] {
        let Cmd::Run { detach, keep, c } = p(line).cmd else {
            panic!("{line}: not run")
        };
        assert_eq!((detach, keep), (want_detach, want_keep), "{line}");
        assert_eq!((c.id.as_str(), c.bundle.as_path()), ("id1", Path::new("/b")));
    }
}

#[test]
fn lifecycle_commands() {
    assert!(matches!(p("start a").cmd, Cmd::Start { id } if id == "a"));
    assert!(matches!(p("state a").cmd, Cmd::State { id } if id == "a"));
    assert!(matches!(p("pause a").cmd, Cmd::Pause { id } if id == "a"));
    assert!(matches!(p("resume a").cmd, Cmd::Resume { id } if id == "a"));
    assert!(matches!(p("features").cmd, Cmd::Features));
    for (line, all, sig) in [
        ("kill a", false, "SIGTERM"),
        ("kill a KILL", false, "KILL"),
        ("kill a 9", false, "9"),
        ("kill --all a SIGKILL", true, "SIGKILL"),
        ("kill -a a SIGKILL", true, "SIGKILL"),
        ("kill a SIGKILL -a", true, "SIGKILL"),
    ] {
        let Cmd::Kill { all: a, id, signal } = p(line).cmd else {
            panic!("{line}: not kill")
        };
        assert_eq!((a, id.as_str(), signal.as_str()), (all, "a", sig), "{line}");
    }
    for (line, force) in [
        ("delete a", false),
        ("delete -f a", true),
        ("delete --force a", true),
        ("delete a --force", true),
    ] {
        assert!(
            matches!(p(line).cmd, Cmd::Delete { force: f, id } if f == force && id == "a"),
            "{line}"
        );
    }
}

#[test]
fn list_ps_events_and_spec() {
    for line in [
        "list -f json -q",
        "list --format json --quiet",
        "list --format=json -q",
        "ps x",
    ] {
        let c = p(line);
        match c.cmd {
            Cmd::List { format, quiet } => {
                assert_eq!((format.as_str(), quiet), ("json", true), "{line}")
            }
            Cmd::Ps { format, id, .. } => {
                assert_eq!((format.as_str(), id.as_str()), ("table", "x"))
            }
            _ => panic!("{line}"),
        }
    }
    assert!(matches!(p("list").cmd, Cmd::List { format, quiet: false } if format == "table"));
    for line in ["ps -f json x", "ps --format json x", "ps --format=json x"] {
        assert!(
            matches!(p(line).cmd, Cmd::Ps { format, id, .. } if format == "json" && id == "x"),
            "{line}"
        );
    }
    let Cmd::Ps { ps_args, .. } = p("ps x -ef").cmd else {
        panic!("not ps")
    };
    assert_eq!(ps_args, ["-ef"]);
    for (line, stats, interval) in [
        ("events x", false, "5s"),
        ("events --stats x", true, "5s"),
        ("events --interval 1s x", false, "1s"),
        ("events --interval=500ms --stats x", true, "500ms"),
    ] {
        let Cmd::Events {
            stats: s,
            interval: i,
            id,
        } = p(line).cmd
        else {
            panic!("{line}: not events")
        };
        assert_eq!(
            (s, i.as_str(), id.as_str()),
            (stats, interval, "x"),
            "{line}"
        );
    }
    for line in [
        "spec -b /b --rootless",
        "spec --bundle /b --rootless",
        "spec --bundle=/b --rootless",
    ] {
        assert!(
            matches!(p(line).cmd, Cmd::Spec { bundle, rootless: true } if bundle == Path::new("/b")),
            "{line}"
        );
    }
    assert!(
        matches!(p("spec").cmd, Cmd::Spec { bundle, rootless: false } if bundle == Path::new("."))
    );
}

#[test]
fn exec_flags() {
    for line in [
        "exec -t -d -p /p.json -e A=1 --env B=2 --cwd /w -u 1:2 --cap CAP_KILL -c CAP_CHOWN --no-new-privs --apparmor prof --process-label lbl --console-socket /s --pid-file /pid --preserve-fds 1 -g 5 --additional-gids 6 c1 sh -c true",
        "exec --tty --detach --process=/p.json --env=A=1 -e B=2 --cwd=/w --user=1:2 --cap=CAP_KILL --cap CAP_CHOWN --no-new-privs --apparmor=prof --process-label=lbl --console-socket=/s --pid-file=/pid --preserve-fds=1 --additional-gids=5 -g 6 c1 sh -c true",
        "exec -tty -detach -process /p.json -env A=1 -env B=2 -cwd /w -user 1:2 -cap CAP_KILL -cap CAP_CHOWN -no-new-privs -apparmor prof -process-label lbl -console-socket /s -pid-file /pid -preserve-fds 1 -g 5 -g 6 c1 sh -c true",
    ] {
        let Cmd::Exec {
            process,
            tty,
            detach,
            cwd,
            env,
            user,
            additional_gids,
            cap,
            pid_file,
            console_socket,
            no_new_privs,
            apparmor,
            process_label,
            preserve_fds,
            id,
            args,
        } = p(line).cmd
        else {
            panic!("{line}: not exec")
        };
        assert_eq!(process.as_deref(), Some(Path::new("/p.json")), "{line}");
        assert!(tty && detach && no_new_privs, "{line}");
        assert_eq!(cwd.as_deref(), Some("/w"), "{line}");
        assert_eq!(env, ["A=1", "B=2"], "{line}");
        assert_eq!(user.as_deref(), Some("1:2"), "{line}");
        assert_eq!(additional_gids, [5, 6], "{line}");
        assert_eq!(cap, ["CAP_KILL", "CAP_CHOWN"], "{line}");
        assert_eq!(pid_file.as_deref(), Some(Path::new("/pid")), "{line}");
        assert_eq!(console_socket.as_deref(), Some("/s"), "{line}");
        assert_eq!(apparmor.as_deref(), Some("prof"), "{line}");
        assert_eq!(process_label.as_deref(), Some("lbl"), "{line}");
        assert_eq!(preserve_fds, 1, "{line}");
        assert_eq!(id, "c1", "{line}");
        assert_eq!(args, ["sh", "-c", "true"], "{line}: the program's own flags stay its own");
    }
    let Cmd::Exec { args, process, .. } = p("exec c1 ls -l --all").cmd else {
        panic!("not exec")
    };
    assert_eq!(
        (args, process),
        (vec!["ls".into(), "-l".into(), "--all".into()], None)
    );
}

#[test]
fn update_flags() {
    for line in [
        "update -r /res.json x",
        "update --resources /res.json x",
        "update --resources=/res.json x",
    ] {
        let Cmd::Update(u) = p(line).cmd else {
            panic!("{line}: not update")
        };
        assert_eq!(
            (u.resources.as_deref(), u.id.as_str()),
            (Some("/res.json"), "x")
        );
    }
    let Cmd::Update(u) = p("update -r - x").cmd else {
        panic!("not update")
    };
    assert_eq!(u.resources.as_deref(), Some("-"), "stdin");
    for line in [
        "update --memory 64m --memory-reservation 32m --memory-swap 128m --cpu-share 512 --cpu-period 100000 --cpu-quota 50000 --cpu-rt-period 1000 --cpu-rt-runtime 500 --cpuset-cpus 0-1 --cpuset-mems 0 --pids-limit 100 --blkio-weight 300 x",
        "update --memory=64m --memory-reservation=32m --memory-swap=128m --cpu-shares=512 --cpu-period=100000 --cpu-quota=50000 --cpu-rt-period=1000 --cpu-rt-runtime=500 --cpuset-cpus=0-1 --cpuset-mems=0 --pids-limit=100 --blkio-weight=300 x",
        "update -memory 64m -memory-reservation 32m -memory-swap 128m -cpu-share 512 -cpu-period 100000 -cpu-quota 50000 -cpu-rt-period 1000 -cpu-rt-runtime 500 -cpuset-cpus 0-1 -cpuset-mems 0 -pids-limit 100 -blkio-weight 300 x",
    ] {
        let Cmd::Update(u) = p(line).cmd else {
            panic!("{line}: not update")
        };
        assert_eq!(u.memory.as_deref(), Some("64m"), "{line}");
        assert_eq!(u.memory_reservation.as_deref(), Some("32m"), "{line}");
        assert_eq!(u.memory_swap.as_deref(), Some("128m"), "{line}");
        assert_eq!(u.cpu_shares, Some(512), "{line}");
        assert_eq!((u.cpu_period, u.cpu_quota), (Some(100000), Some(50000)), "{line}");
        assert_eq!((u.cpu_rt_period, u.cpu_rt_runtime), (Some(1000), Some(500)), "{line}");
        assert_eq!(u.cpuset_cpus.as_deref(), Some("0-1"), "{line}");
        assert_eq!(u.cpuset_mems.as_deref(), Some("0"), "{line}");
        assert_eq!((u.pids_limit, u.blkio_weight), (Some(100), Some(300)), "{line}");
        assert_eq!(u.id, "x", "{line}");
    }
}

#[test]
fn the_fast_path_gives_what_clap_gives() {
    for line in [
        "create x",
        "create -b /b x",
        "create --bundle=/b --pid-file /p --console-socket=/s --no-pivot --no-new-keyring --preserve-fds 3 x",
        "--root /r --log /l --log-format json --debug create -b /b x",
        "--root=/r run -d -b /b x",
        "run --detach x",
        "start x",
        "state x",
        "delete x",
        "delete -f x",
        "delete --force x",
        "kill x",
        "kill x KILL",
        "kill -a x 9",
        "kill --all x SIGKILL",
    ] {
        let args = normalize(argv(line));
        let fast = fast_parse(&args).unwrap_or_else(|| panic!("{line:?} left the fast path"));
        assert_eq!(
            format!("{fast:?}"),
            format!("{:?}", clap_only(line)),
            "{line}"
        );
    }
    // Anything else goes to clap, whose answer then stands.
    for line in [
        "--systemd-cgroup create x",
        "create --bundle",
        "create x y",
        "kill x 9 extra",
        "run --keep x",
        "start",
        "delete --force=true x",
    ] {
        assert!(fast_parse(&normalize(argv(line))).is_none(), "{line}");
    }
}

#[test]
fn usage_errors_help_and_version() {
    for line in [
        "",
        "nosuch x",
        "create",
        "start",
        "create --nosuch x",
        "kill",
        "exec",
        "create --preserve-fds many x",
        "update --pids-limit lots x",
        "checkpoint x",
        "restore x",
    ] {
        let e = match parse(argv(line)) {
            Ok(c) => panic!("{line:?} was accepted: {c:?}"),
            Err(e) => e,
        };
        assert!(e.use_stderr(), "{line:?}: a usage error exits 1 on stderr");
    }
    for line in ["--help", "create --help", "--version", "help"] {
        let e = parse(argv(line)).expect_err(line);
        assert!(
            !e.use_stderr(),
            "{line:?}: help and version exit 0 on stdout"
        );
    }
}

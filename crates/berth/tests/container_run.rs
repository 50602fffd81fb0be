//! `berth run` end to end against a real registry: the seed scenario, the
//! image left untouched, and each flag observably applied.

mod container_support;
use container_support::*;

#[test]
fn seed_scenario_uname_hostname_pid1_mounts_root() {
    let env = Env::new();
    let out = env.run(&[], &["uname", "-a"]);
    assert!(out.starts_with("Linux "), "{out}");

    // Hostname is the short id; PID 1 is the command; id is root.
    let out = env.run(
        &["--name", "seed"],
        &[
            "sh",
            "-c",
            "hostname; echo pid=$$; id; cat /proc/mounts; ps -o pid,comm",
        ],
    );
    let mut lines = out.lines();
    let host = lines.next().unwrap();
    assert_eq!(host.len(), 12, "{out}");
    assert!(host.chars().all(|c| c.is_ascii_hexdigit()), "{out}");
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
    // No host mount leaks in: the container's mounts are its own.
    let host_mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    for l in out
        .lines()
        .filter(|l| l.contains(" / ") || l.starts_with("/dev/"))
    {
        let _ = l;
    }
    for hm in host_mounts.lines() {
        let target = hm.split(' ').nth(1).unwrap();
        if [
            "/",
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys/fs/cgroup",
        ]
        .contains(&target)
            || target.starts_with("/sys/fs/cgroup/")
            || target.starts_with("/proc/")
            || target.starts_with("/etc/")
        {
            continue;
        }
        assert!(
            !out.lines().any(|l| l.split(' ').nth(1) == Some(target)),
            "host mount {target} visible in the container:\n{out}"
        );
    }
    let root_line = out
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/"))
        .unwrap();
    assert!(root_line.starts_with("overlay / overlay"), "{root_line}");
    // --rm removed it.
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "");
    assert!(std::fs::read_dir(env.root.join("containers"))
        .unwrap()
        .flatten()
        .all(|e| e.file_name().to_string_lossy().starts_with('.')));
    assert!(mounts_under(&env.root).is_empty());
}

#[test]
fn run_pulls_a_missing_image_and_keeps_stdout_clean() {
    let env = Env::new();
    let other = env.root.with_file_name("fresh-root");
    let mut cmd = std::process::Command::new(BERTH);
    set_runtime(&mut cmd);
    let out = cmd
        .arg("--root")
        .arg(&other)
        .env("BERTH_DEFAULT_NETWORK", "none")
        .args(["run", "--rm", &env.image, "echo", "hi"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let leftover = mounts_under(&other);
    assert!(leftover.is_empty(), "{leftover:?}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    assert!(text(&out.stderr).contains("Unable to find image"));
    let never = std::process::Command::new(BERTH)
        .arg("--root")
        .arg(&other)
        .env("BERTH_DEFAULT_NETWORK", "none")
        .args([
            "run",
            "--rm",
            "--pull",
            "never",
            "127.0.0.1:1/nothing:here",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(never.status.code(), Some(125));
    assert!(
        text(&never.stderr).contains("No such image"),
        "{}",
        text(&never.stderr)
    );
}

//! Each `berth run` flag observably applied inside a real container.

mod container_support;
use container_support::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// path -> (mode, uid, gid, size, content hash or link target) for a tree.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let extra = if m.is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            } else if m.is_file() {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                format!("{:x}", h.finish())
            } else {
                String::new()
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            let key = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.insert(
                key,
                format!(
                    "{:o} {} {} {} {} {}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.len(),
                    m.mtime(),
                    extra
                ),
            );
        }
    }
    out
}

#[test]
fn image_layers_unchanged_after_writes_and_deletes() {
    let env = Env::new();
    let layers = env.root.join("image/layers");
    let before = snapshot(&layers);
    assert!(before.keys().any(|k| k.ends_with("bin/busybox")));
    env.run(
        &[],
        &[
            "sh",
            "-c",
            "echo new > /etc/newfile; echo x >> /etc/passwd; rm /bin/ls; rm -r /home; mkdir /data; chmod 700 /tmp",
        ],
    );
    // A second container still sees the image as it was.
    let out = env.run(
        &[],
        &[
            "sh",
            "-c",
            "ls /bin/ls /home; cat /etc/newfile 2>&1; tail -1 /etc/passwd",
        ],
    );
    assert!(out.contains("/bin/ls"), "{out}");
    assert!(out.contains("No such file"), "{out}");
    assert_eq!(snapshot(&layers), before);
}

#[test]
fn env_workdir_user_hostname() {
    let env = Env::new();
    let envfile = env.root.with_file_name("envfile");
    std::fs::write(&envfile, "# comment\nFROM_FILE=f\nA=overridden\n").unwrap();
    let out = env.run(
        &[
            "-e",
            "A=1",
            "--env-file",
            envfile.to_str().unwrap(),
            "-e",
            "B=two words",
            "-w",
            "/tmp",
            "-h",
            "myhost",
        ],
        &["sh", "-c", "env; pwd; hostname"],
    );
    assert!(out.contains("\nA=1\n") || out.starts_with("A=1\n"), "{out}");
    assert!(out.contains("FROM_FILE=f"), "{out}");
    assert!(out.contains("B=two words"), "{out}");
    assert!(out.contains("HOSTNAME=myhost"), "{out}");
    assert!(out.contains("PATH="), "{out}");
    assert!(out.contains("/tmp\nmyhost\n"), "{out}");

    assert_eq!(
        env.run(&["-u", "berth"], &["id"]).trim(),
        "uid=1000(berth) gid=1000(berth)"
    );
    let out = env.run(&["-u", "1234:5678"], &["id", "-u"]);
    assert_eq!(out.trim(), "1234");
    let out = env.run(&["-u", "berth:root", "--group-add", "nogroup"], &["id"]);
    assert!(
        out.contains("uid=1000(berth) gid=0(root)") && out.contains("65534"),
        "{out}"
    );
    let bad = env.berth(&["run", "--rm", "-u", "nosuch", &env.image, "id"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        text(&bad.stderr)
            .contains("unable to find user nosuch: no matching entries in passwd file"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn read_only_root_binds_tmpfs_and_named_volumes() {
    let env = Env::new();
    let out = env.berth(&["run", "--rm", "--read-only", &env.image, "touch", "/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    // tmpfs stays writable under a read-only root.
    let out = env.run(
        &["--read-only", "--tmpfs", "/scratch:size=1m"],
        &[
            "sh",
            "-c",
            "echo ok > /scratch/f && cat /scratch/f && grep /scratch /proc/mounts",
        ],
    );
    assert!(out.starts_with("ok\ntmpfs /scratch tmpfs"), "{out}");
    assert!(out.contains("size=1024k"), "{out}");

    let host = env.root.with_file_name("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let v = format!("{}:/data", host.display());
    let out = env.run(
        &["-v", &v],
        &["sh", "-c", "cat /data/in; echo from ctr > /data/out"],
    );
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "from ctr\n"
    );
    let vro = format!("{v}:ro");
    let out = env.berth(&[
        "run",
        "--rm",
        "-v",
        &vro,
        &env.image,
        "sh",
        "-c",
        "cat /data/in && touch /data/nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Read-only file system"));
    assert!(!host.join("nope").exists());
    let m = format!("type=bind,source={},target=/m,readonly", host.display());
    let out = env.run(&["--mount", &m], &["cat", "/m/in"]);
    assert_eq!(out, "from host\n");

    // A named volume is created on first use, filled from the image, and persists.
    let out = env.run(
        &["-v", "vol1:/etc"],
        &[
            "sh",
            "-c",
            "cat /etc/group | head -1; echo kept > /etc/mine",
        ],
    );
    assert_eq!(out, "root:x:0:\n");
    let out = env.run(
        &["--mount", "type=volume,source=vol1,target=/v"],
        &["cat", "/v/mine"],
    );
    assert_eq!(out, "kept\n");
    assert!(env.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "vol1"));
    let insp: serde_json::Value =
        serde_json::from_str(&env.ok(&["volume", "inspect", "vol1"])).unwrap();
    assert!(insp[0]["Mountpoint"]
        .as_str()
        .unwrap()
        .ends_with("volumes/vol1/_data"));
    env.ok(&["volume", "rm", "vol1"]);
    assert!(!env.root.join("volumes/vol1").exists());
}

#[test]
fn caps_seccomp_masked_paths_privileged() {
    let env = Env::new();
    let out = env.run(&[], &["grep", "CapEff", "/proc/self/status"]);
    assert_eq!(out.trim(), "CapEff:\t00000000a80425fb");
    let out = env.run(
        &["--cap-drop", "ALL", "--cap-add", "net_admin"],
        &["grep", "CapEff", "/proc/self/status"],
    );
    assert_eq!(out.trim(), "CapEff:\t0000000000001000");
    let out = env.run(
        &["--cap-drop", "chown"],
        &["grep", "CapEff", "/proc/self/status"],
    );
    assert_eq!(out.trim(), "CapEff:\t00000000a80425fa");

    // unshare(CLONE_NEWUSER) needs no capability: only seccomp refuses it.
    let out = env.berth(&["run", "--rm", &env.image, "unshare", "-U", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Operation not permitted"));
    env.run(
        &["--security-opt", "seccomp=unconfined"],
        &["unshare", "-U", "true"],
    );

    // Masked paths are empty, read-only paths are read-only.
    let out = env.run(&[], &["sh", "-c", "cat /proc/keys /proc/timer_list | wc -c; ls /sys/firmware | wc -l; grep ' /proc/sys ' /proc/mounts"]);
    assert!(out.starts_with("0\n0\nproc /proc/sys proc ro,"), "{out}");
    let out = env.run(
        &["--privileged"],
        &[
            "sh",
            "-c",
            "grep CapEff /proc/self/status; grep ' /sys ' /proc/mounts; ls /sys/firmware | wc -l",
        ],
    );
    // Every capability the caller holds (root here lacks CAP_SYS_RESOURCE).
    let host_bnd = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .unwrap()[7..]
        .trim()
        .to_string();
    assert!(out.contains(&format!("CapEff:\t{host_bnd}")), "{out}");
    assert!(out.contains("sysfs /sys sysfs rw"), "{out}");
    let bad = env.berth(&["run", "--rm", "--cap-add", "bogus", &env.image, "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(text(&bad.stderr).contains("bogus"));
}

#[test]
fn cgroup_limits_memory_oom_pids_cpu() {
    let env = Env::new();
    let out = env.run(
        &["--cpus", "0.5", "--pids-limit", "7", "-m", "64m", "--cpu-shares", "512"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; \
             cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; \
             cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    assert!(l[0] == "50000" || l[0] == "50000 100000", "{out}");
    assert_eq!(l[1], "7");
    assert_eq!(l[2], (64u64 << 20).to_string());

    // The pids limit is enforced: forks beyond it fail.
    let out = env.berth(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        &env.image,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait",
    ]);
    assert!(
        text(&out.stderr).contains("can't fork"),
        "{}",
        text(&out.stderr)
    );

    // Over the memory limit: killed, and inspect says OOMKilled.
    let out = env.berth(&[
        "run",
        "--name",
        "oom",
        "-m",
        "8m",
        "--memory-swap",
        "8m",
        &env.image,
        "sh",
        "-c",
        "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let i = env.inspect("oom");
    assert_eq!(i["State"]["OOMKilled"], true, "{i}");
    assert_eq!(i["State"]["ExitCode"], 137);
    assert_eq!(i["HostConfig"]["Memory"], 8 << 20);
    env.ok(&["rm", "oom"]);

    let out = env.berth(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=99999:99999",
        &env.image,
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("nofile"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(
        &["--ulimit", "nofile=100:200"],
        &["sh", "-c", "ulimit -n; ulimit -Hn"],
    );
    assert_eq!(out, "100\n200\n");
}

#[test]
fn etc_files_and_network_modes() {
    let env = Env::new();
    let out = env.run(
        &["--add-host", "db:10.1.2.3", "--dns", "9.9.9.9", "-h", "box"],
        &[
            "sh",
            "-c",
            "cat /etc/hosts /etc/resolv.conf /etc/hostname; ls /sys/class/net",
        ],
    );
    assert!(out.contains("10.1.2.3\tdb"), "{out}");
    assert!(out.contains("nameserver 9.9.9.9"), "{out}");
    assert!(out.contains("box\n"), "{out}");
    // --network none (the tests' default, BERTH_DEFAULT_NETWORK=none): loopback only.
    assert!(out.trim_end().ends_with("lo"), "{out}");
    let host_ifaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    let out = env.run(&["--network", "host"], &["ls", "/sys/class/net"]);
    assert_eq!(out.lines().count(), host_ifaces, "{out}");
    // The host's hostname, in the UTS namespace and in $HOSTNAME alike.
    let out = env.run(
        &["--network", "host"],
        &["sh", "-c", "hostname; echo $HOSTNAME"],
    );
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let node = node.trim_end();
    assert_eq!(out, format!("{node}\n{node}\n"));
    let shm = env.run(&["--shm-size", "2m"], &["grep", "/dev/shm", "/proc/mounts"]);
    assert!(shm.contains("size=2048k"), "{shm}");
    let bad = env.berth(&["run", "--rm", "--network", "nosuch", &env.image, "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        text(&bad.stderr).contains("network nosuch not found"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn entrypoint_labels_devices_sysctls_cpuset_stop_signal() {
    let env = Env::new();
    assert_eq!(
        env.run(&["--entrypoint", "echo"], &["hello", "world"]),
        "hello world\n"
    );
    let out = env.run(
        &["--device", "/dev/null:/dev/mynull", "--sysctl", "net.ipv4.ip_forward=1", "--cpuset-cpus", "0", "--cpu-shares", "512"],
        &[
            "sh",
            "-c",
            "ls -l /dev/mynull; echo x > /dev/mynull && echo wrote; cat /proc/sys/net/ipv4/ip_forward; \
             cat /sys/fs/cgroup/cpuset.cpus 2>/dev/null || cat /sys/fs/cgroup/cpuset/cpuset.cpus; \
             cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight",
        ],
    );
    let l: Vec<&str> = out.lines().collect();
    assert!(
        l[0].starts_with("crw") && l[0].contains("1,") && l[0].ends_with("/dev/mynull"),
        "{out}"
    );
    assert_eq!(&l[1..4], ["wrote", "1", "0"], "{out}");
    assert!(l[4] == "512" || l[4] == "20", "{out}");

    // --label shows in inspect; --stop-signal is what stop sends.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "sig",
        "--label",
        "app=web",
        "--stop-signal",
        "USR1",
        &env.image,
        "sh",
        "-c",
        "trap 'exit 7' USR1; while true; do sleep 0.1; done",
    ]);
    let i = env.inspect("sig");
    assert_eq!(i["Config"]["Labels"]["app"], "web");
    assert_eq!(i["Config"]["StopSignal"], "USR1");
    let start = std::time::Instant::now();
    env.ok(&["stop", "sig"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(env.inspect("sig")["State"]["ExitCode"], 7);
    env.ok(&["rm", "sig"]);
}

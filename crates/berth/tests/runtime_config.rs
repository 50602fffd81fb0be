//! What config.json asks for is applied: namespaces, mounts and options, root.readonly, masked
//! and read-only paths, devices, capabilities, rlimits, user/groups/umask, noNewPrivileges,
//! oomScoreAdj, sysctl, hostname, hooks.

mod runtime_common;
use runtime_common::*;
use serde_json::json;

#[test]
fn each_namespace_is_isolated() {
    let mut rt = Rt::new();
    rt.args(&[
        "sh",
        "-c",
        "for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done; hostname; echo $$; ls /sys/class/net; cat /sys/class/net/lo/flags",
    ]);
    rt.config["hostname"] = json!("isolated");
    let out = rt.run_ok("ns");
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
        .iter()
        .enumerate()
    {
        assert!(lines[i].starts_with(n), "{n}: {}", lines[i]);
        assert_ne!(lines[i], host_ns(n), "{n} namespace is the host's");
    }
    assert_eq!(lines[6], "isolated");
    assert_eq!(
        lines[7], "1",
        "the process is not pid 1 of its pid namespace"
    );
    assert_eq!(
        lines[8..lines.len() - 1].to_vec(),
        vec!["lo"],
        "network namespace has more than lo"
    );
    // A new network namespace gets lo up (IFF_UP|IFF_LOOPBACK), as runc and crun do.
    assert_eq!(lines[lines.len() - 1], "0x9", "lo is not up: {out}");
}

#[test]
fn joins_a_namespace_by_path() {
    let mut rt = Rt::new();
    // Join the host's uts namespace by path; everything else new.
    let ns = rt.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "uts");
    ns.push(json!({"type": "uts", "path": "/proc/self/ns/uts"}));
    rt.config["hostname"] = json!(null);
    rt.args(&[
        "sh",
        "-c",
        "readlink /proc/self/ns/uts; readlink /proc/self/ns/net; echo $$",
    ]);
    let out = rt.run_ok("join");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], host_ns("uts"));
    assert_ne!(l[1], host_ns("net"));
    assert_eq!(l[2], "1");
}

#[test]
fn user_namespace_maps_ids() {
    let mut rt = Rt::new();
    let ns = rt.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    rt.config["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    rt.config["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // cgroup v1 cannot be mounted from a user namespace: drop that mount.
    rt.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "cgroup");
    rt.args(&["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; readlink /proc/self/ns/user; cat /dev/null && echo null-ok"]);
    let out = rt.run_ok("userns");
    let l: Vec<&str> = out.lines().collect();
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(norm(l[0]), "0 100000 65536");
    assert_eq!(norm(l[1]), "0 100000 65536");
    assert_eq!(l[2], "0");
    assert_ne!(l[3], host_ns("user"));
    assert_eq!(l[4], "null-ok");
}

#[test]
fn mounts_and_options_are_applied() {
    let mut rt = Rt::new();
    let host_ro = rt.path("ro-src");
    let host_rw = rt.path("rw-src");
    std::fs::create_dir_all(&host_ro).unwrap();
    std::fs::create_dir_all(&host_rw).unwrap();
    std::fs::write(host_ro.join("f"), "hello").unwrap();
    rt.mount(json!({"destination": "/mnt/ro", "type": "bind", "source": host_ro, "options": ["rbind", "ro"]}));
    rt.mount(json!({"destination": "/mnt/rw", "type": "bind", "source": host_rw, "options": ["bind", "rw"]}));
    rt.mount(json!({"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m", "mode=700"]}));
    rt.args(&[
        "sh",
        "-c",
        "cat /mnt/ro/f; echo; touch /mnt/ro/x 2>/dev/null && echo ro-writable; echo w > /mnt/rw/out; \
         stat -c %a /mnt/tmp; grep ' /mnt/tmp ' /proc/mounts; grep ' /mnt/ro ' /proc/mounts; \
         grep ' /proc ' /proc/mounts | cut -d' ' -f3; grep ' /sys ' /proc/mounts | cut -d' ' -f3,4; \
         grep ' /dev/pts ' /proc/mounts | cut -d' ' -f3; grep ' /dev/mqueue ' /proc/mounts | cut -d' ' -f3; \
         grep ' /sys/fs/cgroup' /proc/mounts | head -1 | cut -d' ' -f2",
    ]);
    let out = rt.run_ok("mounts");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "hello");
    assert!(!out.contains("ro-writable"), "ro bind was writable");
    assert_eq!(std::fs::read_to_string(host_rw.join("out")).unwrap(), "w\n");
    assert_eq!(l[1], "700");
    assert!(
        l[2].contains("tmpfs") && l[2].contains("nosuid") && l[2].contains("nodev"),
        "{}",
        l[2]
    );
    assert!(l[2].contains("size=1024k"), "{}", l[2]);
    assert!(
        l[3].split_whitespace().nth(3).unwrap().starts_with("ro"),
        "{}",
        l[3]
    );
    assert_eq!(l[4], "proc");
    assert!(l[5].starts_with("sysfs ro"), "{}", l[5]);
    assert_eq!(l[6], "devpts");
    assert_eq!(l[7], "mqueue");
    assert!(l[8].starts_with("/sys/fs/cgroup"), "{}", l[8]);
}

#[test]
fn cgroup_namespace_and_mount_show_the_containers_own_cgroup() {
    let mut rt = Rt::new();
    let hook_out = rt.path("hook-cgroup");
    // berth-runtime spec's default config has a cgroup namespace and a cgroup mount.
    rt.config["linux"]["resources"]["pids"] = json!({"limit": 123});
    rt.config["hooks"] = json!({"createContainer": [{"path": "/bin/sh",
        "args": ["sh", "-c", format!("cat /proc/self/cgroup > {}", hook_out.display())]}]});
    rt.args(&[
        "sh",
        "-c",
        "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max; grep ' /sys/fs/cgroup/pids ' /proc/self/mountinfo | cut -d' ' -f4",
    ]);
    let out = rt.run_ok("cgns");
    let lines: Vec<&str> = out.lines().collect();
    let n = lines.len();
    assert!(n > 3, "{out}");
    // Every hierarchy is rooted at the container's cgroup: the namespace was made after the
    // init joined it, and the mount shows that cgroup (its limit) as the root.
    assert!(lines[..n - 2].iter().all(|l| l.ends_with(":/")), "{out}");
    assert_eq!(lines[n - 2], "123", "{out}");
    assert_eq!(lines[n - 1], "/", "{out}");
    // The createContainer hook already ran inside the container's cgroups and namespace.
    let hook = std::fs::read_to_string(&hook_out).unwrap();
    assert!(
        !hook.is_empty() && hook.lines().all(|l| l.ends_with(":/")),
        "{hook}"
    );
}

#[test]
fn relative_destinations_and_the_specs_other_mount_options() {
    let mut rt = Rt::new();
    let src = rt.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // A relative destination is relative to "/"; nosymfollow, iversion and the recursive
    // options (rnoexec, rnosymfollow, rnoatime, then rrw undoing an rro) reach the mount.
    rt.mount(
        json!({"destination": "rel/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosymfollow", "iversion"]}),
    );
    rt.mount(
        json!({"destination": "/mnt/rec", "type": "bind", "source": src,
        "options": ["rbind", "rro", "rnoexec", "rnosymfollow", "rnoatime", "rrw"]}),
    );
    rt.args(&[
        "sh",
        "-c",
        "grep ' /rel/tmp ' /proc/mounts | cut -d' ' -f4; grep ' /mnt/rec ' /proc/mounts | cut -d' ' -f4",
    ]);
    let out = rt.run_ok("mountopts");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 2, "{out}");
    assert!(l[0].split(',').any(|o| o == "nosymfollow"), "{}", l[0]);
    for want in ["rw", "noexec", "nosymfollow", "noatime"] {
        assert!(
            l[1].split(',').any(|o| o == want),
            "{want} missing: {}",
            l[1]
        );
    }
}

#[test]
fn masked_and_readonly_paths_and_readonly_root() {
    let mut rt = Rt::new();
    assert_eq!(rt.config["root"]["readonly"], true);
    rt.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/proc/meminfo"));
    rt.args(&[
        "sh",
        "-c",
        "wc -c < /proc/meminfo; ls -A /sys/firmware | wc -l; \
         echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo sys-writable; \
         grep ' /proc/sys ' /proc/mounts | cut -d' ' -f4 | cut -c1-2; \
         touch /newfile 2>/dev/null && echo root-writable; echo done",
    ]);
    let out = rt.run_ok("masked");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0].trim(), "0", "/proc/meminfo is not masked");
    assert_eq!(l[1].trim(), "0", "/sys/firmware is not masked");
    assert!(!out.contains("sys-writable"));
    assert_eq!(l[2], "ro");
    assert!(!out.contains("root-writable"));
    assert!(!rt.rootfs().join("newfile").exists());
    // With readonly false the root is writable.
    rt.config["root"]["readonly"] = json!(false);
    rt.args(&["sh", "-c", "touch /newfile && echo ok"]);
    assert_eq!(rt.run_ok("rw"), "ok\n");
    assert!(rt.rootfs().join("newfile").exists());
}

#[test]
fn devices_exist_with_the_right_numbers() {
    let mut rt = Rt::new();
    rt.config["linux"]["devices"] = json!([
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 0, "gid": 0},
        // Already there (a default device) and the same: fine.
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3}
    ]);
    rt.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
    ]);
    rt.args(&[
        "sh",
        "-c",
        "for d in null zero full random urandom tty fuse; do stat -c '%n %F %t:%T %a' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; head -c 4 /dev/zero | wc -c",
    ]);
    let out = rt.run_ok("devs");
    let l: Vec<&str> = out.lines().collect();
    let want = [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
        ("fuse", "a:e5"),
    ];
    for (i, (n, mm)) in want.iter().enumerate() {
        let f: Vec<&str> = l[i].split(' ').collect();
        assert_eq!(f[0], format!("/dev/{n}"));
        assert_eq!(f[1..4].join(" "), "character special file", "{}", l[i]);
        assert_eq!(f[4], *mm, "{}", l[i]);
    }
    assert!(l[0].ends_with(" 666"));
    assert!(l[6].ends_with(" 640"));
    assert_eq!(
        &l[7..12],
        &[
            "/proc/self/fd",
            "/proc/self/fd/0",
            "/proc/self/fd/1",
            "/proc/self/fd/2",
            "pts/ptmx"
        ]
    );
    assert_eq!(l[12].trim(), "4");
    // A listed device whose path holds a different file is an error, not a replacement.
    rt.config["linux"]["devices"] =
        json!([{"path": "/dev/tty", "type": "c", "major": 4, "minor": 1}]);
    rt.args(&["true"]);
    let (code, _, err) = rt.run("devclash");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/dev/tty") && err.contains("different file"),
        "{err}"
    );
}

fn status_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn capabilities_are_the_configured_sets() {
    let mut rt = Rt::new();
    rt.args(&["cat", "/proc/self/status"]);
    let out = rt.run_ok("caps");
    // CAP_KILL(5), CAP_NET_BIND_SERVICE(10), CAP_AUDIT_WRITE(29)
    let want = format!("{:016x}", (1u64 << 5) | (1 << 10) | (1 << 29));
    assert_eq!(status_field(&out, "CapEff"), want);
    assert_eq!(status_field(&out, "CapPrm"), want);
    assert_eq!(status_field(&out, "CapBnd"), want);
    assert_eq!(status_field(&out, "CapInh"), "0000000000000000");
    // With inheritable set, ambient capabilities are raised.
    let caps = json!(["CAP_CHOWN", "CAP_SYS_ADMIN"]);
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        rt.config["process"]["capabilities"][set] = caps.clone();
    }
    rt.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let out = rt.run_ok("caps2");
    let want = format!("{:016x}", (1u64 << 0) | (1 << 21));
    for k in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(status_field(&out, k), want, "{k}");
    }
    assert!(status_field(&out, "Uid").starts_with("1000"));
}

#[test]
fn rlimits_user_groups_umask_nnp_oom_score() {
    let mut rt = Rt::new();
    rt.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}
    ]);
    rt.config["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "umask": 63, "additionalGids": [10, 20]});
    rt.config["process"]["noNewPrivileges"] = json!(true);
    rt.config["process"]["oomScoreAdj"] = json!(500);
    rt.config["process"]["cwd"] = json!("/home/berth");
    rt.args(&[
        "sh",
        "-c",
        "ulimit -Sn; ulimit -Hn; ulimit -Su; id -u; id -g; id -G; umask; pwd; cat /proc/self/oom_score_adj; grep NoNewPrivs /proc/self/status",
    ]);
    let out = rt.run_ok("attrs");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "512");
    assert_eq!(l[1], "2048");
    assert_eq!(l[2], "300");
    assert_eq!(l[3], "1000");
    assert_eq!(l[4], "1000");
    let groups: Vec<&str> = l[5].split_whitespace().collect();
    assert!(groups.contains(&"10") && groups.contains(&"20"), "{}", l[5]);
    assert_eq!(l[6], "0077");
    assert_eq!(l[7], "/home/berth");
    assert_eq!(l[8], "500");
    assert_eq!(l[9].split_whitespace().last(), Some("1"));
    rt.config["process"]["noNewPrivileges"] = json!(false);
    rt.args(&["grep", "NoNewPrivs", "/proc/self/status"]);
    assert!(rt.run_ok("nnp0").trim().ends_with('0'));
}

#[test]
fn rlimit_above_the_hard_limit_is_a_clear_error() {
    let mut rt = Rt::new();
    rt.config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576}]);
    rt.args(&["true"]);
    let (code, _, err) = rt.run("rlimit");
    // Root here lacks CAP_SYS_RESOURCE; where it has it the limit is simply set.
    if code != 0 {
        assert!(err.contains("RLIMIT_NOFILE"), "{err}");
    }
}

#[test]
fn sysctl_and_hostname_domainname() {
    let mut rt = Rt::new();
    rt.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "2048"});
    rt.config["hostname"] = json!("box");
    rt.config["domainname"] = json!("example.org");
    rt.args(&["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni; hostname; cat /proc/sys/kernel/domainname"]);
    let out = rt.run_ok("sysctl");
    assert_eq!(out, "1\n2048\nbox\nexample.org\n");
    // A sysctl outside any namespace of the container is refused.
    rt.config["linux"]["sysctl"] = json!({"vm.swappiness": "10"});
    let (code, _, err) = rt.run("sysctl-bad");
    assert_eq!(code, 1);
    assert!(err.contains("vm.swappiness"), "{err}");
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let mut rt = Rt::new();
    rt.config["root"]["readonly"] = json!(false);
    let log = rt.path("hooks.log");
    let hook = |name: &str, log: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo \"{name} $s\" >> {log}")]});
    let l = log.display().to_string();
    rt.config["hooks"] = json!({
        "prestart": [hook("prestart", &l)],
        "createRuntime": [hook("createRuntime", &l)],
        "createContainer": [hook("createContainer", &l)],
        "startContainer": [hook("startContainer", "/tmp/hooks.log")],
        "poststart": [hook("poststart", &l)],
        "poststop": [hook("poststop", &l)],
    });
    rt.args(&["sh", "-c", "echo main >> /tmp/hooks.log"]);
    let id_prefix = "hooks";
    rt.run_ok(id_prefix);
    let text = std::fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ]
    );
    for line in text.lines() {
        let (_, state) = line.split_once(' ').unwrap();
        let v: serde_json::Value = serde_json::from_str(state).unwrap();
        assert!(v["id"].as_str().unwrap().starts_with(id_prefix));
        assert_eq!(v["bundle"], rt.bundle.display().to_string());
        assert!(v["pid"].as_i64().unwrap() > 0);
    }
    let statuses: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l.split_once(' ').unwrap().1).unwrap()
                ["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["creating", "creating", "created", "running", "stopped"]
    );
    let inside = std::fs::read_to_string(rt.rootfs().join("tmp/hooks.log")).unwrap();
    let inside: Vec<&str> = inside
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(inside, ["startContainer", "main"]);
}

#[test]
fn failing_hooks_follow_the_spec() {
    let mut rt = Rt::new();
    let marker = rt.path("after");
    rt.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/false"}],
        "poststop": [{"path": "/bin/touch", "args": ["touch", marker]}]
    });
    rt.args(&["true"]);
    let (code, _, err) = rt.run("hookfail");
    assert_eq!(code, 1);
    assert!(
        err.contains("createRuntime hook /bin/false failed"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&rt.rt(&["list", "-q"]).stdout), "");
    // The lifecycle continues at the container's destruction: poststop hooks run.
    assert!(
        marker.exists(),
        "poststop did not run after a failed createRuntime hook"
    );
    std::fs::remove_file(&marker).unwrap();
    // A failing poststart or poststop hook only warns, and the hooks after it still run;
    // timeouts kill the hook.
    let after_poststart = rt.path("after-poststart");
    rt.config["hooks"] = json!({
        "poststart": [
            {"path": "/bin/false"},
            {"path": "/bin/touch", "args": ["touch", after_poststart]}
        ],
        "poststop": [
            {"path": "/bin/false"},
            {"path": "/bin/touch", "args": ["touch", marker]}
        ]
    });
    let (code, _, err) = rt.run("poststartfail");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning"), "{err}");
    assert!(
        after_poststart.exists(),
        "the poststart hook after a failing one did not run"
    );
    assert!(
        marker.exists(),
        "the poststop hook after a failing one did not run"
    );
    // A failing startContainer hook: `start` reports it, the program never runs, the
    // container is stopped, and delete runs the poststop hooks.
    std::fs::remove_file(&marker).unwrap();
    let ran = rt.path("program-ran");
    rt.config["hooks"] = json!({
        "startContainer": [{"path": "/bin/false"}],
        "poststop": [{"path": "/bin/touch", "args": ["touch", marker]}]
    });
    rt.args(&["touch", "/program-ran"]);
    let id = rt.create("startfail");
    let out = rt.rt(&["start", &id]);
    assert!(
        !out.status.success(),
        "start succeeded despite a failing startContainer hook"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("startContainer"), "{err}");
    assert_eq!(rt.state(&id)["status"], "stopped");
    assert!(!rt.rootfs().join("program-ran").exists() && !ran.exists());
    assert!(rt.rt(&["delete", &id]).status.success());
    assert!(
        marker.exists(),
        "poststop did not run after a failed startContainer hook"
    );
    rt.args(&["true"]);
    rt.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let t = std::time::Instant::now();
    let (code, _, err) = rt.run("hooktimeout");
    assert_eq!(code, 1);
    assert!(err.contains("timed out"), "{err}");
    assert!(t.elapsed().as_secs() < 10);
}

#[test]
fn seccomp_profile_is_loaded_with_and_without_no_new_privs() {
    for nnp in [true, false] {
        let mut rt = Rt::new();
        rt.config["root"]["readonly"] = json!(false);
        rt.config["process"]["noNewPrivileges"] = json!(nnp);
        rt.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        rt.args(&[
            "sh",
            "-c",
            "mkdir /tmp/d 2>&1; grep Seccomp: /proc/self/status",
        ]);
        let out = rt.run_ok("seccomp");
        assert!(out.contains("Operation not permitted"), "nnp={nnp}: {out}");
        assert!(out.contains("Seccomp:\t2"), "nnp={nnp}: {out}");
        assert!(!rt.rootfs().join("tmp/d").exists());
    }
}

#[test]
fn time_namespace_offsets() {
    let mut rt = Rt::new();
    rt.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    rt.config["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 86400, "nanosecs": 0}});
    rt.args(&[
        "sh",
        "-c",
        "readlink /proc/self/ns/time; cat /proc/self/timens_offsets",
    ]);
    let out = rt.run_ok("timens");
    let l: Vec<&str> = out.lines().collect();
    assert_ne!(l[0], host_ns("time"));
    let mono = l.iter().find(|l| l.starts_with("monotonic")).unwrap();
    assert_eq!(mono.split_whitespace().nth(1), Some("86400"), "{out}");
}

#[test]
fn cgroup_mount_without_a_cgroup_namespace_shows_the_containers_cgroup() {
    let mut rt = Rt::new();
    rt.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "cgroup");
    // The container's own cgroup has no child cgroups; the host's root would.
    rt.args(&[
        "sh",
        "-c",
        "d=/sys/fs/cgroup/pids; [ -d $d ] || d=/sys/fs/cgroup; ls -d $d/*/ 2>/dev/null | wc -l; cat $d/cgroup.procs | wc -l",
    ]);
    let out = rt.run_ok("cgnons");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0].trim(), "0", "the host's cgroup tree is visible: {out}");
    assert!(l[1].trim().parse::<u32>().unwrap() >= 1);
}

#[test]
fn seccomp_notify_listener_is_handed_to_the_agent() {
    use std::os::fd::AsRawFd;
    let mut rt = Rt::new();
    let sock = rt.path("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    rt.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "meta-1",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mknodat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    rt.args(&["true"]);
    rt.run_ok("notify");
    let (conn, _) = listener.accept().unwrap();
    let (fd, data) = berth_runtime::channel::recv_fd(conn.as_raw_fd()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["metadata"], "meta-1");
    assert!(v["pid"].as_i64().unwrap() > 0);
    assert!(v["state"]["id"].as_str().unwrap().starts_with("notify"));
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    assert!(
        link.display().to_string().contains("seccomp"),
        "{}",
        link.display()
    );
}

#[test]
fn rootfs_propagation_applies_to_the_root_mount() {
    for (prop, want) in [
        ("rshared", "shared:"),
        ("unbindable", "unbindable"),
        ("private", ""),
    ] {
        let mut rt = Rt::new();
        rt.config["linux"]["rootfsPropagation"] = json!(prop);
        rt.args(&[
            "awk",
            "$5 == \"/\" { print \"opt=\" $7 }",
            "/proc/self/mountinfo",
        ]);
        let out = rt.run_ok("prop");
        let opt = out.trim().strip_prefix("opt=").unwrap();
        if want.is_empty() {
            assert_eq!(opt, "-", "{prop}: {out}");
        } else {
            assert!(opt.starts_with(want), "{prop}: {out}");
        }
    }
}

#[test]
fn idmapped_bind_mounts() {
    // Without a user namespace: the mount's own mappings shift on-disk 0 to 1000/2000.
    let mut rt = Rt::new();
    let src = rt.path("idmap-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    rt.mount(json!({"destination": "/mnt/idm", "type": "bind", "source": src, "options": ["bind", "idmap"],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}]}));
    rt.args(&["stat", "-c", "%u %g", "/mnt/idm/f"]);
    assert_eq!(rt.run_ok("idmap"), "1000 2000\n");
    // In a user namespace, "idmap" alone uses the container's mappings: root's files stay root's.
    let mut rt = Rt::new();
    let src = rt.path("idmap-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    rt.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    rt.config["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    rt.config["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    rt.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "cgroup");
    // The rootfs belongs to host root, unmapped in the container: create the target up front.
    std::fs::create_dir_all(rt.rootfs().join("mnt/idm")).unwrap();
    rt.mount(json!({"destination": "/mnt/idm", "type": "bind", "source": src, "options": ["rbind", "idmap"]}));
    rt.args(&["sh", "-c", "stat -c '%u %g' /mnt/idm/f /bin/busybox"]);
    assert_eq!(rt.run_ok("idmap-userns"), "0 0\n65534 65534\n");
}

#[test]
fn rootless_run_as_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    // uid 1000 runs the runtime with `spec --rootless`'s config: a user namespace mapping its own
    // uid to root, setgroups denied, no cgroups (a warning), devices bind-mounted.
    let mut rt = Rt::new();
    std::fs::set_permissions(rt.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = rt.path("rootless");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(1000), Some(1000)).unwrap();
    let as_user = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid", "1000", "--regid", "1000", "--clear-groups", BIN])
            .args(args)
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    assert!(as_user(&["spec", "--rootless"]).status.success());
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["process"]["terminal"] = json!(false);
    config["root"]["path"] = json!(rt.rootfs());
    config["process"]["args"] = json!([
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; cat /proc/self/setgroups; echo > /dev/null && echo null-ok"
    ]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let id = rt.id("rootless");
    let root = dir.join("state");
    let out = as_user(&["--rootless", "--root", root.to_str().unwrap(), "run", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l: Vec<&str> = stdout.lines().collect();
    assert_eq!(l[0], "0");
    assert_eq!(
        l[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "1000", "1"]
    );
    assert_eq!(l[2], "deny");
    assert_eq!(l[3], "null-ok");
}

#[test]
fn tmpcopyup_fills_a_tmpfs_with_the_directory_it_covers() {
    use std::os::unix::fs::PermissionsExt;
    let mut rt = Rt::new();
    for d in ["data", "plain"] {
        let dir = rt.rootfs().join(d);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f"), "from the image").unwrap();
        std::fs::set_permissions(dir.join("sub/f"), std::fs::Permissions::from_mode(0o604))
            .unwrap();
        std::os::unix::fs::chown(dir.join("sub/f"), Some(1000), Some(1001)).unwrap();
        std::os::unix::fs::symlink("sub/f", dir.join("link")).unwrap();
    }
    rt.mount(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["tmpcopyup", "nosuid", "mode=755"]}),
    );
    rt.mount(
        json!({"destination": "/plain", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid"]}),
    );
    rt.args(&[
        "sh",
        "-c",
        "cat /data/sub/f; echo; stat -c '%a %u:%g' /data/sub/f; readlink /data/link; \
         grep ' /data ' /proc/mounts | cut -d' ' -f3; ls -A /plain | wc -l; echo new > /data/new",
    ]);
    let out = rt.run_ok("tmpcopyup");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "from the image", "{out}");
    assert_eq!(l[1], "604 1000:1001", "{out}");
    assert_eq!(l[2], "sub/f", "{out}");
    assert_eq!(l[3], "tmpfs", "{out}");
    // Without the option a tmpfs starts empty.
    assert_eq!(l[4].trim(), "0", "{out}");
    // Writes went to the tmpfs, not to the rootfs below it.
    assert!(!rt.rootfs().join("data/new").exists());
}

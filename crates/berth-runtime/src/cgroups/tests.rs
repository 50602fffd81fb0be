//! Unit tests: mountinfo layouts, path rules, conversions, the device program, and a fake
//! cgroup v2 tree.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::devices::{self, insn};
use super::v2::{blkio_weight_to_io_weight, shares_to_weight, swap_max};
use super::*;

pub const V1_SAMPLE: &str = "\
25 20 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:5 - cgroup cgroup rw,xattr,name=systemd
27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:6 - cgroup cgroup rw,cpu,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid shared:7 - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/cpuset rw,nosuid shared:8 - cgroup cgroup rw,cpuset
30 25 0:27 / /sys/fs/cgroup/devices rw,nosuid shared:9 - cgroup cgroup rw,devices
31 25 0:28 / /sys/fs/cgroup/freezer rw,nosuid shared:10 - cgroup cgroup rw,freezer
32 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:11 - cgroup cgroup rw,net_cls,net_prio
33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid shared:12 - cgroup cgroup rw,pids
34 25 0:31 / /sys/fs/cgroup/blkio rw,nosuid shared:13 - cgroup cgroup rw,blkio
35 20 0:32 / /proc rw - proc proc rw
";

pub const HYBRID_SAMPLE: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

pub const V2_SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

const HYBRID_SELF: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

fn mgr(mi: &str, own: &str, path: Option<&str>) -> Result<Manager, CgroupError> {
    Manager::with_sources(Path::new("/"), mi, own, path, "ctr1")
}

#[test]
fn detects_the_three_layouts() {
    assert_eq!(detect_from_mountinfo(V1_SAMPLE).unwrap(), Layout::V1);
    assert_eq!(
        detect_from_mountinfo(HYBRID_SAMPLE).unwrap(),
        Layout::Hybrid
    );
    assert_eq!(detect_from_mountinfo(V2_SAMPLE).unwrap(), Layout::V2);
    assert!(matches!(
        detect_from_mountinfo("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"),
        Err(CgroupError::NotMounted)
    ));
}

#[test]
fn absolute_path_is_used_under_every_hierarchy() {
    let m = mgr(V1_SAMPLE, "0::/\n", Some("/berth/x")).unwrap();
    assert_eq!(m.layout(), Layout::V1);
    assert_eq!(
        m.v1_path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/berth/x")
    );
    // Co-mounted controllers share one directory.
    assert_eq!(m.v1_path("cpu"), m.v1_path("cpuacct"));
    assert_eq!(
        m.v1_path("cpuacct").unwrap(),
        Path::new("/sys/fs/cgroup/cpu,cpuacct/berth/x")
    );
    assert_eq!(
        m.v1_path("name=systemd").unwrap(),
        Path::new("/sys/fs/cgroup/systemd/berth/x")
    );
    assert_eq!(m.v1_path("net_prio"), m.v1_path("net_cls"));
    assert!(m.unified_path().is_none());
    assert_eq!(m.dirs().len(), 9);
}

#[test]
fn relative_path_is_under_the_callers_cgroup() {
    let m = mgr(HYBRID_SAMPLE, HYBRID_SELF, Some("a/b")).unwrap();
    assert_eq!(m.layout(), Layout::Hybrid);
    assert_eq!(
        m.v1_path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/process_api/abc/a/b")
    );
    assert_eq!(
        m.v1_path("pids").unwrap(),
        Path::new("/sys/fs/cgroup/pids/a/b")
    );
    assert_eq!(
        m.unified_path().unwrap(),
        Path::new("/sys/fs/cgroup/unified/a/b")
    );
    // No cgroupsPath: the id, relative, as runc.
    let m = mgr(HYBRID_SAMPLE, HYBRID_SELF, None).unwrap();
    assert_eq!(
        m.v1_path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/process_api/abc/ctr1")
    );
    // A relative path cannot climb out of the caller's cgroup.
    let m = mgr(HYBRID_SAMPLE, HYBRID_SELF, Some("../../etc")).unwrap();
    assert_eq!(
        m.v1_path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/process_api/abc/etc")
    );
}

#[test]
fn mount_root_is_stripped_from_own_path() {
    let mi = "30 24 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    let m = mgr(mi, "0::/kubepods/pod1/c\n", Some("x")).unwrap();
    assert_eq!(m.unified_path().unwrap(), Path::new("/sys/fs/cgroup/c/x"));
}

#[test]
fn systemd_and_root_paths_are_refused() {
    let e = mgr(V2_SAMPLE, "0::/\n", Some("system.slice:berth:abc")).unwrap_err();
    assert!(e.to_string().contains("systemd"), "{e}");
    let e = mgr(V2_SAMPLE, "0::/\n", Some("/")).unwrap_err();
    assert!(e.to_string().contains("root cgroup"), "{e}");
}

#[test]
fn saved_state_round_trips() {
    let m = mgr(HYBRID_SAMPLE, HYBRID_SELF, Some("/berth/s")).unwrap();
    let v = m.to_saved();
    assert_eq!(v["layout"], "hybrid");
    assert_eq!(Manager::from_saved(&v).unwrap(), m);
    assert!(Manager::from_saved(&serde_json::json!({"layout": 3})).is_err());
}

#[test]
fn conversions_match_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262144), 10000);
    assert_eq!(blkio_weight_to_io_weight(10), 1);
    assert_eq!(blkio_weight_to_io_weight(500), 4950);
    assert_eq!(blkio_weight_to_io_weight(1000), 10000);
    assert_eq!(swap_max(None, Some(-1)).unwrap().as_deref(), Some("max"));
    assert_eq!(
        swap_max(Some(-1), Some(100)).unwrap().as_deref(),
        Some("max")
    );
    assert_eq!(swap_max(None, Some(100)).unwrap(), None);
    assert_eq!(
        swap_max(Some(300), Some(100)).unwrap().as_deref(),
        Some("200")
    );
    assert_eq!(
        swap_max(Some(100), Some(100)).unwrap().as_deref(),
        Some("0")
    );
    assert!(swap_max(Some(50), Some(100)).is_err());
    assert!(swap_max(Some(50), None).is_err());
    assert_eq!(super::common::page_size_name(2048), "2MB");
    assert_eq!(super::common::page_size_name(1048576), "1GB");
    assert_eq!(super::common::page_size_name(64), "64KB");
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn resources(json: serde_json::Value) -> LinuxResources {
    serde_json::from_value(json).unwrap()
}

#[test]
fn fake_v2_tree_gets_controllers_enabled_and_limits_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = root.join("sys/fs/cgroup");
    write(&cg.join("cgroup.controllers"), "cpuset cpu io memory pids");
    write(&cg.join("cgroup.subtree_control"), "cpu");
    // An intermediate level that already exists, with only some controllers.
    write(&cg.join("berth/cgroup.controllers"), "cpu memory pids");
    write(&cg.join("berth/cgroup.subtree_control"), "");
    let m = Manager::with_sources(root, V2_SAMPLE, "0::/\n", Some("/berth/c1"), "c1").unwrap();
    assert_eq!(m.layout(), Layout::V2);
    let dir = cg.join("berth/c1");
    assert_eq!(m.unified_path().unwrap(), dir);
    m.create().unwrap();
    assert!(dir.is_dir());
    // Only the missing ones are added.
    assert_eq!(
        read(&cg.join("cgroup.subtree_control")),
        "+cpuset +io +memory +pids"
    );
    assert_eq!(
        read(&cg.join("berth/cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert!(m.v2_dir_fd().is_some());

    for f in [
        "memory.max",
        "memory.swap.max",
        "memory.low",
        "cpu.weight",
        "cpu.max",
        "pids.max",
        "io.weight",
        "io.max",
        "cpuset.cpus",
        "cpuset.mems",
        "memory.high",
        "cgroup.procs",
    ] {
        write(&dir.join(f), "");
    }
    let r = resources(serde_json::json!({
        "memory": {"limit": 104857600, "swap": 209715200, "reservation": 52428800},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 0},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "unified": {"memory.high": "90000000"}
    }));
    m.apply(&r).unwrap();
    assert_eq!(read(&dir.join("memory.max")), "104857600");
    assert_eq!(read(&dir.join("memory.swap.max")), "104857600");
    assert_eq!(read(&dir.join("memory.low")), "52428800");
    assert_eq!(read(&dir.join("cpu.weight")), "39");
    assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
    assert_eq!(read(&dir.join("pids.max")), "max");
    assert_eq!(read(&dir.join("io.weight")), "default 4950");
    assert_eq!(read(&dir.join("io.max")), "8:0 rbps=1048576");
    assert_eq!(read(&dir.join("cpuset.cpus")), "0");
    assert_eq!(read(&dir.join("memory.high")), "90000000");

    m.add_pid(4242).unwrap();
    assert_eq!(read(&dir.join("cgroup.procs")), "4242");

    // Errors name the problem.
    let e = m
        .apply(&resources(
            serde_json::json!({"memory": {"limit": 1048576}}),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("memory limit too low"), "{e}");
    // memory.checkBeforeUpdate (set through the type: oci-spec 0.10 spells its JSON name
    // check_before_update).
    write(&dir.join("memory.current"), "50000000");
    let mut r = resources(serde_json::json!({"memory": {"limit": 40000000}}));
    r.memory_mut()
        .as_mut()
        .unwrap()
        .set_check_before_update(Some(true));
    let e = m.apply(&r).unwrap_err();
    assert!(
        e.to_string()
            .contains("below the container's current usage 50000000"),
        "{e}"
    );
    // (Plain files keep old bytes past a shorter write; cgroup files do not.)
    write(&dir.join("memory.max"), "");
    m.apply(&resources(
        serde_json::json!({"memory": {"limit": 40000000}}),
    ))
    .unwrap();
    assert_eq!(read(&dir.join("memory.max")), "40000000");
    let e = m
        .apply(&resources(
            serde_json::json!({"unified": {"cgroup.procs": "1"}}),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("cgroup core file"), "{e}");
    let e = m
        .apply(&resources(serde_json::json!({"unified": {"../x.y": "1"}})))
        .unwrap_err();
    assert!(e.to_string().contains("invalid key"), "{e}");
    let e = m
        .apply(&resources(
            serde_json::json!({"unified": {"misc.max": "1"}}),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("misc controller"), "{e}");
    let e = m
        .apply(&resources(
            serde_json::json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("hugepage size \"3MB\""), "{e}");

    // destroy removes the directory tree (plain files in the fake tree have to go first).
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::create_dir(dir.join("nested")).unwrap();
    m.destroy().unwrap();
    assert!(!dir.exists());
    assert!(cg.join("berth").exists());
}

#[test]
fn v1_device_rule_strings() {
    let rule = |allow, t, maj, min, acc: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(allow);
        d.set_typ(t);
        d.set_major(maj);
        d.set_minor(min);
        d.set_access(Some(acc.to_string()));
        devices::normalize(&d)
            .unwrap()
            .map(|r| r.v1_strings().join("\n"))
    };
    assert_eq!(rule(false, None, None, None, "rwm").as_deref(), Some("a"));
    assert_eq!(
        rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rw").as_deref(),
        Some("c 1:3 rw")
    );
    assert_eq!(
        rule(true, Some(LinuxDeviceType::B), None, Some(-1), "m").as_deref(),
        Some("b *:* m")
    );
    assert_eq!(
        rule(true, Some(LinuxDeviceType::U), Some(136), None, "rwm").as_deref(),
        Some("c 136:* rwm")
    );
    assert_eq!(
        rule(true, Some(LinuxDeviceType::P), None, None, "rwm"),
        None
    );
    let mut bad = LinuxDeviceCgroup::default();
    bad.set_access(Some("x".into()));
    assert!(devices::normalize(&bad).is_err());
}

/// A tiny interpreter for the instructions the device program uses, so the program's
/// decisions can be checked without a kernel.
fn run_program(prog: &[u64], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
    let ctx = [typ | (access << 16), major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let code = (i & 0xff) as u8;
        let dst = ((i >> 8) & 0xf) as usize;
        let src = ((i >> 12) & 0xf) as usize;
        let off = ((i >> 16) & 0xffff) as u16 as i16;
        let imm = (i >> 32) as u32 as i32;
        pc += 1;
        match code {
            0x61 => r[dst] = u64::from(ctx[off as usize / 4]),
            0x54 => r[dst] = u64::from((r[dst] as u32) & (imm as u32)),
            0x74 => r[dst] = u64::from((r[dst] as u32) >> imm),
            0xbc => r[dst] = u64::from(r[src] as u32),
            0xb7 => r[dst] = imm as i64 as u64,
            0x55 => {
                if r[dst] != imm as i64 as u64 {
                    pc = (pc as i64 + off as i64) as usize
                }
            }
            0x5d => {
                if r[dst] != r[src] {
                    pc = (pc as i64 + off as i64) as usize
                }
            }
            0x95 => return r[0],
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}

#[test]
fn device_program_decides_like_the_rules() {
    let mut rules: Vec<LinuxDeviceCgroup> =
        vec![serde_json::from_value(serde_json::json!({"allow": false, "access": "rwm"})).unwrap()];
    rules.extend(devices::default_allowed());
    rules.push(
        serde_json::from_value(
            serde_json::json!({"allow": false, "type": "c", "major": 1, "minor": 9, "access": "w"}),
        )
        .unwrap(),
    );
    let prog = devices::program(&rules).unwrap();
    let (chr, blk) = (2, 1);
    let (m, r, w) = (1, 2, 4);
    // /dev/null read+write allowed.
    assert_eq!(run_program(&prog, chr, r | w, 1, 3), 1);
    // mknod of anything allowed, reading a disk not.
    assert_eq!(run_program(&prog, blk, m, 8, 0), 1);
    assert_eq!(run_program(&prog, blk, r, 8, 0), 0);
    // pty slaves by major wildcard minor.
    assert_eq!(run_program(&prog, chr, r | w, 136, 7), 1);
    // Later deny of urandom write wins; read still allowed.
    assert_eq!(run_program(&prog, chr, w, 1, 9), 0);
    assert_eq!(run_program(&prog, chr, r, 1, 9), 1);
    // Unlisted char device denied.
    assert_eq!(run_program(&prog, chr, r, 10, 200), 0);
    // Allow-all then nothing else: everything allowed.
    let all: Vec<LinuxDeviceCgroup> =
        vec![serde_json::from_value(serde_json::json!({"allow": true, "access": "rwm"})).unwrap()];
    let prog = devices::program(&all).unwrap();
    assert_eq!(run_program(&prog, blk, r | w | m, 8, 0), 1);
    // Encoding of one instruction: r0 = 1 is 0xb7 with imm 1.
    assert_eq!(insn(0xb7, 0, 0, 0, 1), 0x0000_0001_0000_00b7);
    assert_eq!(insn(0x61, 4, 1, 4, 0), 0x0000_0000_0004_1461);
    let _ = PathBuf::new();
}

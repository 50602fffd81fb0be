//! The cgroup manager against the host's real cgroups (run as root). Every test makes its own
//! uniquely named cgroup and a guard that kills its processes and removes the cgroups, even
//! when the test panics.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_runtime::cgroups::{self, Layout, Manager};
use oci_spec::runtime::LinuxResources;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "berth-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Owns a manager, the processes a test started, and any extra directories to remove.
struct Guard {
    mgr: Manager,
    children: Vec<Child>,
    extra_dirs: Vec<PathBuf>,
}

impl Guard {
    fn new(path: &str) -> Guard {
        let mgr = Manager::new(Some(path), "unused").expect("manager");
        let g = Guard {
            mgr,
            children: Vec::new(),
            extra_dirs: Vec::new(),
        };
        g.mgr.create().expect("create cgroups");
        g
    }

    /// Starts `busybox sh -c script` and moves it into the cgroup before it reads its first
    /// stdin line, so everything it does after that happens inside.
    fn spawn(&mut self, script: &str) -> (i32, ChildStdin, BufReader<ChildStdout>) {
        let mut child = Command::new("/bin/busybox")
            .args(["sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn busybox");
        let pid = child.id() as i32;
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        self.children.push(child);
        self.mgr.add_pid(pid).expect("add_pid");
        (pid, stdin, stdout)
    }

    fn apply(&self, json: serde_json::Value) {
        let r: LinuxResources = serde_json::from_value(json).unwrap();
        self.mgr.apply(&r).expect("apply");
    }

    fn apply_err(&self, json: serde_json::Value) -> String {
        let r: LinuxResources = serde_json::from_value(json).unwrap();
        self.mgr.apply(&r).unwrap_err().to_string()
    }

    fn wait_last(&mut self) -> std::process::ExitStatus {
        let c = self.children.last_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "child did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.mgr.thaw();
        let _ = self.mgr.kill_all(libc::SIGKILL);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let start = Instant::now();
        while !self.mgr.pids().unwrap_or_default().is_empty()
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = self.mgr.destroy() {
            eprintln!("cleanup: {e}");
        }
        for d in self.extra_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// One line of the child's output; fails the test instead of hanging after 30 s.
fn line(out: &mut BufReader<ChildStdout>) -> String {
    use std::os::fd::AsRawFd;
    if out.buffer().is_empty() {
        let mut pfd = libc::pollfd {
            fd: out.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 30_000) };
        assert!(n > 0, "no output from the child within 30 s");
    }
    let mut s = String::new();
    out.read_line(&mut s).unwrap();
    s.trim().to_string()
}

/// Sends one shell command to a `while read` loop and returns its one-line answer.
fn ask(stdin: &mut ChildStdin, out: &mut BufReader<ChildStdout>, cmd: &str) -> String {
    writeln!(stdin, "{cmd}").unwrap();
    stdin.flush().unwrap();
    line(out)
}

const SERVE: &str = "while read -r l; do eval \"$l\"; done";

fn is_fs(path: &str, magic: i64) -> bool {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: statfs is plain data.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == magic }
}

#[test]
fn cgroups_detect_agrees_with_statfs() {
    const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;
    let want = if is_fs("/sys/fs/cgroup", CGROUP2_SUPER_MAGIC) {
        Layout::V2
    } else if is_fs("/sys/fs/cgroup/unified", CGROUP2_SUPER_MAGIC) {
        Layout::Hybrid
    } else {
        Layout::V1
    };
    assert_eq!(cgroups::detect().unwrap(), want);
}

fn layout() -> Layout {
    cgroups::detect().unwrap()
}

/// The file holding `v1_file` of `ctrl` (v1/hybrid) or `v2_file` (v2).
fn file(g: &Guard, ctrl: &str, v1_file: &str, v2_file: &str) -> PathBuf {
    match g.mgr.v1_path(ctrl) {
        Some(d) if layout() != Layout::V2 => d.join(v1_file),
        _ => g.mgr.unified_path().unwrap().join(v2_file),
    }
}

#[test]
fn cgroups_memory_limit_is_written_and_enforced_by_oom_kill() {
    let mut g = Guard::new(&format!("/{}", unique("mem")));
    g.apply(serde_json::json!({"memory": {"limit": 33554432, "reservation": 16777216}}));
    assert_eq!(
        read(&file(&g, "memory", "memory.limit_in_bytes", "memory.max")),
        "33554432"
    );
    assert_eq!(
        read(&file(
            &g,
            "memory",
            "memory.soft_limit_in_bytes",
            "memory.low"
        )),
        "16777216"
    );
    assert!(!g.mgr.oom_killed().unwrap());
    // dd's 128 MiB buffer is touched by the read from /dev/zero: far over the limit.
    let (_pid, mut stdin, _out) =
        g.spawn("read -r l; exec /bin/busybox dd if=/dev/zero of=/dev/null bs=128M count=1");
    writeln!(stdin, "go").unwrap();
    let status = g.wait_last();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(g.mgr.oom_killed().unwrap());
    let stats = g.mgr.stats().unwrap();
    assert!(stats.memory.oom_kill >= 1);
    assert!(stats.memory.usage.failcnt > 0);
}

#[test]
fn cgroups_memory_errors_name_the_problem() {
    let mut g = Guard::new(&format!("/{}", unique("memlow")));
    let e = g.apply_err(serde_json::json!({"memory": {"limit": 4096}}));
    assert!(
        e.contains("memory limit too low") && e.contains("4096"),
        "{e}"
    );
    if layout() == Layout::V2 {
        return;
    }
    let e = g.apply_err(serde_json::json!({"memory": {"limit": 67108864, "swappiness": 200}}));
    assert!(e.contains("swappiness"), "{e}");
    // Lowering the limit below what the cgroup uses (no swap to push it to): EBUSY.
    g.apply(serde_json::json!({"memory": {"limit": 268435456}}));
    let (_pid, mut stdin, mut out) = g.spawn(&format!(
        "read -r l; x=$(/bin/busybox head -c 50000000 /dev/zero | /bin/busybox tr '\\0' a); echo held; {SERVE}"
    ));
    writeln!(stdin, "go").unwrap();
    assert_eq!(line(&mut out), "held");
    let e = g.apply_err(serde_json::json!({"memory": {"limit": 10485760}}));
    assert!(
        e.contains("unable to set memory limit to 10485760 (current usage:"),
        "{e}"
    );
    g.apply(serde_json::json!({"memory": {"swappiness": 10, "disableOOMKiller": true}}));
    let d = g.mgr.v1_path("memory").unwrap();
    assert_eq!(read(&d.join("memory.swappiness")), "10");
    assert!(read(&d.join("memory.oom_control")).contains("oom_kill_disable 1"));
}

#[test]
fn cgroups_pids_limit_stops_a_fork_loop() {
    let mut g = Guard::new(&format!("/{}", unique("pids")));
    g.apply(serde_json::json!({"pids": {"limit": 5}}));
    assert_eq!(read(&file(&g, "pids", "pids.max", "pids.max")), "5");
    // The subshell forks until the kernel refuses (ash then gives up with "can't fork").
    let (_pid, mut stdin, mut out) = g.spawn(
        "read -r l; ( i=0; while [ $i -lt 20 ]; do /bin/busybox sleep 1000 </dev/null >/dev/null 2>&1 & i=$((i+1)); done ); echo end; read -r l",
    );
    writeln!(stdin, "go").unwrap();
    assert_eq!(line(&mut out), "end");
    let pids = g.mgr.pids().unwrap();
    // The shell and the sleeps that fit next to it and the (now gone) subshell.
    assert_eq!(pids.len(), 4, "{pids:?}");
    let events = read(&file(&g, "pids", "pids.events", "pids.events"));
    let refused: u64 = events
        .strip_prefix("max ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 1, "pids.events: {events}");
    let stats = g.mgr.stats().unwrap();
    assert_eq!(stats.pids.current, 4);
    assert_eq!(stats.pids.limit, 5);
    // 0 and negative mean no limit.
    g.apply(serde_json::json!({"pids": {"limit": -1}}));
    assert_eq!(read(&file(&g, "pids", "pids.max", "pids.max")), "max");
}

#[test]
fn cgroups_cpu_quota_files_and_throttling() {
    let mut g = Guard::new(&format!("/{}", unique("cpu")));
    g.apply(serde_json::json!({"cpu": {"shares": 512, "quota": 10000, "period": 100000}}));
    if layout() == Layout::V2 {
        let d = g.mgr.unified_path().unwrap();
        assert_eq!(read(&d.join("cpu.max")), "10000 100000");
        assert_eq!(read(&d.join("cpu.weight")), "20");
    } else {
        let d = g.mgr.v1_path("cpu").unwrap();
        assert_eq!(read(&d.join("cpu.cfs_quota_us")), "10000");
        assert_eq!(read(&d.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&d.join("cpu.shares")), "512");
    }
    // A busy loop for one second gets about a tenth of a CPU.
    let (_pid, mut stdin, _out) = g.spawn("read -r l; while :; do :; done");
    writeln!(stdin, "go").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let before = g.mgr.stats().unwrap().cpu.usage.total;
    std::thread::sleep(Duration::from_millis(1000));
    let used = g.mgr.stats().unwrap().cpu.usage.total - before;
    assert!(used > 20_000_000, "the loop ran {used} ns");
    assert!(used < 400_000_000, "quota not enforced: {used} ns in 1 s");
    assert!(g.mgr.stats().unwrap().cpu.throttling.throttled_periods > 0);
    // Unlimited again.
    g.apply(serde_json::json!({"cpu": {"quota": -1}}));
    if layout() != Layout::V2 {
        let d = g.mgr.v1_path("cpu").unwrap();
        assert_eq!(read(&d.join("cpu.cfs_quota_us")), "-1");
        // Out-of-range shares are reported with the kernel's bound.
        let e = g.apply_err(serde_json::json!({"cpu": {"shares": 1}}));
        assert!(e.contains("minimum allowed cpu-shares is 2"), "{e}");
    }
}

#[test]
fn cgroups_cpuset_is_copied_down_and_applied() {
    let top = unique("cpuset");
    let mut g = Guard::new(&format!("/{top}/a/b"));
    for d in g.mgr.dirs() {
        let a = d.parent().unwrap().to_path_buf();
        g.extra_dirs.push(a.parent().unwrap().to_path_buf());
        g.extra_dirs.push(a);
    }
    g.extra_dirs
        .sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    g.extra_dirs.reverse();
    if let Some(d) = g.mgr.v1_path("cpuset") {
        let root = Path::new("/sys/fs/cgroup/cpuset");
        assert_eq!(
            read(&d.join("cpuset.cpus")),
            read(&root.join("cpuset.cpus"))
        );
        assert_eq!(
            read(&d.join("cpuset.mems")),
            read(&root.join("cpuset.mems"))
        );
    }
    let (pid, _stdin, _out) = g.spawn("read -r l");
    g.apply(serde_json::json!({"cpu": {"cpus": "0", "mems": "0"}}));
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    let allowed = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .unwrap();
    assert!(allowed.ends_with("\t0"), "{allowed}");
}

fn cpu_ticks(pid: i32) -> u64 {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn cgroups_freeze_stops_a_process_and_thaw_resumes_it() {
    let mut g = Guard::new(&format!("/{}", unique("freeze")));
    let (pid, mut stdin, _out) = g.spawn("read -r l; while :; do :; done");
    writeln!(stdin, "go").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!g.mgr.is_frozen().unwrap());
    g.mgr.freeze().unwrap();
    assert!(g.mgr.is_frozen().unwrap());
    if let Some(d) = g.mgr.v1_path("freezer") {
        assert_eq!(read(&d.join("freezer.state")), "FROZEN");
    }
    let a = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(cpu_ticks(pid), a, "a frozen process used CPU");
    g.mgr.thaw().unwrap();
    assert!(!g.mgr.is_frozen().unwrap());
    std::thread::sleep(Duration::from_millis(400));
    assert!(cpu_ticks(pid) > a, "the thawed process did not run");
}

fn wait_empty(m: &Manager) {
    let start = Instant::now();
    while !m.pids().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running: {:?}",
            m.pids()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cgroups_kill_all_reaches_children_and_orphans() {
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let mut g = Guard::new(&format!("/{}", unique("killall")));
        let (_pid, mut stdin, mut out) = g.spawn(
            "read -r l; (/bin/busybox sleep 1000 &); /bin/busybox sleep 1000 & /bin/busybox sh -c '/bin/busybox sleep 1000 & wait' & echo ready; wait",
        );
        writeln!(stdin, "go").unwrap();
        assert_eq!(line(&mut out), "ready");
        let start = Instant::now();
        while g.mgr.pids().unwrap().len() < 5 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{:?}",
                g.mgr.pids()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        g.mgr.kill_all(sig).unwrap();
        g.wait_last();
        wait_empty(&g.mgr);
        assert!(!g.mgr.is_frozen().unwrap());
    }
}

#[test]
fn cgroups_stats_are_plausible() {
    let mut g = Guard::new(&format!("/{}", unique("stats")));
    g.apply(serde_json::json!({"memory": {"limit": 268435456}, "pids": {"limit": 100}}));
    let (_pid, mut stdin, mut out) = g.spawn(&format!(
        "read -r l; x=$(/bin/busybox head -c 30000000 /dev/zero | /bin/busybox tr '\\0' a); echo held; {SERVE}"
    ));
    writeln!(stdin, "go").unwrap();
    assert_eq!(line(&mut out), "held");
    let s = g.mgr.stats().unwrap();
    assert!(s.memory.usage.usage > 30_000_000, "{:?}", s.memory.usage);
    assert!(s.memory.usage.max >= s.memory.usage.usage);
    assert_eq!(s.memory.usage.limit, 268435456);
    assert!(s.cpu.usage.total > 0);
    assert!(s.pids.current >= 1);
    assert_eq!(s.pids.limit, 100);
    let v = serde_json::to_value(&s).unwrap();
    for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    assert_eq!(v["memory"]["usage"]["limit"], 268435456);
    assert!(v["memory"]["raw"].is_object());
}

#[test]
fn cgroups_v1_device_rules_deny_and_allow() {
    if layout() == Layout::V2 {
        return; // the eBPF test covers v2
    }
    let mut g = Guard::new(&format!("/{}", unique("dev")));
    let (_pid, mut stdin, mut out) = g.spawn(SERVE);
    let probe = "if echo x > /dev/null 2>/dev/null; then echo yes; else echo no; fi";
    assert_eq!(ask(&mut stdin, &mut out, probe), "yes");
    g.apply(serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}));
    let d = g.mgr.v1_path("devices").unwrap();
    assert_eq!(read(&d.join("devices.list")), "");
    assert_eq!(ask(&mut stdin, &mut out, probe), "no");
    let mut rules = vec![serde_json::json!({"allow": false, "access": "rwm"})];
    rules.extend(
        cgroups::devices::default_allowed()
            .iter()
            .map(|r| serde_json::to_value(r).unwrap()),
    );
    g.apply(serde_json::json!({ "devices": rules }));
    assert!(read(&d.join("devices.list")).contains("c 1:3 rwm"));
    assert_eq!(ask(&mut stdin, &mut out, probe), "yes");
    // A later deny of one access wins.
    g.apply(serde_json::json!({"devices": [
        {"allow": true, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}
    ]}));
    assert_eq!(ask(&mut stdin, &mut out, probe), "no");
    assert_eq!(
        ask(
            &mut stdin,
            &mut out,
            "if cat /dev/null; then echo yes; else echo no; fi"
        ),
        "yes"
    );
}

#[test]
fn cgroups_ebpf_device_program_is_enforced_on_cgroup2() {
    let mut g = Guard::new(&format!("/{}", unique("bpf")));
    let Some(u) = g.mgr.unified_path().map(Path::to_path_buf) else {
        eprintln!("no cgroup2 hierarchy on this host: skipped");
        return;
    };
    let (_pid, mut stdin, mut out) = g.spawn(SERVE);
    let probe = "if echo x > /dev/null 2>/dev/null; then echo yes; else echo no; fi";
    let zero = "if (: < /dev/zero) 2>&-; then echo yes; else echo no; fi";
    assert_eq!(ask(&mut stdin, &mut out, probe), "yes");
    let rules = |json: serde_json::Value| -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
        serde_json::from_value(json).unwrap()
    };
    cgroups::devices::apply_bpf(
        &u,
        &rules(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
        ])),
    )
    .unwrap();
    assert_eq!(ask(&mut stdin, &mut out, probe), "no");
    assert_eq!(ask(&mut stdin, &mut out, zero), "yes");
    // Replacing the program: null allowed, zero not.
    cgroups::devices::apply_bpf(
        &u,
        &rules(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}
        ])),
    )
    .unwrap();
    assert_eq!(ask(&mut stdin, &mut out, probe), "yes");
    assert_eq!(ask(&mut stdin, &mut out, zero), "no");
    if layout() == Layout::V2 {
        g.apply(serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}));
        assert_eq!(ask(&mut stdin, &mut out, probe), "no");
    }
}

#[test]
fn cgroups_relative_path_is_under_own_cgroup() {
    let rel = unique("rel");
    let mut g = Guard::new(&rel);
    let own = read(Path::new("/proc/self/cgroup"));
    let (pid, _stdin, _out) = g.spawn("read -r l");
    let child = read(Path::new(&format!("/proc/{pid}/cgroup")));
    for l in own.lines() {
        let mut p = l.splitn(3, ':');
        let (_, ctrls, path) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
        if ctrls.starts_with("name=") && ctrls != "name=systemd" {
            continue;
        }
        let want = format!("{}/{rel}", path.trim_end_matches('/'));
        let child_line = child
            .lines()
            .find(|c| c.split(':').nth(1) == Some(ctrls))
            .unwrap();
        assert!(
            child_line.ends_with(&format!(":{want}")),
            "{child_line} vs {want}"
        );
        if let Some(d) = ctrls.split(',').next().and_then(|c| g.mgr.v1_path(c)) {
            assert!(d.ends_with(want.trim_start_matches('/')), "{}", d.display());
        }
    }
}

#[test]
fn cgroups_destroy_removes_nested_dirs_and_tolerates_missing_ones() {
    let g = Guard::new(&format!("/{}", unique("destroy")));
    for d in g.mgr.dirs() {
        assert!(d.is_dir());
        std::fs::create_dir_all(d.join("inner/deeper")).unwrap();
    }
    g.mgr.destroy().unwrap();
    for d in g.mgr.dirs() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    g.mgr.destroy().unwrap();
}

#[test]
fn cgroups_saved_manager_controls_the_same_cgroups() {
    let mut g = Guard::new(&format!("/{}", unique("saved")));
    let (pid, _stdin, _out) = g.spawn("read -r l");
    let again = Manager::from_saved(&g.mgr.to_saved()).unwrap();
    assert_eq!(again.pids().unwrap(), vec![pid]);
    // A cgroup2 directory to clone into: pure v2 and hybrid's unified hierarchy.
    assert_eq!(again.v2_dir_fd().is_some(), layout() != Layout::V1);
}

#[test]
fn cgroups_hugetlb_limit_goes_where_the_controller_is() {
    let g = Guard::new(&format!("/{}", unique("huge")));
    g.apply(serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}));
    let f = match g.mgr.v1_path("hugetlb") {
        Some(d) => d.join("hugetlb.2MB.limit_in_bytes"),
        None => g.mgr.unified_path().unwrap().join("hugetlb.2MB.max"),
    };
    assert_eq!(read(&f), "4194304");
    let e = g.apply_err(serde_json::json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}));
    assert!(e.contains("3MB") && e.contains("2MB"), "{e}");
}

#[test]
fn cgroups_unified_map_writes_cgroup2_files_only() {
    let g = Guard::new(&format!("/{}", unique("unified")));
    match layout() {
        Layout::V1 => {
            let e = g.apply_err(serde_json::json!({"unified": {"memory.high": "1000000"}}));
            assert!(e.contains("require cgroup v2"), "{e}");
        }
        Layout::Hybrid => {
            let u = g.mgr.unified_path().unwrap();
            if u.join("hugetlb.2MB.max").exists() {
                g.apply(serde_json::json!({"unified": {"hugetlb.2MB.max": "2097152"}}));
                assert_eq!(read(&u.join("hugetlb.2MB.max")), "2097152");
            }
            let e = g.apply_err(serde_json::json!({"unified": {"memory.high": "1000000"}}));
            assert!(e.contains("require cgroup v2"), "{e}");
        }
        Layout::V2 => {
            g.apply(serde_json::json!({"unified": {"memory.high": "100000000"}}));
            let u = g.mgr.unified_path().unwrap();
            assert_eq!(read(&u.join("memory.high")), "100000000");
        }
    }
    let e = g.apply_err(serde_json::json!({"unified": {"cgroup.procs": "1"}}));
    assert!(e.contains("cgroup core file"), "{e}");
}

/// major:minor of some block device on this host.
fn a_block_device() -> Option<(u64, u64)> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|n| n.starts_with("loop"));
    let dev = read(&Path::new("/sys/block").join(names.first()?).join("dev"));
    let (a, b) = dev.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[test]
fn cgroups_block_io_throttles_are_written() {
    let Some((maj, min)) = a_block_device() else {
        eprintln!("no block device: skipped");
        return;
    };
    let g = Guard::new(&format!("/{}", unique("blkio")));
    g.apply(serde_json::json!({"blockIO": {
        "throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 100}]
    }}));
    if layout() == Layout::V2 {
        let io = read(&g.mgr.unified_path().unwrap().join("io.max"));
        assert!(io.contains(&format!("{maj}:{min} rbps=1048576")), "{io}");
        assert!(io.contains("wiops=100"), "{io}");
    } else {
        let d = g.mgr.v1_path("blkio").unwrap();
        assert_eq!(
            read(&d.join("blkio.throttle.read_bps_device")),
            format!("{maj}:{min} 1048576")
        );
        assert_eq!(
            read(&d.join("blkio.throttle.write_iops_device")),
            format!("{maj}:{min} 100")
        );
    }
}

#[test]
fn cgroups_swap_and_realtime_limits() {
    let g = Guard::new(&format!("/{}", unique("swap")));
    g.apply(serde_json::json!({"memory": {"limit": 67108864, "swap": 134217728}}));
    match layout() {
        Layout::V2 => {
            let d = g.mgr.unified_path().unwrap();
            if d.join("memory.swap.max").exists() {
                assert_eq!(read(&d.join("memory.swap.max")), "67108864");
            }
        }
        _ => {
            let d = g.mgr.v1_path("memory").unwrap();
            if d.join("memory.memsw.limit_in_bytes").exists() {
                // OCI swap is memory+swap, which is what memsw means.
                assert_eq!(read(&d.join("memory.memsw.limit_in_bytes")), "134217728");
            }
            assert_eq!(read(&d.join("memory.limit_in_bytes")), "67108864");
            // Raising both: memsw has to grow first, or the kernel refuses.
            g.apply(serde_json::json!({"memory": {"limit": 201326592, "swap": 268435456}}));
            assert_eq!(read(&d.join("memory.limit_in_bytes")), "201326592");
            // Unlimited memory takes unlimited swap along.
            g.apply(serde_json::json!({"memory": {"limit": -1}}));
            assert!(
                read(&d.join("memory.limit_in_bytes"))
                    .parse::<u64>()
                    .unwrap()
                    > 1 << 60
            );
        }
    }
    let e = g.apply_err(serde_json::json!({"memory": {"limit": 67108864, "swap": 33554432}}));
    assert!(e.contains("must be at least the memory limit"), "{e}");
    if let Some(d) = g.mgr.v1_path("cpu") {
        if d.join("cpu.rt_runtime_us").exists() {
            g.apply(
                serde_json::json!({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}}),
            );
            assert_eq!(read(&d.join("cpu.rt_period_us")), "1000000");
            assert_eq!(read(&d.join("cpu.rt_runtime_us")), "10000");
        }
    }
}

/// clone3(CLONE_INTO_CGROUP) with the runtime's own wrapper: the child is born in the
/// cgroup `cg_fd` and execs `sleep`.
fn clone_into_cgroup(cg_fd: &std::os::fd::OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    let prog = c"/bin/busybox";
    let argv = [c"sleep".as_ptr(), c"1000".as_ptr(), std::ptr::null()];
    let pid = berth_runtime::sys::clone3(0, Some(cg_fd.as_raw_fd())).expect("clone3");
    if pid == 0 {
        // SAFETY: the child only execs, or _exits if that fails.
        unsafe {
            libc::execv(prog.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    pid
}

/// The v2 code paths on a hybrid host: in a private mount namespace the cgroup2 hierarchy
/// (the one normally at /sys/fs/cgroup/unified) is mounted on /sys/fs/cgroup, which makes
/// it a pure-v2 layout with only the controllers cgroup2 has here (hugetlb) plus the core
/// features: freezing, cgroup.kill, eBPF devices, CLONE_INTO_CGROUP.
#[test]
fn cgroups_v2_paths_on_the_cgroup2_hierarchy() {
    if std::env::var_os("BERTH_CGROUPS_V2_SIM").is_some() {
        v2_sim_inside();
        return;
    }
    if layout() != Layout::Hybrid {
        eprintln!("not a hybrid host: the other tests cover this layout");
        return;
    }
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cgroups_v2_paths_on_the_cgroup2_hierarchy",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_CGROUPS_V2_SIM", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

fn v2_sim_inside() {
    let none: Option<&str> = None;
    nix::mount::mount(
        Some("cgroup2"),
        "/sys/fs/cgroup",
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        none,
    )
    .expect("mounting cgroup2 on /sys/fs/cgroup");
    assert_eq!(layout(), Layout::V2);
    let name = unique("v2sim");
    let mut g = Guard::new(&format!("/{name}"));
    let dir = g.mgr.unified_path().unwrap().to_path_buf();
    assert_eq!(dir, Path::new("/sys/fs/cgroup").join(&name));
    assert!(g.mgr.v1_path("memory").is_none());
    assert!(read(Path::new("/sys/fs/cgroup/cgroup.subtree_control")).contains("hugetlb"));

    // Born in the cgroup.
    let fd = g.mgr.v2_dir_fd().expect("an O_PATH fd on v2");
    let born = clone_into_cgroup(&fd);
    let cg = read(Path::new(&format!("/proc/{born}/cgroup")));
    assert!(cg.lines().any(|l| l == format!("0::/{name}")), "{cg}");

    let (pid, mut stdin, mut out) = g.spawn(SERVE);
    assert_eq!(g.mgr.pids().unwrap(), {
        let mut v = vec![born, pid];
        v.sort();
        v
    });

    // Limits: hugetlb is here, memory is not (the error names the file).
    g.apply(serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}));
    assert_eq!(read(&dir.join("hugetlb.2MB.max")), "2097152");
    let e = g.apply_err(serde_json::json!({"memory": {"limit": 67108864}}));
    assert!(e.contains("memory.max"), "{e}");
    let e = g.apply_err(serde_json::json!({"unified": {"memory.high": "1"}}));
    assert!(e.contains("memory controller is not enabled"), "{e}");

    // Devices through the eBPF program, via apply as the runtime does it.
    let probe = "if (echo x > /dev/null) 2>&-; then echo yes; else echo no; fi";
    assert_eq!(ask(&mut stdin, &mut out, probe), "yes");
    let mut rules = vec![serde_json::json!({"allow": false, "access": "rwm"})];
    rules.extend(
        cgroups::devices::default_allowed()
            .iter()
            .map(|r| serde_json::to_value(r).unwrap()),
    );
    rules.push(
        serde_json::json!({"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}),
    );
    g.apply(serde_json::json!({ "devices": rules }));
    assert_eq!(ask(&mut stdin, &mut out, probe), "no");
    g.apply(serde_json::json!({"devices": [{"allow": true, "access": "rwm"}]}));
    assert_eq!(ask(&mut stdin, &mut out, probe), "yes");

    // cgroup.freeze.
    g.mgr.freeze().unwrap();
    assert!(g.mgr.is_frozen().unwrap());
    assert!(read(&dir.join("cgroup.events")).contains("frozen 1"));
    g.mgr.thaw().unwrap();
    assert!(!g.mgr.is_frozen().unwrap());
    assert_eq!(ask(&mut stdin, &mut out, "echo alive"), "alive");

    // Stats from cpu.stat, present without the cpu controller.
    assert!(g.mgr.stats().unwrap().cpu.usage.total > 0);

    // cgroup.kill reaches both processes.
    g.mgr.kill_all(libc::SIGKILL).unwrap();
    let mut status = 0;
    // SAFETY: reaping our own clone3 child.
    unsafe { libc::waitpid(born, &mut status, 0) };
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    g.wait_last();
    wait_empty(&g.mgr);
    drop(g);
    assert!(!dir.exists());
}

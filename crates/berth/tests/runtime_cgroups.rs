//! Cgroup limits from config.json, applied through the runtime and enforced on the container:
//! memory (OOM kill) and pids (fork bomb stops at pids.max).

mod runtime_common;
use runtime_common::*;
use serde_json::json;

#[test]
fn memory_limit_is_enforced_by_the_oom_killer() {
    let mut rt = Rt::new();
    let limit = 32 * 1024 * 1024;
    rt.config["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    rt.args(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo rc=$?",
    ]);
    let out = rt.run_ok("oom");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], limit.to_string());
    assert_eq!(
        l[1], "rc=137",
        "a 64 MiB allocation survived a 32 MiB limit: {out}"
    );
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let mut rt = Rt::new();
    rt.config["linux"]["resources"]["pids"] = json!({"limit": 16});
    // Only shell builtins after the bomb: at the limit nothing can fork, not even `cat`.
    rt.args(&[
        "sh",
        "-c",
        "p=/sys/fs/cgroup/pids; [ -d $p ] || p=/sys/fs/cgroup; read m < $p/pids.max; echo $m; \
         (for i in $(seq 40); do sleep 2 & done) 2>/dev/null; \
         read c < $p/pids.current; echo $c; read e < $p/pids.events; echo $e",
    ]);
    let out = rt.run_ok("pids");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "16");
    let n: u32 = l[1].trim().parse().unwrap();
    assert!(n <= 16, "{n} processes under pids.max 16");
    assert!(n >= 10, "the fork bomb barely forked: {n}");
    let failed: u32 = l[2].split_whitespace().last().unwrap().parse().unwrap();
    assert!(failed > 0, "no fork was refused: {out}");
}

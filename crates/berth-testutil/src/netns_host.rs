//! A private "host" for tests that change networking: the test binary re-executes itself
//! for one test under `unshare --net --mount --pid --fork --mount-proc --propagation
//! private`, so the machine's namespace, addresses, routes, `ip_forward` and nftables rules
//! are never touched, and every process the test starts dies with its PID namespace.

use std::process::{Command, Stdio};

/// Runs `test` of the current test binary alone inside a fresh private host, with
/// `marker=test` in its environment (the test checks it to know it is inside), and panics
/// unless it passed. With `reaper`, PID 1 in there is a busybox shell that reaps the orphans
/// the test leaves (monitors whose berth exited) while the test runs.
pub fn run_in_private_host(test: &str, marker: &str, reaper: bool) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--net",
        "--mount",
        "--pid",
        "--fork",
        "--mount-proc",
        "--propagation",
        "private",
    ]);
    if reaper {
        cmd.args(["busybox", "sh", "-c", "\"$0\" \"$@\"; rc=$?; exit $rc"]);
    }
    let out = cmd
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(marker, test)
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed inside its test host ({})",
        out.status
    );
}

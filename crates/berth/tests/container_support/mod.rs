//! Shared fixture for the container tests: a real registry with busybox
//! pushed, a private berth root with the image pulled, and a guard that
//! removes containers, unmounts and deletes everything even on failure.
#![allow(dead_code)]

use berth_testutil::{fixtures, push, PushOpts, Registry};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The OCI runtime the tests drive: None for berth's own (the `berth-runtime` built beside
/// `berth`, linked in where berth links it), unless `$BERTH_RUNTIME` names another (for
/// instance `runc`, to compare).
pub fn runtime() -> Option<String> {
    match std::env::var("BERTH_RUNTIME") {
        Ok(r) if !r.is_empty() && r != "berth" => Some(r),
        _ => None,
    }
}

/// Points `c` at the runtime the tests drive.
pub fn set_runtime(c: &mut Command) {
    match runtime() {
        Some(r) => c.env("BERTH_RUNTIME", r),
        None => c.env_remove("BERTH_RUNTIME"),
    };
}

/// The default `--network` of every berth these tests start (container_network.rs, whose tests
/// run inside network namespaces of their own, removes it to get berth's default bridge).
pub const NETWORK: &str = "none";

pub struct Env {
    pub root: PathBuf,
    pub image: String,
    _tmp: tempfile::TempDir,
    _reg: Registry,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("berth-ctr-test-")
            .tempdir()
            .unwrap();
        let reg = Registry::start().expect("registry");
        let layout = tmp.path().join("layout");
        fixtures::busybox_layout(&layout).expect("busybox layout");
        let image = format!("{}/busybox:latest", reg.addr());
        push(&layout, "latest", &image, &PushOpts::default()).expect("push");
        let env = Env {
            root: tmp.path().join("root"),
            image,
            _tmp: tmp,
            _reg: reg,
        };
        let out = env.berth(&["pull", "-q", &env.image]);
        assert!(out.status.success(), "pull: {}", text(&out.stderr));
        env
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BERTH);
        c.arg("--root").arg(&self.root);
        set_runtime(&mut c);
        // These tests run in the machine's own network namespace: no bridge, no NAT rules there.
        // The bridge tests (container_network.rs) run inside private test hosts instead.
        c.env("BERTH_DEFAULT_NETWORK", NETWORK);
        c.stdin(Stdio::null());
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running berth")
    }

    /// Runs berth and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}): {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        if !out.stderr.is_empty() {
            eprintln!("berth {args:?} stderr: {}", text(&out.stderr));
        }
        text(&out.stdout)
    }

    /// `berth run --rm IMAGE ARGS...` output (asserting success).
    pub fn run(&self, flags: &[&str], cmd: &[&str]) -> String {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(flags);
        a.push(&self.image);
        a.extend_from_slice(cmd);
        self.ok(&a)
    }

    pub fn inspect(&self, c: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", c])).unwrap();
        v[0].clone()
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// A container's transient files (the default --runroot of a custom --root).
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.root.join("run/containers").join(id)
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < timeout, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Mount points at or below `prefix`, deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = prefix.to_string_lossy().to_string();
    let mut v: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| m.replace("\\040", " ")))
        .filter(|m| m.starts_with(&p))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(out) = self.cmd().args(["ps", "-aq", "--no-trunc"]).output() {
            for id in text(&out.stdout).split_whitespace() {
                let _ = self.cmd().args(["rm", "-f", "-v", id]).output();
            }
        }
        // Anything the runtime still knows of under our root.
        let state = self.root.join("run/runtime");
        let rt = runtime().unwrap_or_else(|| env!("CARGO_BIN_EXE_berth-runtime").into());
        if let Ok(rd) = std::fs::read_dir(&state) {
            for e in rd
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            {
                let _ = Command::new(&rt)
                    .arg("--root")
                    .arg(&state)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .output();
            }
        }
        for m in mounts_under(&self.root) {
            let c = std::ffi::CString::new(m).unwrap();
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

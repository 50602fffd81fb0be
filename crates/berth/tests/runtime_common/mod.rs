//! Test support for the runtime tests: a temp `--root`, a busybox bundle with a config from
//! `berth-runtime spec`, and a Drop guard that force-deletes every container it made.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A runtime root + bundle; deletes its containers and files on drop.
pub struct Rt {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub config: Value,
    ids: Vec<String>,
}

impl Rt {
    /// A fresh root and a busybox bundle with `berth-runtime spec`'s config (terminal off).
    pub fn new() -> Rt {
        let tmp = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().join("root");
        let bundle = tmp.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        berth_testutil::rootfs::busybox_rootfs(&bundle.join("rootfs")).expect("busybox rootfs");
        let out = Command::new(BIN)
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let mut rt = Rt {
            tmp,
            root,
            bundle,
            config,
            ids: vec![],
        };
        rt.config["process"]["terminal"] = json!(false);
        rt
    }

    /// A unique container id.
    pub fn id(&mut self, name: &str) -> String {
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        self.ids.push(id.clone());
        id
    }

    /// Sets process.args.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Writes the config to the bundle.
    pub fn write(&self) {
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// A runtime command with `--root` set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(&self.root);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `berth-runtime --root R ARGS`.
    pub fn rt(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Foreground `run` of the current config: (exit code, stdout, stderr).
    pub fn run(&mut self, name: &str) -> (i32, String, String) {
        self.write();
        let id = self.id(name);
        let out = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(&id)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Foreground run that must exit 0; returns stdout.
    pub fn run_ok(&mut self, name: &str) -> String {
        let (code, out, err) = self.run(name);
        assert_eq!(code, 0, "run failed: stdout={out} stderr={err}");
        out
    }

    /// Runs a command whose container outlives it (create, run -d, exec -d): the container
    /// inherits the command's stdio, so it goes to /dev/null and a file instead of pipes that
    /// would never reach end-of-file. Returns (success, stderr).
    pub fn bg(&self, args: &[&str]) -> (bool, String) {
        let path = self.path(&format!(
            "stderr-{}",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&path).unwrap();
        let st = self
            .cmd()
            .args(args)
            .stdout(Stdio::null())
            .stderr(f)
            .status()
            .unwrap();
        (
            st.success(),
            std::fs::read_to_string(&path).unwrap_or_default(),
        )
    }

    /// The bundle path as a str.
    pub fn b(&self) -> String {
        self.bundle.display().to_string()
    }

    /// `create` of the current config; returns the id. Panics on failure.
    pub fn create(&mut self, name: &str) -> String {
        self.write();
        let id = self.id(name);
        let (ok, err) = self.bg(&["create", "--bundle", &self.b(), &id]);
        assert!(ok, "create failed: {err}");
        id
    }

    /// `run -d` of the current config; returns the id. Panics on failure.
    pub fn run_detached(&mut self, name: &str) -> String {
        self.write();
        let id = self.id(name);
        let (ok, err) = self.bg(&["run", "-d", "--bundle", &self.b(), &id]);
        assert!(ok, "run -d failed: {err}");
        id
    }

    /// The state JSON of `id`.
    pub fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]);
        assert!(
            out.status.success(),
            "state failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `exec` in `id`: (code, stdout, stderr).
    pub fn exec(&self, id: &str, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().arg("exec").arg(id).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits until `id` reports `status` (up to 5 s).
    pub fn wait_status(&self, id: &str, status: &str) {
        for _ in 0..500 {
            if self.state(id)["status"] == status {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{id} never reached {status}: {}", self.state(id));
    }

    /// A path in the temp dir.
    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// The rootfs.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Appends a mount to the config.
    pub fn mount(&mut self, m: Value) -> &mut Self {
        self.config["mounts"].as_array_mut().unwrap().push(m);
        self
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.rt(&["delete", "--force", id]);
        }
    }
}

/// Asserts that a runtime command succeeded (showing its stderr otherwise); returns its stderr.
pub fn succeeded(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// The inode of one of our own namespaces.
pub fn host_ns(name: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{name}"))
        .unwrap()
        .display()
        .to_string()
}

/// True if `path` exists on the host.
pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

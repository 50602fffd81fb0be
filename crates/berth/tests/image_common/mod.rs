//! Shared helpers for the image integration tests: a `berth` with its own
//! root in a temp dir, driven as a subprocess, and fixture registries.
#![allow(dead_code)]

use berth_testutil::guards::MountGuard;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A berth root (and a HOME without Docker credentials) in temp dirs.
pub struct Berth {
    pub root: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Berth {
    pub fn new() -> Berth {
        Berth {
            root: tempfile::Builder::new()
                .prefix("berth-image-test")
                .tempdir()
                .unwrap(),
            home: tempfile::tempdir().unwrap(),
            env: vec![],
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn store(&self) -> PathBuf {
        self.root().join("image")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH);
        c.arg("--root").arg(self.root()).args(args);
        c.env("HOME", self.home.path())
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("BERTH_INSECURE_REGISTRIES")
            .env_remove("BERTH_ROOT");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running berth")
    }

    /// Starts berth with its output piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.cmd(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting berth")
    }

    /// Pulls and returns `image inspect` of what was pulled.
    pub fn pull_inspect(&self, name: &str) -> serde_json::Value {
        self.ok(&["pull", name]);
        self.inspect(name)
    }

    /// Runs berth, expects success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed with {}:\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs berth, expects exit 125, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(125),
            "berth {args:?} should fail with 125:\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.starts_with("berth: "), "{stderr}");
        stderr
    }

    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let out = self.ok(&["image", "inspect", image]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// Entries in the store directory `sub` (e.g. "layers", "tmp").
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store().join(sub))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Mounts the image with `berth image mount`; unmounted on Drop of the guard.
    pub fn mount(&self, image: &str) -> (PathBuf, MountGuard) {
        let out = self.ok(&["image", "mount", image]);
        let path = PathBuf::from(out.trim());
        let guard = MountGuard::new(path.clone());
        (path, guard)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        // Whatever a failed test left mounted under the root.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root().to_string_lossy().into_owned();
        for line in mounts.lines() {
            if let Some(mp) = line.split(' ').nth(4) {
                if mp.starts_with(&root) {
                    let _ = MountGuard::new(mp);
                }
            }
        }
    }
}

/// A registry holding tags of a fixture layout: `(layout tag, "repo:tag")`.
pub fn registry_with(
    build: fn(&Path) -> anyhow::Result<()>,
    pushes: &[(&str, &str)],
) -> (berth_testutil::Registry, tempfile::TempDir) {
    let reg = berth_testutil::Registry::start().unwrap();
    let l = layout(build);
    for (tag, dest) in pushes {
        reg.push(&layout_path(&l), tag, dest, None).unwrap();
    }
    (reg, l)
}

/// Builds a fixture layout into a temp dir.
pub fn layout(build: fn(&Path) -> anyhow::Result<()>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("layout");
    build(&p).unwrap();
    d
}

pub fn layout_path(d: &tempfile::TempDir) -> PathBuf {
    d.path().join("layout")
}

/// The merged view of an image's layers through `berth image mount`,
/// compared with `umoci unpack` of the same layout tag.
pub fn assert_same_as_umoci(b: &Berth, image: &str, layout: &Path, tag: &str) {
    let umoci_dir = tempfile::tempdir().unwrap();
    let rootfs =
        berth_testutil::umoci_unpack(layout, tag, &umoci_dir.path().join("bundle")).unwrap();
    let (merged, mut guard) = b.mount(image);
    let ours = berth_testutil::tree_snapshot(&merged);
    let theirs = berth_testutil::tree_snapshot(&rootfs);
    let opts = berth_testutil::tree::DiffOpts {
        // overlayfs shows the merged dirs' own mtimes; umoci sets them from the tar.
        ignore_dir_mtime: true,
        ..Default::default()
    };
    let diff = berth_testutil::tree::diff_trees_with(&theirs, &ours, &opts);
    b.ok(&["image", "unmount", image]);
    assert!(
        !berth_testutil::guards::is_mountpoint(&merged),
        "still mounted"
    );
    guard.unmount().unwrap();
    assert!(
        diff.is_empty(),
        "berth's merged layers differ from umoci unpack:\n{}",
        diff.join("\n")
    );
    assert!(!ours.is_empty(), "the merged tree is empty");
}

/// Pushes a layout's single-image tag byte for byte with the registry API
/// (skopeo recompresses uncompressed layers on the way to a registry).
pub fn push_raw(addr: &str, layout: &Path, tag: &str, repo: &str, dest_tag: &str) -> String {
    use berth_testutil::http::http_request;
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("tag in layout")
        .clone();
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let digest = desc["digest"].as_str().unwrap().to_string();
    let manifest_bytes = blob(&digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for l in manifest["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in blobs {
        let r = http_request(
            addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
        let loc = r.header("Location").unwrap().to_string();
        let path = loc
            .split_once("://")
            .map(|(_, rest)| &rest[rest.find('/').unwrap()..])
            .unwrap_or(&loc)
            .to_string();
        let sep = if path.contains('?') { '&' } else { '?' };
        let body = blob(&d);
        let r = http_request(
            addr,
            "PUT",
            &format!("{path}{sep}digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            &body,
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let r = http_request(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{dest_tag}"),
        &[("Content-Type", desc["mediaType"].as_str().unwrap())],
        &manifest_bytes,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    digest
}

//! The berth-fixture binary: a foreground registry and pushing fixtures.

use berth_testutil::http::http_get;
use berth_testutil::registry::free_port;
use berth_testutil::ChildGuard;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth-fixture");

fn wait_ready(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(addr, "/v2/", &[]).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry at {addr} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs berth-fixture, asserts success, returns trimmed stdout.
fn fixture_ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "berth-fixture {args:?}: {err}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn registry_and_push_busybox() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["registry", "--dir"])
        .arg(tmp.path())
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _g = ChildGuard::new(child);
    wait_ready(&addr);
    let digest = fixture_ok(&["push-busybox", &format!("{addr}/library/busybox:latest")]);
    assert!(digest.starts_with("sha256:"), "{digest}");
    let r = http_get(
        &addr,
        &format!("/v2/library/busybox/manifests/{digest}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(tmp
        .path()
        .join("storage/docker/registry/v2/repositories/library/busybox")
        .is_dir());

    let d2 = fixture_ok(&[
        "push",
        "multiarch",
        &format!("{addr}/multi:latest"),
        "--format",
        "oci",
    ]);
    assert!(d2.starts_with("sha256:"), "{d2}");
}

#[test]
fn bad_usage_is_refused() {
    let out = Command::new(BIN)
        .args(["layout", "nope", "/tmp/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown fixture"));
    let out = Command::new(BIN)
        .args(["registry", "--port", "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dir is required"));
}

#[test]
fn layout_writes_an_oci_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("big");
    let st = Command::new(BIN)
        .args(["layout", "big"])
        .arg(&out)
        .args(["--files", "120", "--bytes", "500000"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(out.join("index.json").is_file());
    assert!(out.join("oci-layout").is_file());
}

//! Pulls that go wrong: corrupt and cut blobs, failing and vanishing
//! registries, berth killed mid-pull, concurrent pulls.

mod image_common;

use berth_testutil::fixtures::{self, LayoutWriter, Platform};
use berth_testutil::tarw::Entry;
use berth_testutil::{ChildGuard, FaultConfig, FaultProxy, Registry};
use image_common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Two tiny layers ("a", "b") and a 6 MiB incompressible one ("big").
fn small_small_big_layers(w: &mut LayoutWriter, seed: u64) -> anyhow::Result<[fixtures::Layer; 3]> {
    let gz = fixtures::Compression::Gzip;
    let a = w.write_layer_entries(gz, &[Entry::file("a", 0o644, b"a\n".to_vec())])?;
    let b = w.write_layer_entries(gz, &[Entry::file("b", 0o644, b"b\n".to_vec())])?;
    let big = fixtures::pseudo_random(seed, 6 << 20);
    let big = w.write_layer_entries(gz, &[Entry::file("big", 0o644, big)])?;
    Ok([a, b, big])
}

/// One image of the three layers, tag `latest`.
fn small_small_big(out: &Path) -> anyhow::Result<()> {
    let mut w = LayoutWriter::create(out)?;
    let layers = small_small_big_layers(&mut w, 7)?;
    let m = w.write_image(
        &Platform::host(),
        serde_json::json!({"Cmd": ["sh"]}),
        &layers,
    )?;
    w.tag("latest", &m);
    w.finish()
}

/// Tag `x`: layers [a, b]; tag `y`: the same [a, b] plus the big one.
fn x_and_y(out: &Path) -> anyhow::Result<()> {
    let mut w = LayoutWriter::create(out)?;
    let layers = small_small_big_layers(&mut w, 9)?;
    let x = w.write_image(
        &Platform::host(),
        serde_json::json!({"Cmd": ["x"]}),
        &layers[..2],
    )?;
    let y = w.write_image(
        &Platform::host(),
        serde_json::json!({"Cmd": ["y"]}),
        &layers,
    )?;
    w.tag("x", &x);
    w.tag("y", &y);
    w.finish()
}

/// A layer whose config lists the wrong diff_id.
fn wrong_diff_id(out: &Path) -> anyhow::Result<()> {
    let mut w = LayoutWriter::create(out)?;
    let mut a = w.write_layer_entries(
        fixtures::Compression::Gzip,
        &[Entry::file("a", 0o644, b"a\n".to_vec())],
    )?;
    a.diff_id = format!("sha256:{}", "1".repeat(64));
    let m = w.write_image(&Platform::host(), serde_json::json!({"Cmd": ["sh"]}), &[a])?;
    w.tag("latest", &m);
    w.finish()
}

/// Layer digests of a layout's tag, in manifest order.
fn layer_digests(layout: &Path, tag: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn assert_store_empty(b: &Berth) {
    assert!(
        b.entries("layers").is_empty(),
        "layers: {:?}",
        b.entries("layers")
    );
    assert!(
        b.entries("blobs/sha256").is_empty(),
        "blobs: {:?}",
        b.entries("blobs/sha256")
    );
    assert!(
        b.entries("images").is_empty(),
        "images: {:?}",
        b.entries("images")
    );
    assert!(b.entries("tmp").is_empty(), "tmp: {:?}", b.entries("tmp"));
    assert_eq!(b.ok(&["images", "-q"]), "");
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn corrupt_blobs_fail_naming_the_blob_and_leave_nothing() {
    let (reg, l) = registry_with(fixtures::busybox_layout, &[("latest", "bb:latest")]);
    let layer = layer_digests(&layout_path(&l), "latest")[0].clone();
    let b = Berth::new();

    // The config passes (the "cut" never triggers on it); the layer is corrupt.
    let proxy = FaultProxy::builder(&reg.addr())
        .cut_blobs_after(1 << 30, 1)
        .corrupt_blobs(100)
        .start()
        .unwrap();
    let name = format!("{}/bb:latest", proxy.addr());
    let err = b.fails(&["pull", &name]);
    assert!(
        err.contains(&layer) && err.contains("failed verification"),
        "{err}"
    );
    assert!(err.contains(&name), "{err}");
    assert_store_empty(&b);

    // A corrupt config is refused as well.
    proxy.set(FaultConfig {
        corrupt_blobs: 1,
        ..Default::default()
    });
    let err = b.fails(&["pull", &name]);
    assert!(
        err.contains("config") && err.contains("failed verification"),
        "{err}"
    );
    assert_store_empty(&b);

    // And with a healthy registry, the same store pulls fine.
    proxy.set(FaultConfig::default());
    b.ok(&["pull", &name]);
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");
}

#[test]
fn cut_downloads_are_retried_from_the_start_or_fail_cleanly() {
    let (reg, l) = registry_with(fixtures::busybox_layout, &[("latest", "bb:latest")]);
    let b = Berth::new();
    // First blob GET is the config (smaller than the cut), the second the layer.
    let proxy = FaultProxy::builder(&reg.addr())
        .cut_blobs_after(4096, 2)
        .start()
        .unwrap();
    let name = format!("{}/bb:latest", proxy.addr());
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Retrying"), "{out}");
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");
    assert!(b.entries("tmp").is_empty());

    let b2 = Berth::new();
    proxy.set(FaultConfig {
        cut_blob_after: Some(4096),
        cut_times: u32::MAX,
        ..Default::default()
    });
    let err = b2.fails(&["pull", &name]);
    assert!(
        err.contains("broke off") && err.contains("gave up after"),
        "{err}"
    );
    assert_store_empty(&b2);
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let (reg, _l) = registry_with(fixtures::busybox_layout, &[("latest", "bb:latest")]);
    let proxy = FaultProxy::builder(&reg.addr())
        .fail_next(3)
        .start()
        .unwrap();
    let name = format!("{}/bb:latest", proxy.addr());
    let b = Berth::new();
    b.ok(&["pull", &name]);

    let b = Berth::new();
    proxy.set(FaultConfig {
        fail_next: 2,
        fail_status: 429,
        retry_after: 1,
        ..Default::default()
    });
    let t = Instant::now();
    b.ok(&["pull", &name]);
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After not honoured"
    );

    let b = Berth::new();
    proxy.set(FaultConfig {
        fail_next: 1000,
        fail_status: 503,
        ..Default::default()
    });
    let err = b.fails(&["pull", &name]);
    assert!(
        err.contains("answered 503") && err.contains("try again later"),
        "{err}"
    );
    assert_store_empty(&b);
}

#[test]
fn registry_killed_mid_pull_then_repull_fetches_only_missing_layers() {
    let mut reg = Registry::start().unwrap();
    let l = tempfile::tempdir().unwrap();
    small_small_big(l.path()).unwrap();
    reg.push(l.path(), "latest", "ssb:latest", None).unwrap();
    // The big layer never gets through the proxy; the small ones do.
    let proxy = FaultProxy::builder(&reg.addr())
        .cut_blobs_after(64 * 1024, u32::MAX)
        .start()
        .unwrap();
    let name = format!("{}/ssb:latest", proxy.addr());
    let b = Berth::new();
    let child = b.spawn(&["pull", &name]);
    wait_for("the small layers", Duration::from_secs(30), || {
        b.entries("layers").len() >= 2
    });
    reg.kill();
    let out = ChildGuard::new(child)
        .into_inner()
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&name), "{err}");
    assert_eq!(b.ok(&["images", "-q"]), "", "no half-visible image");

    reg.restart().unwrap();
    proxy.set(FaultConfig::default());
    let out = b.ok(&["pull", &name]);
    assert_eq!(out.matches("Already exists").count(), 2, "{out}");
    assert_eq!(out.matches("Pull complete").count(), 1, "{out}");
    assert_same_as_umoci(&b, &name, l.path(), "latest");
    assert!(b.entries("tmp").is_empty());
}

#[test]
fn berth_killed_mid_pull_then_pulled_again() {
    let reg = Registry::start().unwrap();
    let l = tempfile::tempdir().unwrap();
    small_small_big(l.path()).unwrap();
    reg.push(l.path(), "latest", "ssb:latest", None).unwrap();
    let proxy = FaultProxy::builder(&reg.addr())
        .cut_blobs_after(64 * 1024, u32::MAX)
        .start()
        .unwrap();
    let name = format!("{}/ssb:latest", proxy.addr());
    let b = Berth::new();
    let child = b
        .cmd(&["pull", &name])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let guard = ChildGuard::new(child);
    wait_for("the small layers", Duration::from_secs(30), || {
        b.entries("layers").len() >= 2
    });
    // Let it be inside a download of the big layer, then SIGKILL.
    std::thread::sleep(Duration::from_millis(150));
    let pid = guard.id() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let st = guard.into_inner().wait().unwrap();
    assert!(!st.success());
    assert_eq!(b.ok(&["images", "-q"]), "");

    proxy.set(FaultConfig::default());
    let out = b.ok(&["pull", &name]);
    assert_eq!(out.matches("Already exists").count(), 2, "{out}");
    assert!(b.entries("tmp").is_empty(), "{:?}", b.entries("tmp"));
    assert_eq!(b.entries("layers").len(), 3);
    assert_same_as_umoci(&b, &name, l.path(), "latest");
}

#[test]
fn concurrent_pulls_of_same_and_overlapping_images_all_succeed() {
    let (reg, l) = registry_with(
        fixtures::multiarch_layout,
        &[("amd64", "ma-amd64:latest"), ("arm64", "ma-arm64:latest")],
    );
    let b = Berth::new();
    let names: Vec<String> = ["amd64", "amd64", "arm64", "arm64"]
        .iter()
        .map(|a| format!("{}/ma-{a}:latest", reg.addr()))
        .collect();
    let children: Vec<ChildGuard> = names
        .iter()
        .map(|n| ChildGuard::new(b.spawn(&["pull", n])))
        .collect();
    for c in children {
        let out = c.into_inner().wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The base layer is shared: 3 layers for the two images.
    assert_eq!(b.entries("layers").len(), 3, "{:?}", b.entries("layers"));
    assert_eq!(b.entries("images").len(), 2);
    assert!(b.entries("tmp").is_empty());
    assert_same_as_umoci(&b, &names[2], &layout_path(&l), "arm64");
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    let reg = Registry::start().unwrap();
    let l = tempfile::tempdir().unwrap();
    wrong_diff_id(l.path()).unwrap();
    reg.push(l.path(), "latest", "bad:latest", None).unwrap();
    let layer = layer_digests(l.path(), "latest")[0].clone();
    let b = Berth::new();
    let err = b.fails(&["pull", &format!("{}/bad:latest", reg.addr())]);
    assert!(
        err.contains(&layer) && err.contains("the image config says"),
        "{err}"
    );
    assert_store_empty(&b);
}

#[test]
fn rmi_during_a_pull_cannot_delete_the_layers_it_reuses() {
    let reg = Registry::start().unwrap();
    let l = tempfile::tempdir().unwrap();
    x_and_y(l.path()).unwrap();
    reg.push(l.path(), "x", "x:latest", None).unwrap();
    reg.push(l.path(), "y", "y:latest", None).unwrap();
    let b = Berth::new();
    let x = format!("{}/x:latest", reg.addr());
    b.ok(&["pull", &x]);
    assert_eq!(b.entries("layers").len(), 2);

    // y's big layer breaks off twice (the config's GET uses up one cut), so
    // the pull stays busy for a while after it has found a and b in the store.
    let proxy = FaultProxy::builder(&reg.addr())
        .cut_blobs_after(64 * 1024, 3)
        .start()
        .unwrap();
    let y = format!("{}/y:latest", proxy.addr());
    let child = b.spawn(&["pull", &y]);
    let guard = ChildGuard::new(child);
    let lock_count = |b: &Berth| {
        b.entries("locks")
            .iter()
            .filter(|n| n.starts_with("layer-"))
            .count()
    };
    wait_for(
        "the pull to reach the big layer",
        Duration::from_secs(30),
        || lock_count(&b) >= 3,
    );
    let out = b.ok(&["rmi", &x]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(
        b.entries("layers").len(),
        2,
        "a and b are kept while the pull runs"
    );

    let out = guard.into_inner().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("Already exists").count(), 2, "{stdout}");
    assert_same_as_umoci(&b, &y, l.path(), "y");
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn refusals_and_rate_limits_end_in_errors_that_say_what_to_do() {
    let (reg, _l) = registry_with(fixtures::busybox_layout, &[("latest", "bb:latest")]);
    let proxy = FaultProxy::builder(&reg.addr())
        .fail_next_with(1000, 403)
        .start()
        .unwrap();
    let name = format!("{}/bb:latest", proxy.addr());
    let b = Berth::new();
    let err = b.fails(&["pull", &name]);
    assert!(
        err.contains("denied access to") && err.contains(&name),
        "{err}"
    );
    assert!(
        err.contains(&format!("berth login {}", proxy.addr())),
        "{err}"
    );

    proxy.set(FaultConfig {
        fail_next: 1000,
        fail_status: 429,
        retry_after: 1,
        ..Default::default()
    });
    let err = b.fails(&["pull", &name]);
    assert!(
        err.contains("429 Too Many Requests") && err.contains("wait a while"),
        "{err}"
    );
    assert!(err.contains(&name), "{err}");
    assert_store_empty(&b);
}

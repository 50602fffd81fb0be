//! `berth pull` against a real local registry, checked against `umoci unpack`.

mod image_common;

use berth_testutil::{fixtures, PushFormat, Registry};
use image_common::*;

fn pushed(
    reg: &Registry,
    build: fn(&std::path::Path) -> anyhow::Result<()>,
    tag: &str,
    repo: &str,
) -> (tempfile::TempDir, String) {
    let l = layout(build);
    let digest = reg.push(&layout_path(&l), tag, repo, None).unwrap();
    (l, digest)
}

#[test]
fn pull_busybox_matches_umoci_and_second_pull_is_up_to_date() {
    let reg = Registry::start().unwrap();
    let (l, digest) = pushed(
        &reg,
        fixtures::busybox_layout,
        "latest",
        "library/busybox:latest",
    );
    let b = Berth::new();
    let name = format!("{}/library/busybox", reg.addr());
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Using default tag: latest"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    assert_eq!(out.lines().last().unwrap(), format!("{name}:latest"));

    let v = b.inspect(&name);
    assert_eq!(v["RepoTags"][0], format!("{name}:latest"));
    assert_eq!(v["RepoDigests"][0], format!("{name}@{digest}"));
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Architecture"], fixtures::host_arch());
    assert_eq!(v["Config"]["Cmd"][0], "sh");
    assert!(v["Size"].as_u64().unwrap() > 100_000);
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");

    // Nothing left behind, and a second pull downloads nothing.
    assert!(b.entries("tmp").is_empty(), "{:?}", b.entries("tmp"));
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Status: Image is up to date for"), "{out}");
    assert!(!out.contains("Pull complete"), "{out}");
}

#[test]
fn pull_quiet_prints_only_the_digest() {
    let reg = Registry::start().unwrap();
    let (_l, digest) = pushed(&reg, fixtures::busybox_layout, "latest", "bb:1");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let b = Berth::new();
    let name = format!("{}/bb:1", reg.addr());
    let out = b.ok(&["pull", "-q", &name]);
    assert_eq!(out, format!("{digest}\n"));
}

#[test]
fn pull_multilayer_matches_umoci() {
    let reg = Registry::start().unwrap();
    let (l, _) = pushed(&reg, fixtures::multilayer_layout, "latest", "multi:latest");
    let b = Berth::new();
    let name = format!("{}/multi:latest", reg.addr());
    let v = b.pull_inspect(&name);
    assert!(v["Layers"].as_array().unwrap().len() > 1, "{v}");
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");
}

#[test]
fn pull_multiarch_picks_host_platform_or_the_one_asked_for() {
    let reg = Registry::start().unwrap();
    let (l, index_digest) = pushed(&reg, fixtures::multiarch_layout, "latest", "ma:latest");
    let b = Berth::new();
    let name = format!("{}/ma:latest", reg.addr());
    let v = b.pull_inspect(&name);
    assert_eq!(v["Architecture"], fixtures::host_arch());
    // The digest reference is the index's, as with Docker.
    assert_eq!(
        v["RepoDigests"][0],
        format!("{}/ma@{index_digest}", reg.addr())
    );
    {
        let (merged, mut g) = b.mount(&name);
        let arch = std::fs::read_to_string(merged.join("arch")).unwrap();
        b.ok(&["image", "unmount", &name]);
        g.unmount().unwrap();
        assert_eq!(arch, format!("{}\n", fixtures::host_arch()));
    }

    b.ok(&["pull", "--platform", "linux/arm64", &name]);
    let v = b.inspect(&name);
    assert_eq!(v["Architecture"], "arm64");
    assert_same_as_umoci(&b, &name, &layout_path(&l), "arm64");

    let err = b.fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
    assert!(err.contains(&name), "{err}");
    // A single-platform image must be the platform asked for.
    let arm64_only = format!("{}/ma-arm64-only:1", reg.addr());
    reg.push(&layout_path(&l), "arm64", "ma-arm64-only:1", None)
        .unwrap();
    b.ok(&["pull", "--platform", "linux/arm64", &arm64_only]);
    let err = b.fails(&["pull", "--platform", "linux/amd64", &arm64_only]);
    assert!(
        err.contains("linux/amd64") && err.contains("it has: linux/arm64"),
        "{err}"
    );
    let err = b.fails(&["pull", "--platform", "linux", &name]);
    assert!(err.contains("invalid platform"), "{err}");
}

#[test]
fn pull_zstd_layer() {
    let reg = Registry::start().unwrap();
    let _z = pushed(&reg, fixtures::zstd_layout, "latest", "zstd:latest");
    let b = Berth::new();
    let name = format!("{}/zstd:latest", reg.addr());
    let v = b.pull_inspect(&name);
    assert_eq!(
        v["LayerBlobs"][0]["MediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // umoci cannot read zstd: compare with the same content, uncompressed.
    let plain = layout(fixtures::uncompressed_layout);
    assert_same_as_umoci(&b, &name, &layout_path(&plain), "latest");
}

#[test]
fn pull_uncompressed_layer_matches_umoci() {
    let reg = Registry::start().unwrap();
    let l = layout(fixtures::uncompressed_layout);
    push_raw(&reg.addr(), &layout_path(&l), "latest", "plain", "latest");
    let b = Berth::new();
    let name = format!("{}/plain:latest", reg.addr());
    let v = b.pull_inspect(&name);
    assert_eq!(
        v["LayerBlobs"][0]["MediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");
}

#[test]
fn pull_docker_schema2_matches_umoci() {
    let reg = Registry::start().unwrap();
    let l = layout(fixtures::busybox_layout);
    reg.push(
        &layout_path(&l),
        "latest",
        "docker/bb:v2",
        Some(PushFormat::V2s2),
    )
    .unwrap();
    let b = Berth::new();
    let name = format!("{}/docker/bb:v2", reg.addr());
    let v = b.pull_inspect(&name);
    assert_eq!(
        v["ManifestMediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        v["LayerBlobs"][0]["MediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");
}

#[test]
fn pull_by_digest_and_clear_errors() {
    let reg = Registry::start().unwrap();
    let (_l, digest) = pushed(&reg, fixtures::busybox_layout, "latest", "bb:latest");
    let b = Berth::new();
    let by_digest = format!("{}/bb@{digest}", reg.addr());
    let out = b.ok(&["pull", &by_digest]);
    assert_eq!(out.lines().last().unwrap(), by_digest);
    let v = b.inspect(&by_digest);
    assert_eq!(v["RepoTags"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["RepoDigests"][0], by_digest);

    let missing = format!("{}/bb@sha256:{}", reg.addr(), "0".repeat(64));
    let err = b.fails(&["pull", &missing]);
    assert!(
        err.contains("not found") && err.contains("check the image name and tag"),
        "{err}"
    );
    let err = b.fails(&["pull", &format!("{}/bb:nope", reg.addr())]);
    assert!(
        err.contains(&format!("{}/bb:nope", reg.addr())) && err.contains("not found"),
        "{err}"
    );
    let err = b.fails(&["pull", "Bad/Name"]);
    assert!(err.contains("invalid reference \"Bad/Name\""), "{err}");
    let err = b.fails(&["pull", "127.0.0.1:1/nothing:here"]);
    assert!(err.contains("cannot reach registry 127.0.0.1:1"), "{err}");
    assert!(b.entries("tmp").is_empty());
}

/// Answers every request with a 307 to the same path on `target`, the way
/// registries send blob downloads to their storage. Stops when dropped.
struct Redirector {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Redirector {
    fn start(target: String) -> Redirector {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((s, _)) = l.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let mut s = s;
                let _ = write!(
                    s,
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Redirector {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn pull_follows_redirects() {
    let (reg, l) = registry_with(fixtures::busybox_layout, &[("latest", "bb:latest")]);
    // Another host name for the same registry, as blob storage would be.
    let redirect = Redirector::start(format!("localhost:{}", reg.port()));
    let b = Berth::new();
    let name = format!("{}/bb:latest", redirect.addr);
    b.ok(&["pull", &name]);
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");
}

//! The store's commands: images, tag, inspect, rmi, prune, image mount/unmount.

mod image_common;

use berth_testutil::{fixtures, Registry};
use image_common::*;

fn is_hex12(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn images_tag_and_inspect_output() {
    let reg = Registry::start().unwrap();
    let l = layout(fixtures::busybox_layout);
    let digest = reg
        .push(&layout_path(&l), "latest", "bb:latest", None)
        .unwrap();
    let b = Berth::new();
    let name = format!("{}/bb", reg.addr());
    b.ok(&["pull", &format!("{name}:latest")]);

    let out = b.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let head: Vec<&str> = lines[0]
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        head,
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        "{out}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], name);
    assert_eq!(row[1], "latest");
    assert!(is_hex12(row[2]), "{out}");
    assert!(lines[1].contains(" ago"), "{out}");
    assert!(
        row.last().unwrap().ends_with("MB") || row.last().unwrap().ends_with("kB"),
        "{out}"
    );
    let id = row[2].to_string();

    let out = b.ok(&["images", "--digests"]);
    assert!(out.lines().next().unwrap().contains("DIGEST"), "{out}");
    assert!(out.contains(&digest), "{out}");
    assert_eq!(b.ok(&["images", "-q"]), format!("{id}\n"));
    let out = b.ok(&["image", "ls", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["Repository"], name);
    assert_eq!(v["Tag"], "latest");
    assert_eq!(v["ID"], id);
    assert_eq!(v["Digest"], digest);

    b.ok(&["tag", &format!("{name}:latest"), "mine:v1"]);
    b.ok(&["image", "tag", &id, "localhost:5000/other/mine"]);
    let out = b.ok(&["images"]);
    assert!(out.contains("mine ") && out.contains("v1"), "{out}");
    assert!(out.contains("localhost:5000/other/mine"), "{out}");
    assert_eq!(
        b.ok(&["images", "-q"]),
        format!("{id}\n"),
        "one image, three names"
    );
    assert_eq!(b.ok(&["images", "mine"]).lines().count(), 2);

    // inspect by short id, by familiar name, by digest reference.
    for r in [id.as_str(), "mine:v1", &format!("{name}@{digest}")] {
        let v = b.inspect(r);
        assert!(
            v["Id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("sha256:{id}")),
            "{v}"
        );
        let tags = v["RepoTags"].as_array().unwrap();
        assert_eq!(tags.len(), 3, "{v}");
        assert!(tags.iter().any(|t| t == "mine:v1"), "{v}");
        assert_eq!(v["RepoDigests"][0], format!("{name}@{digest}"));
        assert_eq!(v["RootFS"]["Type"], "layers");
        assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 1);
        let dir = v["Layers"][0].as_str().unwrap();
        assert!(
            std::path::Path::new(dir).join("bin/busybox").exists(),
            "{dir}"
        );
        assert_eq!(v["Config"]["Cmd"][0], "sh");
        assert_eq!(v["Os"], "linux");
    }
    let err = b.fails(&["image", "inspect", "nothing:here"]);
    assert!(err.contains("no such image: nothing:here"), "{err}");
    let err = b.fails(&["tag", "nothing", "x"]);
    assert!(err.contains("no such image"), "{err}");
}

#[test]
fn rmi_removes_unused_layers_but_keeps_shared_ones() {
    let (reg, l) = registry_with(
        fixtures::multiarch_layout,
        &[("amd64", "ma-amd64:latest"), ("arm64", "ma-arm64:latest")],
    );
    let b = Berth::new();
    let amd = format!("{}/ma-amd64:latest", reg.addr());
    let arm = format!("{}/ma-arm64:latest", reg.addr());
    b.ok(&["pull", &amd]);
    let out = b.ok(&["pull", &arm]);
    assert!(
        out.contains("Already exists"),
        "shared base layer reused: {out}"
    );
    assert_eq!(b.entries("layers").len(), 3);
    let blobs_before = b.entries("blobs/sha256").len();

    // A second name: rmi of one name only untags.
    b.ok(&["tag", &arm, "arm:extra"]);
    assert_eq!(b.ok(&["rmi", "arm:extra"]), "Untagged: arm:extra\n");
    assert_eq!(b.entries("layers").len(), 3);

    // A mounted image is held.
    let (_merged, mut g) = b.mount(&arm);
    let err = b.fails(&["rmi", &arm]);
    assert!(
        err.contains("in use") && err.contains("berth image unmount"),
        "{err}"
    );
    b.ok(&["image", "unmount", &arm]);
    g.unmount().unwrap();

    let out = b.ok(&["rmi", &arm]);
    assert!(out.contains(&format!("Untagged: {arm}")), "{out}");
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(
        b.entries("layers").len(),
        2,
        "arm64's own layer removed, base kept"
    );
    assert!(b.entries("blobs/sha256").len() < blobs_before);
    assert_same_as_umoci(&b, &amd, &layout_path(&l), "amd64");

    let err = b.fails(&["rmi", &arm]);
    assert!(err.contains("no such image"), "{err}");
    b.ok(&["image", "rm", &amd]);
    assert!(b.entries("layers").is_empty());
    assert!(
        b.entries("blobs/sha256").is_empty(),
        "{:?}",
        b.entries("blobs/sha256")
    );
    assert_eq!(b.ok(&["images", "-q"]), "");
}

#[test]
fn prune_removes_dangling_then_all() {
    let (reg, l) = registry_with(fixtures::multiarch_layout, &[("amd64", "x:1")]);
    reg.push(&layout_path(&l), "arm64", "y:1", None).unwrap();
    let b = Berth::new();
    let x = format!("{}/x:1", reg.addr());
    let y = format!("{}/y:1", reg.addr());
    b.ok(&["pull", &x]);
    b.ok(&["pull", &y]);
    // Re-point x:1 at y's image: the old one is dangling.
    b.ok(&["tag", &y, &x]);
    let out = b.ok(&["images"]);
    assert!(out.contains("<none>"), "{out}");
    let out = b.ok(&["image", "prune"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(b.entries("layers").len(), 2);
    let out = b.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(b.ok(&["images", "-q"]), "");
    assert!(b.entries("layers").is_empty());
}

#[test]
fn image_mount_is_idempotent_and_unmount_cleans_up() {
    let (reg, _l) = registry_with(fixtures::multilayer_layout, &[("latest", "ml:latest")]);
    let b = Berth::new();
    let name = format!("{}/ml:latest", reg.addr());
    b.ok(&["pull", &name]);
    let (merged, mut g) = b.mount(&name);
    assert!(berth_testutil::guards::is_mountpoint(&merged));
    assert!(merged.starts_with(b.store().join("mounts")));
    assert_eq!(
        b.ok(&["image", "mount", &name]).trim(),
        merged.to_str().unwrap()
    );
    // Read-only.
    assert!(std::fs::write(merged.join("new-file"), b"x").is_err());
    b.ok(&["image", "unmount", &name]);
    assert!(!berth_testutil::guards::is_mountpoint(&merged));
    assert!(!merged.exists());
    g.unmount().unwrap();
    let err = b.fails(&["image", "unmount", &name]);
    assert!(err.contains("not mounted"), "{err}");
    // No hold left: the image can be removed.
    b.ok(&["rmi", &name]);
}

/// 50 one-file layers: too many for absolute lowerdir paths in one page.
fn fifty_layers(out: &std::path::Path) -> anyhow::Result<()> {
    use berth_testutil::fixtures::{Compression, LayoutWriter, Platform};
    use berth_testutil::tarw::Entry;
    let mut w = LayoutWriter::create(out)?;
    let mut layers = vec![];
    for i in 0..50 {
        layers.push(w.write_layer_entries(
            Compression::Gzip,
            &[Entry::file(
                format!("f{i:02}"),
                0o644,
                format!("{i}\n").into_bytes(),
            )],
        )?);
    }
    let m = w.write_image(
        &Platform::host(),
        serde_json::json!({"Cmd": ["sh"]}),
        &layers,
    )?;
    w.tag("latest", &m);
    w.finish()
}

#[test]
fn image_mount_with_many_layers() {
    let reg = Registry::start().unwrap();
    let l = layout(fifty_layers);
    reg.push(&layout_path(&l), "latest", "many:latest", None)
        .unwrap();
    let b = Berth::new();
    let name = format!("{}/many:latest", reg.addr());
    b.ok(&["pull", &name]);
    assert_eq!(b.entries("layers").len(), 50);
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");
}

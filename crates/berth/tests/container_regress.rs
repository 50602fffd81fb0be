//! Regression guards for what a hostile review of berth found sound and must stay so: many
//! containers, a full disk during a pull, symlinks planted in volumes.

mod container_support;
use container_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted at `dir`, unmounted on drop (also after a failed assertion).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "berth-test"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn two_hundred_containers_stay_listable() {
    let env = Env::new();
    for i in 0..200 {
        env.ok(&["create", "--name", &format!("c{i}"), &env.image, "true"]);
    }
    let start = Instant::now();
    let out = env.ok(&["ps", "-aq"]);
    let took = start.elapsed();
    assert_eq!(out.lines().count(), 200);
    // A loose guard against a listing that reads or spawns per container; the figure to
    // meet (~20 ms) is a benchmark's, not a test's.
    assert!(took < Duration::from_secs(2), "ps -a took {took:?}");
    let ids: Vec<String> = out.lines().map(String::from).collect();
    let mut args = vec!["rm"];
    args.extend(ids.iter().map(String::as_str));
    env.ok(&args);
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

#[test]
fn a_full_disk_during_a_pull_leaves_a_store_that_works_once_there_is_room() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // Smaller than the unpacked busybox image (about 2 MiB).
    let fs = Tmpfs::mount(&root, "600k");
    let berth = |args: &[&str]| {
        let mut c = Command::new(BERTH);
        c.arg("--root").arg(&root).args(args);
        c.env("BERTH_DEFAULT_NETWORK", NETWORK);
        set_runtime(&mut c);
        c.output().unwrap()
    };
    let out = berth(&["pull", "-q", &env.image]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("No space left on device"),
        "{}",
        text(&out.stderr)
    );
    // No image record points at a partial layer.
    let out = berth(&["images", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    // With room, the same store pulls and runs the image.
    let st = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let out = berth(&["pull", "-q", &env.image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = berth(&["run", "--rm", &env.image, "cat", "/bin/busybox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.len() > 100_000);
    drop(fs);
}

#[test]
fn a_symlink_planted_in_a_volume_stays_inside_the_container() {
    let env = Env::new();
    let name = format!("escape-{}", std::process::id());
    let host_file = Path::new("/etc").join(&name);
    env.ok(&["volume", "create", "planted"]);
    // One container plants links to the host's /etc, by absolute and relative paths.
    env.run(
        &["-v", "planted:/data"],
        &[
            "sh",
            "-c",
            "ln -s /etc /data/abs && ln -s ../../../../../../etc /data/rel",
        ],
    );
    // Another writes through them: the links resolve in its own root, never the host's.
    let script =
        format!("echo x > /data/abs/{name} && echo y > /data/rel/{name} && cat /etc/{name}");
    let out = env.run(&["-v", "planted:/data"], &["sh", "-c", &script]);
    assert_eq!(out, "y\n");
    assert!(
        !host_file.exists(),
        "{} was written on the host",
        host_file.display()
    );
    env.ok(&["volume", "rm", "planted"]);
}

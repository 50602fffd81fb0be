//! Hardening: `rmi` racing `run`, records that cannot be read, holds whose holder is gone, and
//! `run --rm` killed before its container started.

mod container_support;
use container_support::*;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The number of entries in `/bin` of the test image, as a fresh container sees it.
fn bin_entries(env: &Env) -> String {
    env.run(&[], &["sh", "-c", "ls /bin | wc -l"])
        .trim()
        .to_string()
}

/// Whether a process with this pid exists (and is not a zombie).
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|st| st != 'Z')
}

/// Cuts a file to its first `keep` bytes, as a crash of the filesystem (or a person) might.
fn truncate(p: &Path, keep: usize) {
    let b = std::fs::read(p).unwrap();
    std::fs::write(p, &b[..keep.min(b.len())]).unwrap();
}

/// `berth run -d --pull never IMG sleep` against `other` (rmi, image prune, container prune),
/// many times with `other` started at different points of the `run`: a container that runs
/// sees its whole root (the layers rmi would delete), or the run fails cleanly (125, naming
/// the image, nothing left behind); while a container runs, rmi refuses.
fn race_run_against(other: &[&str]) {
    let env = Env::new();
    let want = bin_entries(&env);
    assert!(want.parse::<u32>().unwrap() > 10, "/bin has {want} entries");
    let other: Vec<&str> = other
        .iter()
        .map(|a| if *a == "IMG" { env.image.as_str() } else { a })
        .collect();
    let mut ran = 0;
    let mut refused = 0;
    for i in 0..30u64 {
        if env.berth(&["image", "inspect", &env.image]).status.code() != Some(0) {
            env.ok(&["pull", "-q", &env.image]);
        }
        let run = env
            .cmd()
            .args(["run", "-d", "--pull", "never", &env.image, "sleep", "300"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros((i % 10) * 1500));
        let raced = env.berth(&other);
        let run = run.wait_with_output().unwrap();
        if run.status.success() {
            ran += 1;
            let id = text(&run.stdout).trim().to_string();
            let seen = env.ok(&["exec", &id, "sh", "-c", "ls /bin | wc -l"]);
            assert_eq!(
                seen.trim(),
                want,
                "race {i}: the running container lost its root ({other:?}: {} {}{})",
                raced.status,
                text(&raced.stdout),
                text(&raced.stderr)
            );
            // rmi refuses while the container holds the image.
            if env
                .berth(&["image", "inspect", &env.image])
                .status
                .success()
            {
                let again = env.berth(&["rmi", &env.image]);
                assert_eq!(
                    again.status.code(),
                    Some(125),
                    "race {i}: rmi of a held image: {}",
                    text(&again.stdout)
                );
                assert!(
                    text(&again.stderr).contains("in use"),
                    "{}",
                    text(&again.stderr)
                );
            }
            let seen = env.ok(&["exec", &id, "sh", "-c", "ls /bin | wc -l"]);
            assert_eq!(seen.trim(), want, "race {i}: after a second rmi");
            env.ok(&["rm", "-f", &id]);
        } else {
            refused += 1;
            assert_eq!(
                run.status.code(),
                Some(125),
                "race {i}: {}",
                text(&run.stderr)
            );
            let err = text(&run.stderr);
            assert!(
                err.contains("busybox") || err.contains("sha256:"),
                "race {i}: the message names the image: {err}"
            );
        }
        assert_eq!(
            env.ok(&["ps", "-aq"]),
            "",
            "race {i}: nothing is left of the run"
        );
    }
    eprintln!("{other:?}: {ran} runs started, {refused} refused");
}

#[test]
fn rmi_racing_run_never_deletes_a_running_containers_layers() {
    race_run_against(&["rmi", "IMG"]);
}

#[test]
fn image_prune_racing_run_never_deletes_a_running_containers_layers() {
    race_run_against(&["image", "prune", "-a", "-f"]);
}

/// `container prune` removes stopped containers, never one a `run` is starting.
#[test]
fn container_prune_racing_run_spares_the_starting_container() {
    race_run_against(&["container", "prune", "-f"]);
}

/// `rm -f NAME` racing `run -d --name NAME`: the run starts the container (which rm may then
/// remove) or fails as berth (125), never with a program's exit code; nothing is left.
#[test]
fn rm_racing_run_fails_cleanly_or_removes_a_started_container() {
    let env = Env::new();
    for i in 0..30u64 {
        let run = env
            .cmd()
            .args(["run", "-d", "--name", "racer", &env.image, "sleep", "300"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros((i % 10) * 1500));
        let rm = env.berth(&["rm", "-f", "racer"]);
        let run = run.wait_with_output().unwrap();
        assert!(
            matches!(run.status.code(), Some(0) | Some(125)),
            "race {i}: run exited {} ({}); rm -f: {} {}",
            run.status,
            text(&run.stderr),
            rm.status,
            text(&rm.stderr)
        );
        let _ = env.berth(&["rm", "-f", "racer"]);
        assert_eq!(env.ok(&["ps", "-aq"]), "", "race {i}");
        assert!(
            mounts_under(&env.root.join("run")).is_empty(),
            "race {i}: {:?}",
            mounts_under(&env.root)
        );
    }
}

/// A truncated container record is reported and skipped by every listing; `rm -f` removes
/// it by name or id, stopping its processes and unmounting its root.
#[test]
fn corrupt_container_record_is_skipped_and_removable() {
    let env = Env::new();
    let good = env
        .ok(&["run", "-d", "--name", "good", &env.image, "sleep", "300"])
        .trim()
        .to_string();
    let mut victims = vec![];
    for name in ["bad1", "bad2"] {
        let id = env
            .ok(&["run", "-d", "--name", name, &env.image, "sleep", "300"])
            .trim()
            .to_string();
        let st = env.inspect(&id);
        let pid = st["State"]["Pid"].as_i64().unwrap();
        assert!(pid > 0 && alive(pid));
        let cfg = env.container_dir(&id).join("config.json");
        truncate(&cfg, 37);
        victims.push((name, id, pid, cfg));
    }
    for args in [
        &["ps"][..],
        &["ps", "-a"],
        &["ps", "-aq", "--no-trunc"],
        &["system", "df"],
        &["container", "prune", "-f"],
    ] {
        let out = env.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            text(&out.stderr)
        );
        let (o, e) = (text(&out.stdout), text(&out.stderr));
        for (name, id, _, cfg) in &victims {
            assert!(!o.contains(&id[..12]) && !o.contains(name), "{args:?}: {o}");
            assert!(
                e.contains(&cfg.display().to_string()),
                "{args:?} names the corrupt record: {e}"
            );
        }
        if args[0] == "ps" {
            assert!(o.contains(&good[..12]), "{args:?}: {o}");
        }
    }
    // By name, then by id.
    for (key, (_, id, pid, _)) in ["bad1", &victims[1].1.clone()].iter().zip(&victims) {
        let out = env.berth(&["rm", "-f", key]);
        assert!(out.status.success(), "rm -f {key}: {}", text(&out.stderr));
        assert!(!env.container_dir(id).exists());
        assert!(
            mounts_under(&env.run_dir(id)).is_empty(),
            "its root is unmounted"
        );
        let t = Instant::now();
        while alive(*pid) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(*pid), "its process was stopped");
        assert!(!env.root.join("image/holds").join(id).exists());
    }
    assert!(!env.root.join("containers/.names/bad1").exists());
    assert!(env.berth(&["inspect", "bad1"]).status.code() != Some(0));
    assert_eq!(env.ok(&["ps", "-aq", "--no-trunc"]).trim(), good);
    env.ok(&["rm", "-f", "good"]);
    env.ok(&["rmi", &env.image]);
}

/// A container directory deleted by hand leaves a hold naming it: `rmi` releases it.
#[test]
fn holds_of_vanished_containers_are_released() {
    let env = Env::new();
    let id = env.ok(&["create", &env.image, "true"]).trim().to_string();
    assert!(env.root.join("image/holds").join(&id).exists());
    assert_eq!(env.berth(&["rmi", &env.image]).status.code(), Some(125));
    std::fs::remove_dir_all(env.container_dir(&id)).unwrap();
    let out = env.berth(&["rmi", &env.image]);
    assert!(out.status.success(), "rmi: {}", text(&out.stderr));
    assert!(!env.root.join("image/holds").join(&id).exists());
    assert!(text(&out.stdout).contains("Deleted"));
}

/// A container that lost its hold (recorded by a berth that took the hold after the record,
/// and only warned when that failed) takes it again when it starts, so rmi refuses.
#[test]
fn start_takes_back_a_missing_hold() {
    let env = Env::new();
    let id = env
        .ok(&["create", &env.image, "sleep", "300"])
        .trim()
        .to_string();
    let hold = env.root.join("image/holds").join(&id);
    std::fs::remove_file(&hold).unwrap();
    env.ok(&["start", &id]);
    assert!(hold.exists(), "start takes the hold back");
    assert_eq!(env.berth(&["rmi", &env.image]).status.code(), Some(125));
    let seen = env.ok(&["exec", &id, "sh", "-c", "ls /bin | wc -l"]);
    env.ok(&["rm", "-f", &id]);
    assert_eq!(seen.trim(), bin_entries(&env));
}

/// A truncated image record breaks neither `images`, nor `run` or `image inspect` of another
/// image; `pull` of that image repairs it.
#[test]
fn corrupt_image_record_is_skipped_and_repaired_by_pull() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    berth_testutil::fixtures::exposed_ports_layout(&layout, &["80/tcp"]).unwrap();
    let registry = env.image.split('/').next().unwrap();
    let other = format!("{registry}/other:latest");
    berth_testutil::push(&layout, "latest", &other, &Default::default()).unwrap();
    env.ok(&["pull", "-q", &other]);
    let id = env
        .ok(&["images", "-q", "--no-trunc", &env.image])
        .trim()
        .to_string();
    let hex = id.trim_start_matches("sha256:");
    assert_eq!(hex.len(), 64, "{id}");
    let rec = env.root.join("image/images").join(format!("{hex}.json"));
    truncate(&rec, 20);

    let out = env.berth(&["images"]);
    assert!(out.status.success(), "images: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("other"), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(&rec.display().to_string()),
        "images names the corrupt record: {}",
        text(&out.stderr)
    );
    assert_eq!(
        env.ok(&["run", "--rm", "--pull", "never", &other, "echo", "hi"])
            .trim(),
        "hi"
    );
    env.ok(&["image", "inspect", &other]);
    let out = env.berth(&["rmi", &other]);
    assert!(
        out.status.success(),
        "rmi of another: {}",
        text(&out.stderr)
    );
    assert!(
        env.root.join("image/layers").read_dir().unwrap().count() > 0,
        "the corrupt image's layers are kept"
    );
    env.ok(&["pull", "-q", &env.image]);
    env.ok(&["images"]);
    let out = env.berth(&["images"]);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(env.run(&[], &["echo", "ok"]).trim(), "ok");
}

/// The container of a `run --rm` killed before it started is removed by the next command
/// that lists containers, and its root unmounted.
#[test]
fn run_rm_killed_early_leaves_nothing() {
    let env = Env::new();
    let containers = env.root.join("containers");
    for i in 0..8u64 {
        let mut child = env
            .cmd()
            .args(["run", "--rm", &env.image, "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Until the container's record appears, then a little later each time.
        let t = Instant::now();
        let appeared = loop {
            let found = std::fs::read_dir(&containers)
                .map(|rd| rd.flatten().any(|e| e.path().join("config.json").exists()))
                .unwrap_or(false);
            if found || t.elapsed() > Duration::from_secs(10) {
                break found;
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        std::thread::sleep(Duration::from_micros(i * 300));
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("round {i}: record seen: {appeared}");
        // The monitor (if one started) finishes the --rm on its own; the rest is for
        // reconcile.
        let t = Instant::now();
        loop {
            let left = env.ok(&["ps", "-aq"]);
            if left.is_empty() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "round {i}: left behind: {left}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            mounts_under(&env.root.join("run")).is_empty(),
            "round {i}: mounts left: {:?}",
            mounts_under(&env.root)
        );
    }
    // `create --rm` is not started by its creator: it stays until started.
    let id = env
        .ok(&["create", "--rm", &env.image, "true"])
        .trim()
        .to_string();
    assert_eq!(env.ok(&["ps", "-aq", "--no-trunc"]).trim(), id);
}

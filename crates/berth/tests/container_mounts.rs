//! Bind mounts and volumes with submounts: read-only that stays read-only below (Docker v25's
//! recursive read-only binds and `bind-recursive`), and mount options that berth does not
//! know refused with exit 125.

mod container_support;
use berth_testutil::MountGuard;
use container_support::*;
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// A host directory `src` with a tmpfs mounted at `src/sub` holding `marker` (unmounted on
/// drop, before the directory goes).
struct Tree {
    src: PathBuf,
    _guard: MountGuard,
    _tmp: tempfile::TempDir,
}

fn mount_tmpfs(at: &Path) -> MountGuard {
    std::fs::create_dir_all(at).unwrap();
    let guard = MountGuard::new(at);
    let target = CString::new(at.to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated strings alive for the call.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m".as_ptr().cast(),
        )
    };
    assert_eq!(r, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
    std::fs::write(at.join("marker"), "m").unwrap();
    guard
}

fn tree() -> Tree {
    let tmp = tempfile::Builder::new()
        .prefix("berth-mounts-test-")
        .tempdir()
        .unwrap();
    let src = tmp.path().join("src");
    let guard = mount_tmpfs(&src.join("sub"));
    Tree {
        src,
        _guard: guard,
        _tmp: tmp,
    }
}

/// What the container sees at /n: whether /n and /n/sub take a new file, and whether the
/// submount's marker is visible.
const PROBE: &str = "touch /n/top 2>/dev/null && echo top=rw || echo top=ro; \
     touch /n/sub/x 2>/dev/null && echo sub=rw || echo sub=ro; \
     test -e /n/sub/marker && echo marker=yes || echo marker=no";

fn probe(env: &Env, flags: &[&str]) -> String {
    env.run(flags, &["sh", "-c", PROBE])
}

fn assert_probe(out: &str, want: &[&str], what: &str) {
    let got: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(got, want, "{what}: {out}");
}

#[test]
fn read_only_binds_are_read_only_in_every_submount() {
    let env = Env::new();
    let t = tree();
    let src = t.src.to_str().unwrap();
    let bind = format!("type=bind,src={src},dst=/n,readonly");
    for flags in [
        vec!["-v".to_string(), format!("{src}:/n:ro")],
        vec!["-v".to_string(), format!("{src}:/n:ro,rprivate")],
        vec!["--mount".to_string(), bind.clone()],
        vec![
            "--mount".to_string(),
            format!("{bind},bind-recursive=enabled"),
        ],
        vec![
            "--mount".to_string(),
            format!("{bind},bind-recursive=readonly"),
        ],
        vec![
            "--mount".to_string(),
            format!("{bind},bind-recursive=readonly,bind-propagation=rprivate"),
        ],
    ] {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = probe(&env, &flags);
        assert_probe(
            &out,
            &["top=ro", "sub=ro", "marker=yes"],
            &format!("{flags:?}"),
        );
        assert!(!t.src.join("top").exists(), "{flags:?} wrote to the host");
        assert!(
            !t.src.join("sub/x").exists(),
            "{flags:?} wrote into the host's submount"
        );
    }
}

#[test]
fn bind_recursive_writable_keeps_submounts_writable() {
    let env = Env::new();
    let t = tree();
    let src = t.src.to_str().unwrap();
    let m = format!("type=bind,src={src},dst=/n,readonly,bind-recursive=writable");
    let out = probe(&env, &["--mount", &m]);
    assert_probe(&out, &["top=ro", "sub=rw", "marker=yes"], "writable");
    assert!(!t.src.join("top").exists());
    assert!(t.src.join("sub/x").exists(), "the submount took the write");
    std::fs::remove_file(t.src.join("sub/x")).unwrap();
}

#[test]
fn bind_recursive_disabled_leaves_submounts_out() {
    let env = Env::new();
    let t = tree();
    let src = t.src.to_str().unwrap();
    let m = format!("type=bind,src={src},dst=/n,readonly,bind-recursive=disabled");
    let out = probe(&env, &["--mount", &m]);
    assert_probe(&out, &["top=ro", "sub=ro", "marker=no"], "disabled, ro");
    // The deprecated spelling of the same thing.
    let m = format!("type=bind,src={src},dst=/n,bind-nonrecursive");
    let out = env.run(&["--mount", &m], &["sh", "-c", "ls /n/sub"]);
    assert_eq!(
        out.trim(),
        "",
        "the submount is not in a non-recursive bind"
    );
    assert!(!t.src.join("sub/x").exists());
}

#[test]
fn read_write_binds_keep_their_submounts_writable() {
    let env = Env::new();
    let t = tree();
    let src = t.src.to_str().unwrap();
    let out = probe(&env, &["-v", &format!("{src}:/n")]);
    assert_probe(&out, &["top=rw", "sub=rw", "marker=yes"], "rw bind");
    assert!(t.src.join("top").exists() && t.src.join("sub/x").exists());
}

#[test]
fn read_only_named_volumes_are_read_only_in_every_submount() {
    let env = Env::new();
    env.ok(&["volume", "create", "ro-vol"]);
    let data = env.root.join("volumes/ro-vol/_data");
    let _guard = mount_tmpfs(&data.join("sub"));
    for flags in [
        vec!["-v".to_string(), "ro-vol:/n:ro".to_string()],
        vec![
            "--mount".to_string(),
            "type=volume,src=ro-vol,dst=/n,ro=true".to_string(),
        ],
    ] {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = probe(&env, &flags);
        assert_probe(
            &out,
            &["top=ro", "sub=ro", "marker=yes"],
            &format!("{flags:?}"),
        );
        assert!(!data.join("top").exists() && !data.join("sub/x").exists());
    }
}

/// Asserts that `berth run FLAGS IMAGE true` fails with 125, creates nothing, and says
/// every one of `words`.
fn assert_refused(env: &Env, flags: &[&str], words: &[&str]) {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(flags);
    a.push(&env.image);
    a.push("true");
    let out = env.berth(&a);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{flags:?}: {err}");
    for w in words {
        assert!(err.contains(w), "{flags:?}: {w:?} not in {err:?}");
    }
    assert_eq!(
        env.ok(&["ps", "-aq"]).trim(),
        "",
        "{flags:?} left a container"
    );
}

#[test]
fn unknown_mount_options_are_refused() {
    let env = Env::new();
    let t = tree();
    let src = t.src.to_str().unwrap();
    let v = format!("{src}:/n:bogus");
    assert_refused(
        &env,
        &["-v", &v],
        &["-v", "bogus", "ro", "rw", "rprivate", "nocopy"],
    );
    assert_refused(&env, &["-v", "a:b:bogus"], &["-v", "bogus"]);
    let v = format!("{src}:/n:ro,rw");
    assert_refused(&env, &["-v", &v], &["-v", "ro", "rw"]);
    let v = format!("{src}:/n:nocopy");
    assert_refused(&env, &["-v", &v], &["-v", "nocopy"]);
    let v = format!("{src}:/n:ro:extra");
    assert_refused(&env, &["-v", &v], &["-v"]);
    let m = format!("type=bind,src={src},dst=/n,bogus=1");
    assert_refused(
        &env,
        &["--mount", &m],
        &["--mount", "bogus", "bind-recursive", "readonly"],
    );
    let m = format!("type=bind,src={src},dst=/n,readonly,bind-recursive=maybe");
    assert_refused(
        &env,
        &["--mount", &m],
        &[
            "--mount", "maybe", "enabled", "disabled", "writable", "readonly",
        ],
    );
    let m = format!("type=bind,src={src},dst=/n,bind-recursive=writable");
    assert_refused(&env, &["--mount", &m], &["--mount", "writable", "readonly"]);
    let m = format!("type=bind,src={src},dst=/n,ro=maybe");
    assert_refused(&env, &["--mount", &m], &["--mount", "maybe"]);
    assert_refused(
        &env,
        &["--mount", "type=tmpfs,dst=/n,tmpfs-size=lots"],
        &["--mount", "tmpfs-size", "lots"],
    );
    assert_refused(
        &env,
        &["--mount", "type=volume,dst=/n,bind-propagation=shared"],
        &["--mount", "bind-propagation", "volume"],
    );
    assert_refused(
        &env,
        &["--mount", "type=nfs,dst=/n"],
        &["--mount", "nfs", "bind", "volume", "tmpfs"],
    );
    assert_refused(
        &env,
        &["--tmpfs", "/t:bogus"],
        &["--tmpfs", "bogus", "size", "noexec"],
    );
    assert_refused(
        &env,
        &["--tmpfs", "/t:size=lots"],
        &["--tmpfs", "size", "lots"],
    );
    // Refused before any pull: an image that is not there is not looked for.
    let out = env.berth(&[
        "run",
        "--rm",
        "-v",
        "a:/b:bogus",
        "127.0.0.1:9/none",
        "true",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("bogus") && !err.contains("Unable to find image"),
        "{err}"
    );
    // What Docker takes is still taken.
    let v = format!("{src}:/n:ro,z,rslave,cached");
    env.run(
        &[
            "-v",
            &v,
            "--tmpfs",
            "/t:rw,noexec,nosuid,size=64k,mode=1777",
        ],
        &["true"],
    );
    env.run(
        &[
            "--mount",
            "type=tmpfs,dst=/t,tmpfs-size=64k,tmpfs-mode=1770",
            "--mount",
            "type=volume,dst=/w,volume-nocopy",
        ],
        &["true"],
    );
}

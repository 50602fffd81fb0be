//! Registry authentication: basic auth, bearer tokens, `berth login/logout`,
//! Docker's config file and REGISTRY_AUTH_FILE.

mod image_common;

use berth_testutil::{fixtures, Registry};
use image_common::*;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;

fn login_stdin(b: &Berth, host: &str, user: &str, pass: &str) -> std::process::Output {
    let mut child = b
        .cmd(&["login", "-u", user, "--password-stdin", host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pass}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn basic_auth_needs_login_and_logout_forgets() {
    let reg = Registry::start_basic_auth("alice", "s3cret").unwrap();
    let l = layout(fixtures::busybox_layout);
    reg.push(&layout_path(&l), "latest", "private/bb:latest", None)
        .unwrap();
    let b = Berth::new();
    let host = reg.addr();
    let name = format!("{host}/private/bb:latest");

    let err = b.fails(&["pull", &name]);
    assert!(err.contains("requires authentication"), "{err}");
    assert!(err.contains(&format!("berth login {host}")), "{err}");
    assert!(err.contains(&name), "{err}");

    let err = b.fails(&["login", "-u", "alice", "-p", "wrong", &host]);
    assert!(err.contains("rejected the credentials"), "{err}");
    assert!(!b.root().join("auth.json").exists());

    let out = login_stdin(&b, &host, "alice", "s3cret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    let auth = b.root().join("auth.json");
    assert_eq!(
        std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&auth).unwrap().contains(&host));

    b.ok(&["pull", &name]);
    assert!(b.ok(&["images"]).contains(&format!("{host}/private/bb")));

    assert_eq!(
        b.ok(&["logout", &host]),
        format!("Removed login credentials for {host}\n")
    );
    b.ok(&["rmi", &name]);
    let err = b.fails(&["pull", &name]);
    assert!(err.contains("requires authentication"), "{err}");
    let err = b.fails(&["logout", &host]);
    assert!(err.contains("not logged in"), "{err}");
}

#[test]
fn token_auth_denies_anonymous_and_accepts_credentials() {
    let reg = Registry::start_token_auth("bob", "hunter2").unwrap();
    let l = layout(fixtures::busybox_layout);
    reg.push(&layout_path(&l), "latest", "team/bb:latest", None)
        .unwrap();
    let host = reg.addr();
    let name = format!("{host}/team/bb:latest");

    let b = Berth::new();
    let err = b.fails(&["pull", &name]);
    assert!(
        err.contains("requires authentication") && err.contains(&format!("berth login {host}")),
        "{err}"
    );
    let err = b.fails(&["login", "-u", "bob", "-p", "nope", &host]);
    assert!(err.contains("rejected the credentials"), "{err}");
    b.ok(&["login", "-u", "bob", "-p", "hunter2", &host]);
    b.ok(&["pull", &name]);
    assert_same_as_umoci(&b, &name, &layout_path(&l), "latest");

    // Docker's config file, found through DOCKER_CONFIG.
    let mut b2 = Berth::new();
    let cfg = tempfile::tempdir().unwrap();
    let encoded = berth_testutil::http::base64(b"bob:hunter2");
    std::fs::write(
        cfg.path().join("config.json"),
        format!(r#"{{"auths":{{"http://{host}":{{"auth":"{encoded}"}}}}}}"#),
    )
    .unwrap();
    b2.env
        .push(("DOCKER_CONFIG".into(), cfg.path().to_string_lossy().into()));
    b2.ok(&["pull", &name]);

    // REGISTRY_AUTH_FILE: where `berth login` writes and pulls read.
    let mut b3 = Berth::new();
    let af = b3.home.path().join("containers-auth.json");
    b3.env
        .push(("REGISTRY_AUTH_FILE".into(), af.to_string_lossy().into()));
    b3.ok(&["login", "-u", "bob", "-p", "hunter2", &host]);
    assert!(af.exists() && !b3.root().join("auth.json").exists());
    b3.ok(&["pull", &name]);
}

#[test]
fn login_prompts_on_a_terminal_without_echoing_the_password() {
    let reg = Registry::start_basic_auth("carol", "pw-on-tty").unwrap();
    let b = Berth::new();
    // `script` gives berth a terminal and types our input into it.
    let cmdline = format!("{BERTH} --root {} login {}", b.root().display(), reg.addr());
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .env("HOME", b.home.path())
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let guard = berth_testutil::ChildGuard::new(child);
    // Type each answer once its prompt is on the screen (a password typed
    // before the echo is off would be echoed by the terminal itself).
    let mut seen = Vec::new();
    let mut wait_for = |what: &str| {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains(what) {
            let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
            assert!(n > 0, "no {what:?} in {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    };
    wait_for("Username: ");
    stdin.write_all(b"carol\n").unwrap();
    wait_for("Password: ");
    stdin.write_all(b"pw-on-tty\n").unwrap();
    wait_for("Login Succeeded");
    drop(stdin);
    let status = guard.into_inner().wait().unwrap();
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("Username: ") && text.contains("Password: "),
        "{text}"
    );
    assert!(text.contains("Login Succeeded"), "{text}");
    assert!(!text.contains("pw-on-tty"), "password echoed: {text}");
    assert!(std::fs::read_to_string(b.root().join("auth.json"))
        .unwrap()
        .contains(&reg.addr()));
}

//! process.terminal: the pty master arrives over --console-socket with SCM_RIGHTS (runc's
//! protocol); the container's shell has it as its controlling terminal.

mod runtime_common;
use runtime_common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

#[test]
fn pty_is_sent_over_the_console_socket() {
    let mut rt = Rt::new();
    rt.config["process"]["terminal"] = json!(true);
    rt.args(&["sh"]);
    rt.write();
    let id = rt.id("pty");
    let sock = rt.path("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(&rt.bundle)
        .arg("--console-socket")
        .arg(&sock)
        .arg(&id)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (conn, _) = listener.accept().unwrap();
    let (master, name) = berth_runtime::channel::recv_fd(conn.as_raw_fd()).unwrap();
    assert!(
        String::from_utf8_lossy(&name).starts_with("/dev/pts/"),
        "{name:?}"
    );
    assert!(rt.rt(&["start", &id]).status.success());
    let mut m = std::fs::File::from(master);
    let mut reader = m.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    m.write_all(b"echo hel''lo-$((6*7)); tty; stat -c console-%F /dev/console\n")
        .unwrap();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline
        && !(seen.contains("hello-42") && seen.contains("console-c"))
    {
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    assert!(seen.contains("hello-42"), "{seen}");
    assert!(seen.contains("/dev/pts/0"), "{seen}");
    // /dev/console is the pty (a character device bind-mounted over it).
    assert!(seen.contains("console-character special file"), "{seen}");
    m.write_all(b"exit\n").unwrap();
    rt.wait_status(&id, "stopped");
}

#[test]
fn terminal_without_console_socket_cannot_detach() {
    let mut rt = Rt::new();
    rt.config["process"]["terminal"] = json!(true);
    rt.args(&["true"]);
    rt.write();
    let id = rt.id("notty");
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(&rt.bundle)
        .arg(&id)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot allocate tty"));
}

#[test]
fn foreground_run_proxies_the_terminal() {
    let mut rt = Rt::new();
    rt.config["process"]["terminal"] = json!(true);
    rt.args(&["sh"]);
    rt.write();
    let id = rt.id("fgtty");
    let mut child = rt
        .cmd()
        .args(["run", "--bundle"])
        .arg(&rt.bundle)
        .arg(&id)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo hi-$((1+2)); tty; exit 4\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("hi-3"), "{text}");
    assert!(text.contains("/dev/pts/0"), "{text}");
}

#[test]
fn exec_with_a_terminal_over_the_console_socket() {
    let mut rt = Rt::new();
    rt.args(&["sleep", "1000"]);
    let id = rt.run_detached("exectty");
    let sock = rt.path("exec-console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (ok, err) = rt.bg(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
    ]);
    assert!(ok, "{err}");
    let (conn, _) = listener.accept().unwrap();
    let (master, _) = berth_runtime::channel::recv_fd(conn.as_raw_fd()).unwrap();
    let mut m = std::fs::File::from(master);
    let mut reader = m.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    m.write_all(b"echo in-$((2*21)); tty; exit\n").unwrap();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline
        && !(seen.contains("in-42") && seen.contains("/dev/pts/"))
    {
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    assert!(seen.contains("in-42"), "{seen}");
    assert!(seen.contains("/dev/pts/"), "{seen}");
    assert!(rt.rt(&["delete", "--force", &id]).status.success());
}

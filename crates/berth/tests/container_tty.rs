//! `berth run -it` driven through a real pseudo-terminal: typing, the
//! prompt, resizing, exit status, and the terminal restored afterwards.

mod container_support;
use container_support::*;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (0, 0);
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty");
    unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

/// Reads from the master until `want` shows up (or panics after 15 s).
fn read_until(master: &mut std::fs::File, seen: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        assert!(
            Instant::now() < deadline,
            "never saw {want:?}; got {seen:?}"
        );
        let mut p = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        if unsafe { libc::poll(&mut p, 1, 200) } <= 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(seen.contains(want), "never saw {want:?}; got {seen:?}");
}

#[test]
fn interactive_tty_types_resizes_and_exits() {
    let env = Env::new();
    let (master, slave) = openpty();
    let before = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(slave.as_raw_fd(), &mut t);
        t
    };
    let mut cmd = env.cmd();
    cmd.args(["run", "-it", "--rm", &env.image, "sh"]);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    unsafe {
        cmd.pre_exec(|| {
            // A session of its own with the pty as controlling terminal, so
            // that resizing the master sends it SIGWINCH.
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut m = std::fs::File::from(master);
    let mut seen = String::new();
    m.write_all(b"stty size; echo hi-$((1+2))\r").unwrap();
    read_until(&mut m, &mut seen, "hi-3");
    assert!(seen.contains("24 80"), "{seen}");

    // Resize the terminal: the container's pty follows.
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    std::thread::sleep(Duration::from_millis(300));
    m.write_all(b"stty size; echo $TERM\r").unwrap();
    read_until(&mut m, &mut seen, "40 100");
    read_until(&mut m, &mut seen, "xterm");

    // Ctrl-C goes through the pty as a character: it interrupts the
    // foreground command, not the container.
    m.write_all(b"sleep 30\r").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    m.write_all(b"\x03").unwrap();
    m.write_all(b"echo after-$((2*3))\r").unwrap();
    read_until(&mut m, &mut seen, "after-6");

    m.write_all(b"exit 3\r").unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "berth did not exit: {seen}"
        );
        let mut buf = [0u8; 4096];
        let mut p = libc::pollfd {
            fd: m.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        if unsafe { libc::poll(&mut p, 1, 100) } > 0 {
            let _ = m.read(&mut buf);
        }
    };
    assert_eq!(status.code(), Some(3), "{seen}");
    // The terminal's modes are back as they were.
    let after = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(slave.as_raw_fd(), &mut t);
        t
    };
    assert_eq!(before.c_lflag, after.c_lflag);
    assert_eq!(before.c_iflag, after.c_iflag);
    assert_eq!(before.c_oflag, after.c_oflag);
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

#[test]
fn interactive_without_tty_pipes_stdin_and_eof() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args([
            "run",
            "-i",
            "--rm",
            &env.image,
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    // stdin closed: the container sees EOF.
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "HELLO\ndone\n");
    assert_eq!(out.status.code(), Some(0));
}

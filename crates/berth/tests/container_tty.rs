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

/// Starts `cmd` in a session of its own on a new pty; returns it and the master.
fn spawn_on_pty(mut cmd: std::process::Command) -> (std::process::Child, std::fs::File) {
    let (master, slave) = openpty();
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    (cmd.spawn().unwrap(), std::fs::File::from(master))
}

/// Waits for `child` to exit while draining the master; panics after 15 s.
fn wait_draining(child: &mut std::process::Child, m: &mut std::fs::File) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("berth did not exit after the detach keys");
        }
        let mut p = libc::pollfd {
            fd: m.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        if unsafe { libc::poll(&mut p, 1, 100) } > 0 {
            let mut buf = [0u8; 4096];
            let _ = m.read(&mut buf);
        }
    }
}

#[test]
fn detach_keys_leave_the_container_running() {
    let env = Env::new();
    let name = format!("detach{}", std::process::id());
    let mut cmd = env.cmd();
    cmd.args(["run", "-it", "--name", &name, &env.image, "sh"]);
    let (mut child, mut m) = spawn_on_pty(cmd);
    let mut seen = String::new();
    m.write_all(b"echo one-$((0+1))\r").unwrap();
    read_until(&mut m, &mut seen, "one-1");
    // Docker's default: Ctrl-P Ctrl-Q detaches, berth exits 0, the shell goes on.
    m.write_all(b"\x10\x11").unwrap();
    assert_eq!(wait_draining(&mut child, &mut m), Some(0), "{seen}");
    let running = env.ok(&["ps", "-q", "--no-trunc"]);
    assert_eq!(running.lines().count(), 1, "{running}");

    // Attach again with other keys; the shell still has its state.
    let mut cmd = env.cmd();
    cmd.args(["attach", "--detach-keys", "ctrl-a,x", &name]);
    let (mut child, mut m) = spawn_on_pty(cmd);
    let mut seen = String::new();
    std::thread::sleep(Duration::from_millis(300));
    m.write_all(b"echo two-$((1+1))\r").unwrap();
    read_until(&mut m, &mut seen, "two-2");
    // The default sequence is now plain input; the new one detaches.
    m.write_all(b"\x01x").unwrap();
    assert_eq!(wait_draining(&mut child, &mut m), Some(0), "{seen}");
    assert_eq!(env.ok(&["ps", "-q"]).lines().count(), 1);

    // A bad sequence is refused before anything happens.
    let out = env
        .cmd()
        .args(["attach", "--detach-keys", "ctrl-pp", &name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("ctrl-pp"),
        "{}",
        text(&out.stderr)
    );
    env.ok(&["rm", "-f", &name]);
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

//! The per-container monitor (like conmon, without a daemon): a small process
//! forked from `berth` that creates and starts the container through the
//! runtime, holds its stdio or pty, writes the log, serves attached clients,
//! reaps the init (as a child subreaper), records the exit and cleans up.
//!
//! It runs a poll(2) loop on one thread: no async runtime, little memory.

use crate::attach::{self, FrameReader};
use crate::logs::{self, Stream};
use crate::process::SingleThreaded;
use crate::record::{now_rfc3339, Records, Status};
use crate::runtime::{
    clean_message, logged_failure_code, start_failure_code, start_failure_code_from_text, Runtime,
};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Stdio;

/// What the monitor needs to know.
pub struct MonitorConfig {
    pub records: Records,
    pub runtime: Runtime,
    pub id: String,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub berth_root: PathBuf,
    /// Start the container with the runtime linked in ([`launch_in_process`]).
    pub in_process: bool,
}

/// Forks the monitor (in a new session) and returns the client's end of a
/// socket connected to it. The caller must be single-threaded (`_single`). One fork, not
/// two: berth itself is short-lived, and once it exits the monitor is
/// reparented (and reaped) like any orphan.
pub fn spawn(cfg: MonitorConfig, _single: SingleThreaded) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use nix::unistd::{fork, ForkResult};
    let (client, mon) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: the caller holds a `SingleThreaded` token: no other thread exists, so the child
    // inherits no lock (malloc's, stdio's) held by a thread that does not exist in it, and
    // may run ordinary Rust code.
    match unsafe { fork() }.map_err(std::io::Error::from)? {
        ForkResult::Parent { .. } => {
            drop(mon);
            Ok(client)
        }
        ForkResult::Child => {
            drop(client);
            let _ = nix::unistd::setsid();
            let code = match run(cfg, mon) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: `_exit` has no preconditions; it ends the monitor without running
            // atexit handlers or flushing stdio buffers copied from the parent.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Points 0, 1, 2 at /dev/null and closes every other fd but `keep`.
fn detach_fds(keep: &[i32]) {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        stdio_to(&null);
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: called first thing in the freshly forked monitor, which owns no
            // descriptor object but `keep` (its config holds paths only): nothing that
            // would use a closed number is left. What the berth command had open (the
            // image store, a terminal, its log) must not stay open for the container's life.
            unsafe { libc::close(fd) };
        }
    }
}

/// Points the standard descriptors 0, 1 and 2 at `fd` (errors are ignored: the monitor
/// carries on with what it has).
fn stdio_to(fd: &impl AsFd) {
    let _ = rustix::stdio::dup2_stdin(fd);
    let _ = rustix::stdio::dup2_stdout(fd);
    let _ = rustix::stdio::dup2_stderr(fd);
}

/// A socket path that fits in sun_path: `/proc/self/fd/N/NAME` through an
/// O_PATH descriptor of the parent directory (kept open by the caller).
pub fn short_path(path: &std::path::Path) -> std::io::Result<(OwnedFd, PathBuf)> {
    let parent = path.parent().unwrap_or(std::path::Path::new("/"));
    let name = path.file_name().unwrap_or_default();
    let fd = rustix::fs::open(
        parent,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
    Ok((fd, p))
}

/// The pid of the monitor listening on `sock` (a container's `attach.sock`), from the
/// socket's peer credentials; None when no process listens there. Costs a connect: used
/// only for containers whose record cannot say (a corrupt one, or a `--rm` container whose
/// `run` died before its monitor recorded itself).
pub fn listener_pid(sock: &std::path::Path) -> Option<i32> {
    let (_dirfd, short) = short_path(sock).ok()?;
    let stream = std::os::unix::net::UnixStream::connect(short).ok()?;
    let cred =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    Some(cred.pid()).filter(|p| *p > 0)
}

struct Client {
    fd: OwnedFd,
    reader: FrameReader,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(Into::into)
}

/// The pty master a runtime sends over `--console-socket`.
fn recv_fd(sock: BorrowedFd<'_>) -> Option<OwnedFd> {
    let mut buf = [0u8; 4096];
    berth_sys::fdpass::recv(sock, &mut buf)
        .ok()?
        .fds
        .into_iter()
        .next()
}

/// Gives back the memory an idle monitor does not need. The monitor is a fork of
/// the berth command, so its resident set starts with every page of code and
/// heap that command touched. Code and read-only data that were never written
/// (read-only file mappings without anonymous pages) are dropped from the page
/// tables with MADV_DONTNEED: their contents stay in the page cache and fault
/// back in if used. Writable or relocated mappings are left alone; free heap
/// goes back to the kernel with malloc_trim.
fn shed_memory() {
    // SAFETY: malloc_trim has no preconditions; it only returns free heap to the kernel.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut candidate: Option<(usize, usize)> = None;
    let drop_range = |r: Option<(usize, usize)>| {
        if let Some((start, end)) = r {
            // SAFETY: a read-only, file-backed private mapping with no anonymous
            // (written) pages: dropping its page-table entries loses nothing.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                let perms = f.next().unwrap_or("");
                let inode = f.nth(2).unwrap_or("0");
                let path = f.next().unwrap_or("");
                candidate = (perms.starts_with('r')
                    && perms.as_bytes().get(1) == Some(&b'-')
                    && perms.ends_with('p')
                    && inode != "0"
                    && path.starts_with('/'))
                .then_some((start, end));
                continue;
            }
        }
        if first == "Anonymous:" {
            let anon: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(1);
            if anon == 0 {
                drop_range(candidate.take());
            }
            candidate = None;
        }
    }
}

fn broadcast(clients: &mut Vec<Client>, typ: u8, data: &[u8]) {
    let f = attach::frame(typ, data);
    clients.retain(|c| attach::write_all_fd(c.fd.as_fd(), &f).is_ok());
}

fn fail(cfg: &MonitorConfig, clients: &mut Vec<Client>, code: i32, msg: &str) {
    let mut d = code.to_be_bytes().to_vec();
    d.extend_from_slice(msg.as_bytes());
    // `--rm` finishes before the client hears the outcome, as with Docker; the record is
    // only written when that fails.
    let removed = cfg.auto_remove
        && crate::teardown::remove_files(
            &cfg.berth_root,
            &cfg.records,
            &cfg.runtime,
            &cfg.id,
            true,
        )
        .is_ok();
    if !removed {
        let _ = crate::teardown::teardown_after(&cfg.records, &cfg.id, || {
            cfg.runtime.delete_force(&cfg.id)
        });
        let _ = cfg.records.update(&cfg.id, |c| {
            c.state.status = if c.state.started_at.is_some() {
                Status::Exited
            } else {
                Status::Created
            };
            c.state.exit_code = code;
            c.state.error = msg.to_string();
            c.state.clear_processes();
            c.state.finished_at = Some(now_rfc3339());
        });
    }
    broadcast(clients, attach::ERROR, &d);
}

/// A started container: its init and the monitor's ends of its stdio.
#[derive(Default)]
struct Started {
    pid: i32,
    master: Option<OwnedFd>,
    stdin_w: Option<OwnedFd>,
    out_r: Option<OwnedFd>,
    err_r: Option<OwnedFd>,
}

impl Started {
    /// Stdio without a terminal: stdin a pipe (`-i`) or /dev/null, stdout and stderr pipes.
    /// Returns our ends, and the container's as its fds 0, 1 and 2.
    fn pipes(interactive: bool) -> std::io::Result<(Started, [OwnedFd; 3])> {
        let (stdin, stdin_w) = if interactive {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            (OwnedFd::from(File::open("/dev/null")?), None)
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let ours = Started {
            stdin_w,
            out_r: Some(out_r),
            err_r: Some(err_r),
            ..Started::default()
        };
        Ok((ours, [stdin, out_w, err_w]))
    }
}

/// Why a start failed: Docker's exit code for it and the message.
type StartFailure = (i32, String);

/// A runtime binary's failure from its stderr alone: the code comes from the text (runc's
/// output; berth's own runtime is typed when linked in, see `launch_in_process`, and logs
/// its errno when executed, see `launch_with_binary`).
fn failure(msg: String) -> StartFailure {
    let msg = if msg.is_empty() {
        "the OCI runtime failed to create the container".to_string()
    } else {
        msg
    };
    (start_failure_code_from_text(&msg), msg)
}

/// berth's runtime, linked in: the init is cloned from this process (one exec fewer per
/// container, and it is our child to reap). Its stdio is our fds 0-2 while it is cloned.
fn launch_in_process(cfg: &MonitorConfig) -> Result<Started, StartFailure> {
    let io = |e: std::io::Error| (125, format!("preparing the container's stdio: {e}"));
    // What fds 0-2 become in the init (with a terminal, the runtime makes a pty); ours go
    // back to /dev/null afterwards.
    let (mut s, child_ends) = if cfg.tty {
        (Started::default(), None)
    } else {
        let (s, ends) = Started::pipes(cfg.interactive).map_err(io)?;
        (s, Some(ends))
    };
    if let Some([stdin, stdout, stderr]) = &child_ends {
        let _ = rustix::stdio::dup2_stdin(stdin);
        let _ = rustix::stdio::dup2_stdout(stdout);
        let _ = rustix::stdio::dup2_stderr(stderr);
    }
    let opts = berth_runtime::container::CreateOpts {
        root: cfg.runtime.state_root().to_path_buf(),
        id: cfg.id.clone(),
        bundle: cfg.records.run_dir(&cfg.id).join("bundle"),
        ..Default::default()
    };
    let r = berth_runtime::container::launch(&opts);
    if child_ends.is_some() {
        drop(child_ends);
        if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
            stdio_to(&null);
        }
    }
    let (pid, master) = r.map_err(|e| (start_failure_code(&e), e.to_string()))?;
    s.pid = pid;
    s.master = master;
    Ok(s)
}

/// Any other runtime (or a container whose init other processes could reach before it
/// execs): the runtime binary's `run --detach`, as podman drives runc.
fn launch_with_binary(cfg: &MonitorConfig) -> Result<Started, StartFailure> {
    let io = |e: std::io::Error| (125, format!("preparing the container's stdio: {e}"));
    let dir = cfg.records.run_dir(&cfg.id);
    let mut s = Started::default();
    let pid_file = dir.join("pidfile");
    let _ = std::fs::remove_file(&pid_file);
    let bundle = dir.join("bundle");
    let (mut cmd, _program) = cfg.runtime.container_command();
    // berth's own runtime puts the errno of a failure on a JSON log line: the exit code
    // then comes from it, not from searching the text.
    let runtime_log = dir.join("runtime.log");
    let _ = std::fs::remove_file(&runtime_log);
    if cfg.runtime.can_launch_in_process() {
        cmd.arg("--log")
            .arg(&runtime_log)
            .arg("--log-format")
            .arg("json");
    }
    // `run --detach` creates and starts in one runtime invocation.
    cmd.arg("run")
        .arg("--detach")
        .arg("--bundle")
        .arg(&bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    let (rt_err_r, rt_err_w) = pipe().map_err(io)?;
    let console_listener;
    // sun_path holds 108 bytes: keep the runtime's path short.
    let console_path = std::env::temp_dir().join(format!("berth-{}.console", &cfg.id[..16]));
    if cfg.tty {
        let _ = std::fs::remove_file(&console_path);
        let l = UnixListener::bind(&console_path).map_err(io)?;
        l.set_nonblocking(true).map_err(io)?;
        console_listener = Some(l);
        cmd.arg("--console-socket").arg(&console_path);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(rt_err_w.try_clone().map_err(io)?))
            .stderr(Stdio::from(rt_err_w));
    } else {
        console_listener = None;
        let (ours, [stdin, stdout, stderr]) = Started::pipes(cfg.interactive).map_err(io)?;
        s = ours;
        cmd.stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        drop(rt_err_w);
    }
    // The runtime starts with an empty signal mask and default dispositions
    // (std's spawn resets both), not with our blocked SIGCHLD.
    cmd.arg(&cfg.id);
    let mut child = cmd.spawn().map_err(|e| {
        (
            125,
            format!("starting the OCI runtime {}: {e}", cfg.runtime.name()),
        )
    })?;
    drop(cmd);
    // With a terminal, the runtime hands the pty over the console socket before it
    // exits: wait for either (a pidfd wakes the poll when the runtime exits).
    if let Some(l) = &console_listener {
        use rustix::event::{poll, PollFd, PollFlags};
        let pidfd = rustix::process::Pid::from_raw(child.id() as i32).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        while s.master.is_none() {
            let exited = match &pidfd {
                Some(fd) => {
                    let mut p = [
                        PollFd::new(l, PollFlags::IN),
                        PollFd::new(fd, PollFlags::IN),
                    ];
                    match poll(&mut p, None) {
                        Ok(_) => !p[1].revents().is_empty(),
                        Err(rustix::io::Errno::INTR) => false,
                        Err(e) => return Err(io(e.into())),
                    }
                }
                None => child.try_wait().map_err(io)?.is_some(),
            };
            if let Ok((c, _)) = l.accept() {
                let _ = c.set_nonblocking(false);
                s.master = recv_fd(c.as_fd());
            }
            if exited {
                break;
            }
            if pidfd.is_none() && s.master.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    let status = child.wait().map_err(io)?;
    if status.success() {
        let _ = std::fs::remove_file(&runtime_log);
    }
    if let (Some(l), None) = (&console_listener, &s.master) {
        if let Ok((c, _)) = l.accept() {
            let _ = c.set_nonblocking(false);
            s.master = recv_fd(c.as_fd());
        }
    }
    let _ = std::fs::remove_file(&console_path);
    if !status.success() {
        let mut msg = attach::read_available(&rt_err_r);
        if let Some(e) = &s.err_r {
            msg.extend(attach::read_available(e));
        }
        let msg = clean_message(&msg);
        let logged = std::fs::read(&runtime_log).unwrap_or_default();
        let _ = std::fs::remove_file(&runtime_log);
        let (code, msg) = if msg.is_empty() {
            failure(format!(
                "the OCI runtime failed to create the container ({status})"
            ))
        } else {
            failure(msg)
        };
        return Err((logged_failure_code(&logged).unwrap_or(code), msg));
    }
    s.pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    if s.pid <= 0 || (cfg.tty && s.master.is_none()) {
        return Err((
            125,
            "the OCI runtime did not report the container's pid or terminal".into(),
        ));
    }
    Ok(s)
}

fn run(cfg: MonitorConfig, first_client: OwnedFd) -> std::io::Result<()> {
    detach_fds(&[first_client.as_raw_fd()]);
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let dir = cfg.records.container_dir(&cfg.id);
    let mut clients = vec![Client {
        fd: first_client,
        reader: FrameReader::default(),
    }];

    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(std::io::Error::from)?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(std::io::Error::from)?;
    // Nothing of ours may die of SIGPIPE when a client goes away.
    // SAFETY: SIG_IGN installs no handler code; no other thread exists to race with.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }
        .map_err(std::io::Error::from)?;

    let sock_path = cfg.records.run_dir(&cfg.id).join("attach.sock");
    let _ = std::fs::remove_file(&sock_path);
    let (_dirfd, short) = short_path(&sock_path)?;
    let listener = UnixListener::bind(&short)?;
    listener.set_nonblocking(true)?;
    // A `--rm` container whose `run` died before this monitor listened may have been removed
    // meanwhile by a reconcile (`Engine::list`), which takes this lock and finds no one on the
    // socket: start nothing then. Once this check passed, a reconcile finds the socket.
    match cfg.records.lock(&cfg.id) {
        Ok(_lock) if dir.join("config.json").exists() => {}
        _ => return Ok(()),
    }

    let mut log = logs::Writer::open(dir.join("ctr.log"));

    let started = if cfg.in_process {
        launch_in_process(&cfg)
    } else {
        launch_with_binary(&cfg)
    };
    let Started {
        pid,
        master,
        mut stdin_w,
        mut out_r,
        mut err_r,
    } = match started {
        Ok(s) => s,
        Err((code, msg)) => {
            // Did `rm -f` tear the container down while the runtime set it up? It holds
            // the container's lock while it unmounts the root and deletes the bundle, until
            // the directory is in the trash (or it failed half-way).
            let removed = cfg.records.lock(&cfg.id).map_or(true, |_l| {
                let rootfs = crate::teardown::rootfs(&cfg.records, &cfg.id);
                !cfg.records.container_dir(&cfg.id).exists()
                    || !rootfs.with_file_name("config.json").exists()
                    || !berth_sys::overlay::is_mounted(&rootfs)
            });
            let (code, msg) = match removed {
                false => (code, msg),
                true => (
                    125,
                    format!("the container was removed while starting ({msg})"),
                ),
            };
            fail(&cfg, &mut clients, code, &msg);
            return Ok(());
        }
    };
    let my_pid = std::process::id() as i32;
    let _ = cfg.records.update(&cfg.id, |c| {
        c.state.set_processes(pid, my_pid);
        c.state.status = Status::Running;
        c.state.started_at = Some(now_rfc3339());
        c.state.finished_at = None;
        c.state.exit_code = 0;
        c.state.oom_killed = false;
        c.state.error.clear();
    });
    broadcast(&mut clients, attach::STARTED, &[]);

    // Output sources: (fd, stream).
    let mut sources: Vec<(OwnedFd, Stream)> = Vec::new();
    if let Some(m) = master.as_ref() {
        sources.push((m.try_clone()?, Stream::Stdout));
    }
    if let Some(o) = out_r.take() {
        sources.push((o, Stream::Stdout));
    }
    if let Some(e) = err_r.take() {
        sources.push((e, Stream::Stderr));
    }
    let mut buf = vec![0u8; 32 * 1024];
    let mut exit: Option<i32> = None;
    let mut drain_deadline: Option<std::time::Instant> = None;
    let mut shed = false;
    loop {
        use rustix::event::{poll, PollFd, PollFlags};
        if let Some(d) = drain_deadline {
            if sources.is_empty() || std::time::Instant::now() >= d {
                break;
            }
        }
        let mut fds: Vec<PollFd> = vec![
            PollFd::new(&sfd, PollFlags::IN),
            PollFd::new(&listener, PollFlags::IN),
        ];
        for (fd, _) in &sources {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        for c in &clients {
            fds.push(PollFd::new(&c.fd, PollFlags::IN));
        }
        let drain = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        let idle = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        let timeout = match (drain_deadline, shed) {
            (Some(_), _) => Some(&drain),
            (None, false) => Some(&idle),
            (None, true) => None,
        };
        match poll(&mut fds, timeout) {
            Ok(0) if drain_deadline.is_none() => {
                // A second without work: this monitor is going to sit idle.
                drop(fds);
                shed_memory();
                shed = true;
                continue;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(_)) = sfd.read_signal() {}
            loop {
                use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => exit = Some(code),
                    Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                        exit = Some(128 + sig as i32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            if exit.is_some() && drain_deadline.is_none() {
                drain_deadline =
                    Some(std::time::Instant::now() + std::time::Duration::from_millis(300));
            }
        }
        if ready[1] {
            while let Ok((s, _)) = listener.accept() {
                let _ = s.set_nonblocking(false);
                clients.push(Client {
                    fd: OwnedFd::from(s),
                    reader: FrameReader::default(),
                });
            }
        }
        let n_src = sources.len();
        let mut closed = Vec::new();
        for i in 0..n_src {
            if !ready[2 + i] {
                continue;
            }
            let stream = sources[i].1;
            match attach::read_some(sources[i].0.as_fd(), &mut buf) {
                Ok(Some(n)) => {
                    log.write(stream, &buf[..n]);
                    let typ = if stream == Stream::Stderr {
                        attach::STDERR
                    } else {
                        attach::STDOUT
                    };
                    broadcast(&mut clients, typ, &buf[..n]);
                }
                _ => closed.push(i),
            }
        }
        let n_clients = clients.len();
        let mut gone = Vec::new();
        for ci in 0..n_clients.min(ready.len().saturating_sub(2 + n_src)) {
            if !ready[2 + n_src + ci] {
                continue;
            }
            let c = &mut clients[ci];
            match attach::read_some(c.fd.as_fd(), &mut buf) {
                Ok(Some(n)) => c.reader.feed(&buf[..n]),
                _ => {
                    gone.push(ci);
                    continue;
                }
            }
            while let Some((typ, data)) = clients[ci].reader.next_frame() {
                match typ {
                    attach::STDIN => {
                        if let Some(m) = &master {
                            let _ = attach::write_all_fd(m.as_fd(), &data);
                        } else if let Some(w) = &stdin_w {
                            if attach::write_all_fd(w.as_fd(), &data).is_err() {
                                stdin_w = None;
                            }
                        }
                    }
                    attach::STDIN_EOF => {
                        stdin_w = None;
                    }
                    attach::RESIZE if data.len() >= 4 => {
                        if let Some(m) = &master {
                            let ws = rustix::termios::Winsize {
                                ws_row: u16::from_be_bytes([data[0], data[1]]),
                                ws_col: u16::from_be_bytes([data[2], data[3]]),
                                ws_xpixel: 0,
                                ws_ypixel: 0,
                            };
                            let _ = rustix::termios::tcsetwinsize(m, ws);
                        }
                    }
                    attach::SIGNAL if data.len() >= 4 => {
                        let sig = i32::from_be_bytes(data[..4].try_into().unwrap());
                        if exit.is_none() {
                            let _ = crate::process::signal(pid, sig);
                        }
                    }
                    _ => {}
                }
            }
        }
        for i in closed.into_iter().rev() {
            sources.remove(i);
        }
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
    }
    let code = exit.unwrap_or(255);
    let oom = cfg.runtime.oom_killed(&cfg.id);
    drop(sources);
    drop(master);
    let _ = std::fs::remove_file(&sock_path);
    // `--rm`: the record goes with the rest (remove_files deletes the runtime's container
    // too); it is only written when that fails.
    let left = if cfg.auto_remove {
        crate::teardown::remove_files_later(
            &cfg.berth_root,
            &cfg.records,
            &cfg.runtime,
            &cfg.id,
            true,
        )
        .ok()
    } else {
        None
    };
    if left.is_none() {
        let _ = crate::teardown::teardown_after(&cfg.records, &cfg.id, || {
            cfg.runtime.delete_force(&cfg.id)
        });
        let _ = cfg.records.update(&cfg.id, |c| {
            c.state.status = Status::Exited;
            c.state.exit_code = code;
            c.state.clear_processes();
            c.state.oom_killed = oom;
            c.state.finished_at = Some(now_rfc3339());
        });
    }
    broadcast(&mut clients, attach::EXIT, &code.to_be_bytes());
    drop(clients);
    let _ = listener.into_raw_fd();
    // The container is gone; its files go after the client heard the exit.
    if let Some(l) = left {
        l.delete();
    }
    Ok(())
}

//! `--init`: a tiny init that runs as the container's PID 1, forwards the
//! signals it receives to the command and reaps every zombie.
//!
//! It is berth itself (`berth init -- CMD`). berth is dynamically linked, so
//! [`prepare_bundle`] copies the binary and the shared objects it has mapped
//! (the dynamic loader, libc, ...) into `<root>/init/<key>/`, which is bind
//! mounted read-only into the container and started through its loader: it
//! works in any image, and the container never sees a writable host binary.

use crate::process::SingleThreaded;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where the init's files appear inside the container.
pub const INIT_DIR: &str = "/dev/.berth-init";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("preparing berth's init under {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("preparing berth's init: the dynamic loader of {0} was not found in /proc/self/maps")]
    NoLoader(PathBuf),
}

/// The process args that start `cmd` under the init, and the host directory to mount.
pub struct InitBundle {
    pub host_dir: PathBuf,
    pub args_prefix: Vec<String>,
}

/// Copies berth and its shared objects (once per berth build) for `--init`.
pub fn prepare_bundle(berth_root: &Path) -> Result<InitBundle, InitError> {
    let exe = std::env::current_exe().map_err(|source| InitError::Io {
        path: "/proc/self/exe".into(),
        source,
    })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    let meta = std::fs::metadata(&exe).map_err(io(&exe))?;
    let key = format!("{:x}-{:x}", meta.len(), meta.mtime());
    let dir = berth_root.join("init").join(&key);
    let maps =
        std::fs::read_to_string("/proc/self/maps").map_err(io(Path::new("/proc/self/maps")))?;
    let mut libs: Vec<PathBuf> = Vec::new();
    for l in maps.lines() {
        if let Some(p) = l.split_whitespace().nth(5) {
            if p.starts_with('/') && p.contains(".so") && !libs.iter().any(|x| x == Path::new(p)) {
                libs.push(PathBuf::from(p));
            }
        }
    }
    let loader = libs
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-"))
        })
        .cloned()
        .ok_or_else(|| InitError::NoLoader(exe.clone()))?;
    if !dir.join("berth").exists() {
        let tmp = berth_root
            .join("init")
            .join(format!(".tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        for l in &libs {
            let dst = tmp.join(l.file_name().unwrap());
            std::fs::copy(l, &dst).map_err(io(l))?;
        }
        std::fs::copy(&exe, tmp.join("berth")).map_err(io(&exe))?;
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.join("berth").exists() {
                return Err(io(&dir)(e));
            }
        }
    }
    let ld = format!(
        "{INIT_DIR}/{}",
        loader.file_name().unwrap().to_string_lossy()
    );
    Ok(InitBundle {
        host_dir: dir,
        args_prefix: vec![
            ld,
            "--library-path".into(),
            INIT_DIR.into(),
            format!("{INIT_DIR}/berth"),
            "init".into(),
            "--".into(),
        ],
    })
}

/// PID 1 inside the container: start `cmd`, forward signals, reap zombies,
/// exit with the command's status (128+N when a signal ended it). This forks the command:
/// the caller proves with `_single` that no other thread runs.
pub fn run(cmd: &[String], _single: SingleThreaded) -> i32 {
    if cmd.is_empty() {
        eprintln!("berth init: no command given");
        return 125;
    }
    let all = SigSet::all();
    let mut old = SigSet::empty();
    if nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&all),
        Some(&mut old),
    )
    .is_err()
    {
        return 125;
    }
    // SAFETY: the caller holds a `SingleThreaded` token: the child inherits no lock held by
    // another thread; it only restores its signal state and execs (or `_exit`s).
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = old.thread_set_mask();
            // berth's runtime ignores SIGPIPE (Rust's default); the command must not
            // inherit that through exec.
            // SAFETY: SIG_DFL installs no handler code, in a single-threaded child.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let args: Vec<CString> = cmd
                .iter()
                .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
                .collect();
            let err = nix::unistd::execvp(&args[0], &args).unwrap_err();
            eprintln!("berth init: exec {}: {err}", cmd[0]);
            let code = if err == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            };
            // SAFETY: `_exit` has no preconditions; the child of a fork must not run the
            // parent's atexit handlers or flush its stdio buffers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            eprintln!("berth init: fork: {e}");
            return 125;
        }
    };
    loop {
        let sig = match all.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == child => return code,
                Ok(WaitStatus::Signaled(p, s, _)) if p == child => return 128 + s as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

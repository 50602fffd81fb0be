//! Cleanup guards and unique names for tests that run in parallel.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

static COUNTER: AtomicU64 = AtomicU64::new(0);

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that the child gets SIGKILL when this process dies, even
/// by SIGKILL (`PR_SET_PDEATHSIG`). The fork happens on one long-lived helper
/// thread, because the kernel ties the signal to the forking thread, and test
/// threads end before the process does.
pub fn spawn_tied(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let parent = std::process::id() as i32;
    // SAFETY: the closure only calls async-signal-safe prctl/getppid.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The parent already died between fork and prctl.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("berth-testutil-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the spawner thread");
        Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::channel();
    tx.lock()
        .unwrap()
        .send((cmd, rtx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    rrx.recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// `PREFIX-PID-N`, unique within the machine while this process lives.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Lazily unmounts a path (every mount stacked on it) on Drop.
#[derive(Debug)]
pub struct MountGuard {
    path: PathBuf,
    armed: bool,
}

impl MountGuard {
    pub fn new(path: impl Into<PathBuf>) -> MountGuard {
        MountGuard {
            path: path.into(),
            armed: true,
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Keeps the mount (the guard does nothing on Drop).
    pub fn disarm(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.path)
    }
    /// Unmounts now (`umount2(MNT_DETACH)` until nothing is mounted there).
    pub fn unmount(&mut self) -> std::io::Result<()> {
        let c = CString::new(self.path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        for _ in 0..64 {
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
                    _ => Err(e),
                };
            }
        }
        Ok(())
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.unmount() {
                eprintln!("MountGuard: unmounting {}: {e}", self.path.display());
            }
        }
    }
}

/// Kills (SIGKILL) and reaps a child process on Drop. With
/// [`ChildGuard::group`], the whole process group is killed (spawn the child
/// with `CommandExt::process_group(0)`).
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    group: bool,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            group: false,
        }
    }
    /// Kill the child's process group (pgid = child pid) on Drop.
    pub fn group(child: Child) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            group: true,
        }
    }
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
    /// Takes the child back; the guard no longer kills it.
    pub fn into_inner(mut self) -> Child {
        self.child.take().expect("child present")
    }
    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("child present");
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    /// Kills (SIGKILL) and reaps now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.group {
                // SAFETY: plain kill(2) on the child's process group.
                unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child.as_ref().expect("child present")
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn spawn_tied_child_dies_with_its_parent() {
        // A shell (the "test process") spawns a tied child through a helper
        // that uses spawn_tied, then the shell is SIGKILLed: use this test
        // binary itself as the helper by re-running one test in a child.
        if std::env::var_os("BERTH_TESTUTIL_TIED_HELPER").is_some() {
            let c = ChildGuard::new(
                spawn_tied({
                    let mut c = Command::new("sleep");
                    c.arg("1000");
                    c
                })
                .unwrap(),
            );
            println!("tied-pid {}", c.id());
            std::thread::sleep(Duration::from_secs(1000));
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let mut helper = Command::new(exe)
            .args([
                "--exact",
                "guards::tests::spawn_tied_child_dies_with_its_parent",
                "--nocapture",
            ])
            .env("BERTH_TESTUTIL_TIED_HELPER", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut r = std::io::BufReader::new(helper.stdout.take().unwrap());
        let mut pid = None;
        for _ in 0..20 {
            let mut line = String::new();
            if std::io::BufRead::read_line(&mut r, &mut line).unwrap() == 0 {
                break;
            }
            if let Some(p) = line.trim().strip_prefix("tied-pid ") {
                pid = Some(p.parse::<u32>().unwrap());
                break;
            }
        }
        let pid = pid.expect("helper printed no pid");
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        helper.kill().unwrap();
        helper.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.split(' ').nth(2) == Some("Z") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tied child {pid} outlived its parent"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())));
    }

    #[test]
    fn mount_guard_unmounts_stacked_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("m");
        std::fs::create_dir(&m).unwrap();
        for _ in 0..2 {
            let st = Command::new("mount")
                .args(["-t", "tmpfs", "berth-test", m.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(st.success());
        }
        assert!(is_mountpoint(&m));
        drop(MountGuard::new(&m));
        assert!(!is_mountpoint(&m), "mount left behind");
        // Unmounting something not mounted is fine.
        drop(MountGuard::new(&m));
    }

    #[test]
    fn child_guard_kills_and_reaps() {
        let child = Command::new("sleep").arg("1000").spawn().unwrap();
        let pid = child.id();
        let mut g = ChildGuard::new(child);
        assert!(g.wait_timeout(Duration::from_millis(50)).unwrap().is_none());
        drop(g);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} left behind"
        );
    }

    #[test]
    fn child_guard_kills_the_group() {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sh")
            .args(["-c", "sleep 1000 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut g = ChildGuard::group(child);
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(g.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        drop(g);
        // The grandchild is reparented and reaped by init; wait for it to vanish.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{grandchild}")).exists() && Instant::now() < deadline {
            let stat =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            if stat.split(' ').nth(2) == Some("Z") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.split(' ').nth(2) == Some("Z"),
            "grandchild alive: {stat}"
        );
    }
}

//! What the engine needs to handle processes safely: [`SingleThreaded`], the token that
//! functions which fork take (a forked child of a multi-threaded process inherits locks
//! that other threads held, and may deadlock on its first allocation), and [`signal`],
//! which sends any signal number through rustix instead of a raw `kill(2)`.

use std::marker::PhantomData;

/// Proof that the process had one thread when the token was made, and the promise of its
/// holder that every thread started since was joined. Functions that fork take it
/// (`Engine::start`, `monitor::spawn`, `init::run`): a multi-threaded caller (an API
/// service on an async runtime) cannot make one, and must fork a helper process first.
///
/// It is neither `Send` nor `Sync`, so it stays on the thread that made it.
#[derive(Debug, Clone, Copy)]
pub struct SingleThreaded(PhantomData<*const ()>);

/// Why [`SingleThreaded::check`] made no token.
#[derive(Debug, thiserror::Error)]
pub enum ThreadsError {
    #[error("berth must fork here, but {0} threads are running")]
    Threads(u64),
    #[error("reading /proc/self/status: {0}")]
    Read(#[source] std::io::Error),
}

impl SingleThreaded {
    /// A token, when `/proc/self/status` says that this process has one thread. A thread
    /// just joined may still be counted for a moment (the kernel wakes its joiner before it
    /// leaves the thread group), so more than one is looked at again for up to 10 ms.
    pub fn check() -> Result<SingleThreaded, ThreadsError> {
        let mut tries = 0;
        loop {
            let status =
                std::fs::read_to_string("/proc/self/status").map_err(ThreadsError::Read)?;
            match threads(&status) {
                Some(1) => return Ok(SingleThreaded(PhantomData)),
                Some(n) if tries >= 10 => return Err(ThreadsError::Threads(n)),
                Some(_) => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                None => {
                    return Err(ThreadsError::Read(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "no Threads: line",
                    )))
                }
            }
        }
    }

    /// A token without the check.
    ///
    /// # Safety
    ///
    /// The process must have no thread but the caller's, and every thread it starts
    /// while it holds the token must be joined before the token is used.
    pub unsafe fn assume() -> SingleThreaded {
        SingleThreaded(PhantomData)
    }
}

/// The `Threads:` count of `/proc/PID/status` text.
fn threads(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends signal `sig` to process `pid`, as `kill(2)`. Named signals and the real-time ones
/// are sent, and 0 only checks that the process exists; another number, or a pid that names
/// no single process (0 or less), is `EINVAL`.
pub fn signal(pid: i32, sig: i32) -> std::io::Result<()> {
    use rustix::process::{kill_process, test_kill_process, Pid, Signal};
    let pid = Pid::from_raw(pid).ok_or(rustix::io::Errno::INVAL)?;
    if sig == 0 {
        return test_kill_process(pid).map_err(Into::into);
    }
    let sig = match Signal::from_named_raw(sig) {
        Some(s) => s,
        None if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) => {
            // SAFETY: `sig` is a real-time signal number of this system's libc, so a valid
            // signal (rustix names only the classic ones).
            unsafe { Signal::from_raw_unchecked(sig) }
        }
        None => return Err(rustix::io::Errno::INVAL.into()),
    };
    kill_process(pid, sig).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_counted_from_proc_status() {
        assert_eq!(threads("Name:\tx\nThreads:\t1\nSigQ:\t0/1\n"), Some(1));
        assert_eq!(threads("Threads:\t12\n"), Some(12));
        assert_eq!(threads("Name:\tx\n"), None);
        // The test harness runs tests on threads of its own.
        let t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        assert!(matches!(
            SingleThreaded::check(),
            Err(ThreadsError::Threads(n)) if n >= 2
        ));
        t.join().unwrap();
    }

    #[test]
    fn signals_reach_a_process_and_bad_ones_are_refused() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        signal(pid, 0).unwrap();
        signal(0, libc::SIGTERM).unwrap_err();
        signal(pid, 1000).unwrap_err();
        signal(pid, libc::SIGRTMIN() + 1).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGRTMIN() + 1));
    }
}

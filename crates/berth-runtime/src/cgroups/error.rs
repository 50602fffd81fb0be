//! The cgroup manager's error type.

use std::path::PathBuf;

/// Errors of the cgroup manager. Messages name the file, the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {value} to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("creating cgroup {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("removing cgroup {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no cgroup filesystem is mounted (nothing of type cgroup or cgroup2 in /proc/self/mountinfo)")]
    NotMounted,
    #[error("cgroupsPath {0:?} is a systemd unit (slice:prefix:name), but berth only has the cgroupfs driver: use a path such as /berth/<id> instead")]
    SystemdPath(String),
    #[error("invalid cgroupsPath {0:?}: {1}")]
    BadPath(String, &'static str),
    #[error("{what} needs the {controller} cgroup controller, which is not mounted on this host")]
    NoController {
        controller: &'static str,
        what: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Bpf {
        what: String,
        source: std::io::Error,
    },
    #[error("timed out after {secs}s waiting for {} to become {state}", path.display())]
    Timeout {
        path: PathBuf,
        state: &'static str,
        secs: u64,
    },
    #[error("saved cgroup state is invalid: {0}")]
    Saved(String),
}

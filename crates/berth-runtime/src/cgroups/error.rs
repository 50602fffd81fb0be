//! The cgroup manager's error type.

use std::path::PathBuf;

/// Errors of the cgroup manager. Messages name the file, the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading a cgroup file failed.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing a value to a cgroup file failed.
    #[error("writing {value} to {}: {source}", path.display())]
    Write {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Creating a cgroup directory failed.
    #[error("creating cgroup {}: {source}", path.display())]
    Create {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Removing a cgroup directory failed.
    #[error("removing cgroup {}: {source}", path.display())]
    Remove {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No cgroup filesystem is mounted.
    #[error("no cgroup filesystem is mounted (nothing of type cgroup or cgroup2 in /proc/self/mountinfo)")]
    NotMounted,
    /// A systemd unit was given as cgroupsPath.
    #[error("cgroupsPath {0:?} is a systemd unit (slice:prefix:name), but berth only has the cgroupfs driver: use a path such as /berth/<id> instead")]
    SystemdPath(String),
    /// A cgroupsPath that cannot be used, and why.
    #[error("invalid cgroupsPath {0:?}: {1}")]
    BadPath(String, &'static str),
    /// A resource needs a controller this host does not mount.
    #[error("{what} needs the {controller} cgroup controller, which is not mounted on this host")]
    NoController {
        /// The missing controller.
        controller: &'static str,
        /// The resource that needs it.
        what: &'static str,
    },
    /// A value linux.resources may not hold, with the reason.
    #[error("{0}")]
    Invalid(String),
    /// Loading or attaching the device eBPF program failed.
    #[error("{what}: {source}")]
    Bpf {
        /// The step that failed.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A freezer state did not settle in time.
    #[error("timed out after {secs}s waiting for {} to become {state}", path.display())]
    Timeout {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The state waited for.
        state: &'static str,
        /// How long it waited.
        secs: u64,
    },
    /// The cgroup state saved with a container cannot be read back.
    #[error("saved cgroup state is invalid: {0}")]
    Saved(String),
}

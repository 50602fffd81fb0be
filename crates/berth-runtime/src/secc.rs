//! Glue to the seccomp module: compile and load `linux.seccomp`, then hand the notify listener
//! (if the filter has one) to the agent at `linux.seccomp.listenerPath` as runtime-spec says:
//! a unix socket, the container process state as JSON, the listener fd by SCM_RIGHTS.

use crate::error::{Ctx, Error, Result};
use oci_spec::runtime::Spec;
use std::os::fd::{AsRawFd, OwnedFd};

/// Loads the spec's seccomp filter into the calling process (no-op without one).
pub fn load(spec: &Spec, id: &str, host_pid: i32, bundle: &std::path::Path) -> Result<()> {
    let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(());
    };
    let listener = load_filter(sc)?;
    if let (Some(fd), Some(path)) = (listener, sc.listener_path()) {
        let state = serde_json::json!({
            "ociVersion": crate::state::OCI_VERSION,
            "fds": ["seccompFd"],
            "pid": host_pid,
            "metadata": sc.listener_metadata().clone().unwrap_or_default(),
            "state": serde_json::from_str::<serde_json::Value>(
                &crate::init::hook_state(id, "creating", host_pid, bundle, spec)).unwrap_or_default(),
        });
        let sock = std::os::unix::net::UnixStream::connect(path)
            .ctx(|| format!("connecting to the seccomp agent at {}", path.display()))?;
        crate::channel::send_fd(
            sock.as_raw_fd(),
            fd.as_raw_fd(),
            state.to_string().as_bytes(),
        )
        .ctx(|| "sending the seccomp listener to the agent")?;
    }
    Ok(())
}

fn load_filter(sc: &oci_spec::runtime::LinuxSeccomp) -> Result<Option<OwnedFd>> {
    let _ = sc;
    Err(Error::Msg(
        "linux.seccomp is set but this build has no seccomp support yet".into(),
    ))
}

//! Glue to [`crate::seccomp`]: the runtime compiles `linux.seccomp` before cloning (cached
//! under `<root>/.seccomp-cache`, so errors surface at create and the child only loads), and
//! the child loads it and hands the notify listener, if any, to the agent at
//! `linux.seccomp.listenerPath` with the container process state (runtime-spec).

use crate::channel::ChildEnd;
use crate::error::Result;
use crate::seccomp::{self, Filter, SeccompError};
use oci_spec::runtime::Spec;
use std::os::fd::AsFd;
use std::path::Path;

/// Compiles the spec's filter (None without `linux.seccomp`).
pub fn compile(spec: &Spec, root: &Path) -> Result<Option<Filter>, SeccompError> {
    let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    seccomp::compile_cached(sc, &root.join(".seccomp-cache")).map(Some)
}

/// Child: loads `filter` into the calling process; a notify listener goes to the runtime over
/// the channel (the agent's socket path is only reachable from the runtime's mount namespace).
pub fn load(filter: Option<Filter>, chan: &ChildEnd) -> Result<()> {
    let Some(filter) = filter else {
        return Ok(());
    };
    if let Some(fd) = filter.load()? {
        chan.send_seccomp_fd(fd)?;
    }
    Ok(())
}

/// Runtime: sends a container's seccomp listener to the agent at `linux.seccomp.listenerPath`
/// with the container process state, as runtime-spec describes.
pub fn forward(
    fd: std::os::fd::OwnedFd,
    spec: &Spec,
    id: &str,
    pid: i32,
    bundle: &Path,
) -> Result<(), SeccompError> {
    let sc = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let Some(path) = sc.and_then(|s| s.listener_path().as_ref()) else {
        return Err(SeccompError::NoListenerPath);
    };
    let state: serde_json::Value =
        serde_json::from_str(&crate::hooks::state(id, "creating", pid, bundle, spec))
            .unwrap_or_default();
    let meta = sc.and_then(|s| s.listener_metadata().as_deref());
    let msg = seccomp::process_state(pid, meta, state).to_string();
    seccomp::send_to_listener(path, fd.as_fd(), msg.as_bytes())
}

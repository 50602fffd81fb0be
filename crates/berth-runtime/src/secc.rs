//! Glue to [`crate::seccomp`]: the runtime compiles `linux.seccomp` before cloning (cached
//! under `<root>/.seccomp-cache`, so errors surface at create and the child only loads, see
//! [`crate::init::load_seccomp`]), and hands the notify listener, if any, to the agent at
//! `linux.seccomp.listenerPath` with the container process state (runtime-spec).

use crate::seccomp::{self, Filter, SeccompError};
use oci_spec::runtime::Spec;
use std::os::fd::AsFd;
use std::path::Path;

/// Compiles the spec's filter (None without `linux.seccomp`).
pub fn compile(spec: &Spec, root: &Path) -> std::result::Result<Option<Filter>, SeccompError> {
    let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    seccomp::compile_cached(sc, &root.join(".seccomp-cache")).map(Some)
}

/// Runtime: sends a container's seccomp listener to the agent at `linux.seccomp.listenerPath`
/// with the container process state, as runtime-spec describes.
pub fn forward(
    fd: std::os::fd::OwnedFd,
    spec: &Spec,
    id: &str,
    pid: i32,
    bundle: &Path,
) -> std::result::Result<(), SeccompError> {
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

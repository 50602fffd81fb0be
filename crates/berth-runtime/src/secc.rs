//! Glue to [`crate::seccomp`]: the runtime compiles `linux.seccomp` before cloning (cached
//! under `<root>/.seccomp-cache`, so errors surface at create and the child only loads), and
//! the child loads it and hands the notify listener, if any, to the agent at
//! `linux.seccomp.listenerPath` with the container process state (runtime-spec).

use crate::error::{Error, Result};
use crate::seccomp::{self, Filter};
use oci_spec::runtime::Spec;
use std::os::fd::AsFd;
use std::path::Path;

/// Compiles the spec's filter (None without `linux.seccomp`).
pub fn compile(spec: &Spec, root: &Path) -> Result<Option<Filter>> {
    let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    seccomp::compile_cached(sc, &root.join(".seccomp-cache"))
        .map(Some)
        .map_err(|e| Error::Msg(e.to_string()))
}

/// Loads `filter` into the calling process and sends the notify listener to the agent.
pub fn load(
    filter: Option<Filter>,
    spec: &Spec,
    id: &str,
    host_pid: i32,
    bundle: &Path,
) -> Result<()> {
    let Some(filter) = filter else {
        return Ok(());
    };
    let listener = filter.load().map_err(|e| Error::Msg(e.to_string()))?;
    let sc = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    if let (Some(fd), Some(path)) = (listener, sc.and_then(|s| s.listener_path().as_ref())) {
        let state: serde_json::Value = serde_json::from_str(&crate::init::hook_state(
            id, "creating", host_pid, bundle, spec,
        ))
        .unwrap_or_default();
        let meta = sc.and_then(|s| s.listener_metadata().as_deref());
        let msg = seccomp::process_state(host_pid, meta, state).to_string();
        seccomp::send_to_listener(path, fd.as_fd(), msg.as_bytes())
            .map_err(|e| Error::Msg(e.to_string()))?;
    }
    Ok(())
}

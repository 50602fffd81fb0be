//! `linux`: namespaces, cgroup resources and path, devices, masked and read-only paths,
//! sysctls and the seccomp profile.

use super::{bad, HostDevice, Inputs, SpecError, MASKED_PATHS, READONLY_PATHS};
use crate::options::MemorySwap;
use crate::seccomp;
use oci_spec::runtime::{
    Linux, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, Spec,
};
use std::collections::HashMap;
use std::path::Path;

/// Sets `linux`, one concern after another.
pub fn with_linux(spec: &mut Spec, i: &Inputs) -> Result<(), SpecError> {
    let mut l = empty();
    for step in [
        with_namespaces,
        with_resources,
        with_cgroups_path,
        with_masked_paths,
        with_sysctls,
        with_devices,
        with_seccomp,
    ] {
        step(&mut l, i)?;
    }
    spec.set_linux(Some(l));
    Ok(())
}

/// `Linux::default()` has sample namespaces, paths and resources; this has none.
fn empty() -> Linux {
    let mut l = Linux::default();
    l.set_resources(None)
        .set_namespaces(None)
        .set_masked_paths(None)
        .set_readonly_paths(None);
    l
}

fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ).set_path(None);
    n
}

/// New pid, ipc, uts, mount and cgroup namespaces, and a network one unless
/// `--network host` (the engine points it at the namespace it made, see
/// [`super::with_network_namespace`]).
fn with_namespaces(l: &mut Linux, i: &Inputs) -> Result<(), SpecError> {
    use LinuxNamespaceType::*;
    let mut list: Vec<LinuxNamespace> = [Pid, Ipc, Uts, Mount, Cgroup]
        .into_iter()
        .map(namespace)
        .collect();
    if i.opts.network != "host" {
        list.push(namespace(Network));
    }
    l.set_namespaces(Some(list));
    Ok(())
}

/// Points every namespace of `typ` at `path` (joined instead of created).
pub fn set_namespace_path(spec: &mut Spec, typ: LinuxNamespaceType, path: &Path) {
    let list = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut());
    for n in list.into_iter().flatten().filter(|n| n.typ() == typ) {
        n.set_path(Some(path.to_path_buf()));
    }
}

/// Memory, CPU, pids and device cgroup rules.
fn with_resources(l: &mut Linux, i: &Inputs) -> Result<(), SpecError> {
    let mut r = LinuxResources::default();
    r.set_memory(memory(i)?)
        .set_cpu(cpu(i)?)
        .set_pids(pids(i))
        .set_devices(Some(device_rules(i.opts.privileged, &i.ctx.devices)));
    l.set_resources(Some(r));
    Ok(())
}

/// `--memory` and `--memory-swap` (at least `--memory`, -1 for unlimited; twice
/// `--memory` by default, as Docker).
fn memory(i: &Inputs) -> Result<Option<LinuxMemory>, SpecError> {
    let opts = i.opts;
    let mut mem = LinuxMemory::default();
    let limit = opts.memory.as_ref().map(|m| m.0 as i64);
    mem.set_limit(limit);
    match (&opts.memory_swap, limit) {
        (Some(s), _) if **s == MemorySwap::Unlimited => {
            mem.set_swap(Some(-1));
        }
        (Some(s), Some(l)) => {
            let v = match **s {
                MemorySwap::Limit(v) => v as i64,
                MemorySwap::Unlimited => -1,
            };
            if v < l {
                return Err(bad(
                    "--memory-swap",
                    s.as_str(),
                    "it must be at least --memory (it counts memory plus swap)",
                ));
            }
            mem.set_swap(Some(v));
        }
        (Some(s), None) => {
            return Err(bad(
                "--memory-swap",
                s.as_str(),
                "it needs --memory as well",
            ))
        }
        (None, Some(l)) => {
            mem.set_swap(Some(2 * l));
        }
        (None, None) => return Ok(None),
    }
    Ok(Some(mem))
}

/// `--cpus` (a CFS quota over a 100 ms period), `--cpu-shares`, `--cpuset-cpus`.
fn cpu(i: &Inputs) -> Result<Option<LinuxCpu>, SpecError> {
    let opts = i.opts;
    if opts.cpus.is_none() && opts.cpu_shares.is_none() && opts.cpuset_cpus.is_none() {
        return Ok(None);
    }
    let mut cpu = LinuxCpu::default();
    if let Some(c) = &opts.cpus {
        cpu.set_quota(Some(c.quota(CFS_PERIOD_US)))
            .set_period(Some(CFS_PERIOD_US));
    }
    cpu.set_shares(opts.cpu_shares)
        .set_cpus(opts.cpuset_cpus.clone());
    Ok(Some(cpu))
}

/// The CFS period `--cpus` sets its quota for: 100 ms, as Docker.
pub const CFS_PERIOD_US: u64 = 100_000;

/// `--pids-limit` above 0.
fn pids(i: &Inputs) -> Option<LinuxPids> {
    let limit = i.opts.pids_limit.filter(|p| *p > 0)?;
    let mut p = LinuxPids::default();
    p.set_limit(limit);
    Some(p)
}

fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.into()));
    d
}

/// Docker's device cgroup rules: everything denied but mknod and the standard character
/// devices (null, zero, full, random, urandom, tty, console, ptmx, pts, tun), plus
/// `--device`s; everything allowed with `--privileged`.
pub fn device_rules(privileged: bool, devices: &[HostDevice]) -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    if privileged {
        return vec![device_rule(true, None, None, None, "rwm")];
    }
    let mut rules = vec![device_rule(false, None, None, None, "rwm")];
    for (t, maj, min, acc) in [
        (C, None, None, "m"),
        (B, None, None, "m"),
        (C, Some(1), Some(3), "rwm"),
        (C, Some(1), Some(8), "rwm"),
        (C, Some(1), Some(7), "rwm"),
        (C, Some(5), Some(0), "rwm"),
        (C, Some(1), Some(5), "rwm"),
        (C, Some(1), Some(9), "rwm"),
        (C, Some(5), Some(1), "rwm"),
        (C, Some(136), None, "rwm"),
        (C, Some(5), Some(2), "rwm"),
        (C, Some(10), Some(200), "rwm"),
    ] {
        rules.push(device_rule(true, Some(t), maj, min, acc));
    }
    for d in devices {
        rules.push(device_rule(
            true,
            Some(device_type(d.kind)),
            Some(d.major),
            Some(d.minor),
            &d.permissions,
        ));
    }
    rules
}

fn device_type(kind: char) -> LinuxDeviceType {
    match kind {
        'b' => LinuxDeviceType::B,
        _ => LinuxDeviceType::C,
    }
}

/// `cgroupsPath`: `<cgroup parent>/<id>`.
fn with_cgroups_path(l: &mut Linux, i: &Inputs) -> Result<(), SpecError> {
    l.set_cgroups_path(Some(format!("{}/{}", i.ctx.cgroup_parent, i.ctx.id).into()));
    Ok(())
}

/// Docker's masked and read-only paths, unless `--privileged`.
fn with_masked_paths(l: &mut Linux, i: &Inputs) -> Result<(), SpecError> {
    if !i.opts.privileged {
        l.set_masked_paths(Some(MASKED_PATHS.iter().map(|s| s.to_string()).collect()))
            .set_readonly_paths(Some(READONLY_PATHS.iter().map(|s| s.to_string()).collect()));
    }
    Ok(())
}

/// `--sysctl name=value`.
fn with_sysctls(l: &mut Linux, i: &Inputs) -> Result<(), SpecError> {
    if i.opts.sysctls.is_empty() {
        return Ok(());
    }
    let m: HashMap<String, String> = i
        .opts
        .sysctls
        .iter()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    l.set_sysctl(Some(m));
    Ok(())
}

/// `--device` nodes, created by the runtime in the container's `/dev`, owned by root.
fn with_devices(l: &mut Linux, i: &Inputs) -> Result<(), SpecError> {
    if i.ctx.devices.is_empty() {
        return Ok(());
    }
    let list = i
        .ctx
        .devices
        .iter()
        .map(|d| {
            let mut dev = LinuxDevice::default();
            dev.set_path(d.path_in_container.clone().into())
                .set_typ(device_type(d.kind))
                .set_major(d.major)
                .set_minor(d.minor)
                .set_file_mode(Some(d.file_mode))
                .set_uid(Some(0))
                .set_gid(Some(0));
            dev
        })
        .collect();
    l.set_devices(Some(list));
    Ok(())
}

/// Docker's default seccomp profile, or `--security-opt seccomp=PROFILE`, resolved for the
/// container's capabilities and the host's architecture; none with `--privileged` or
/// `seccomp=unconfined`.
fn with_seccomp(l: &mut Linux, i: &Inputs) -> Result<(), SpecError> {
    if i.opts.privileged || i.security.seccomp_unconfined {
        return Ok(());
    }
    let profile = match (&i.security.seccomp_profile, i.seccomp_file) {
        (Some(_), Some(text)) => seccomp::from_json(text, &i.caps, &i.ctx.arch)?,
        _ => seccomp::default_profile(&i.caps, &i.ctx.arch)?,
    };
    l.set_seccomp(Some(profile));
    Ok(())
}

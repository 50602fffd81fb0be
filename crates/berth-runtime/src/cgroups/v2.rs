//! cgroup v2: one directory, controllers enabled top-down through `cgroup.subtree_control`.

use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::common::{self, check_unified_key, pids_value, rdma_lines};
use super::error::CgroupError;
use super::{devices, fs};

/// Creates `dir` below `mount`, enabling in every ancestor (the mount's root included) all the
/// controllers it has in `cgroup.controllers`. A controller that cannot be enabled (a parent
/// with processes of its own, a threaded subtree) is skipped, as runc does: the write of a
/// limit that needs it then fails and names the file.
pub fn create(mount: &Path, dir: &Path) -> Result<(), CgroupError> {
    let rel = dir.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut cur = mount.to_path_buf();
    for c in rel.components() {
        enable_controllers(&cur)?;
        cur.push(c);
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: cur, source }),
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = fs::read_opt(&dir.join("cgroup.controllers"))?.unwrap_or_default();
    let enabled = fs::read_opt(&dir.join("cgroup.subtree_control"))?.unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let file = dir.join("cgroup.subtree_control");
    if fs::write(&file, &missing.join(" ")).is_err() {
        for c in &missing {
            if let Err(e) = fs::write(&file, c) {
                crate::debug!("enabling controller {c} in {}: {e}", file.display());
            }
        }
    }
    Ok(())
}

/// runc's conversion of cgroup v1 cpu.shares (2..262144) to cgroup v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

/// runc's conversion of blkio weight (10..1000) to io.weight (1..10000).
pub fn blkio_weight_to_io_weight(w: u64) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (w.saturating_sub(10) * 9999) / 990
}

/// OCI memory.swap is memory+swap; cgroup v2's memory.swap.max is swap alone. `None`: leave
/// memory.swap.max alone.
pub fn swap_max(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>, CgroupError> {
    let (s, l) = (swap.unwrap_or(0), limit.unwrap_or(0));
    if l == -1 && s == 0 {
        return Ok(Some("max".into()));
    }
    match s {
        0 => return Ok(None),
        -1 => return Ok(Some("max".into())),
        _ => {}
    }
    if l == 0 {
        return Err(CgroupError::Invalid(
            "memory.swap needs memory.limit: set both (swap is the total of memory and swap)"
                .into(),
        ));
    }
    if l < 0 {
        return Err(CgroupError::Invalid(format!("invalid memory.limit {l}")));
    }
    if s < l {
        return Err(CgroupError::Invalid(format!(
            "memory+swap limit ({s}) must be at least the memory limit ({l})"
        )));
    }
    Ok(Some((s - l).to_string()))
}

fn num(v: i64) -> Option<String> {
    match v {
        0 => None,
        v if v < 0 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

pub fn apply(m: &impl common::Dirs, r: &LinuxResources) -> Result<(), CgroupError> {
    let d = m.unified_path().ok_or(CgroupError::NotMounted)?;
    if let Some(mem) = r.memory() {
        memory(d, mem)?;
    }
    if let Some(cpu) = r.cpu() {
        self::cpu(d, cpu)?;
    }
    if let Some(p) = r.pids() {
        fs::write(&d.join("pids.max"), &pids_value(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        io(d, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        common::hugetlb(d, h)?;
    }
    if let Some(net) = r.network() {
        if net.class_id().is_some() || net.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            crate::log::warn("linux.resources.network ignored: cgroup v2 has no net_cls/net_prio (use a network namespace)");
        }
    }
    if let Some(rdma) = r.rdma() {
        for line in rdma_lines(rdma) {
            fs::write(&d.join("rdma.max"), &line)?;
        }
    }
    if let Some(devs) = r.devices() {
        devices::apply_bpf(d, devs)?;
    }
    if let Some(u) = r.unified() {
        let mut keys: Vec<_> = u.keys().collect();
        keys.sort();
        for k in keys {
            check_unified_key(k)?;
            let file = d.join(k);
            fs::write(&file, &u[k]).map_err(|e| match e {
                CgroupError::Write { ref source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    let ctrl = k.split('.').next().unwrap_or(k);
                    CgroupError::Invalid(format!(
                        "linux.resources.unified[{k:?}]: {} does not exist: the {ctrl} controller is not enabled for this cgroup, or the kernel has no such file",
                        file.display()
                    ))
                }
                e => e,
            })?;
        }
    }
    Ok(())
}

fn memory(d: &Path, mem: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = mem.limit().filter(|l| *l != 0);
    if let Some(l) = limit {
        common::check_memory_limit(l)?;
    }
    if let Some(s) = swap_max(mem.swap(), limit)? {
        let f = d.join("memory.swap.max");
        if f.exists() {
            fs::write(&f, &s)?;
        } else if mem.swap().is_some() {
            crate::log::warn("memory.swap ignored: this kernel has no memory.swap.max");
        }
    }
    if let (Some(l), Some(true)) = (limit, mem.check_before_update()) {
        let current = fs::read_u64(&d.join("memory.current"))?;
        if l > 0 && (l as u64) < current {
            return Err(CgroupError::Invalid(format!(
                "memory limit {l} is below the container's current usage {current} \
                 (memory.checkBeforeUpdate is set): raise the limit"
            )));
        }
    }
    if let Some(v) = limit.and_then(num) {
        let file = d.join("memory.max");
        fs::write(&file, &v)?;
    }
    if let Some(v) = mem.reservation().and_then(num) {
        fs::write(&d.join("memory.low"), &v)?;
    }
    if mem.disable_oom_killer() == Some(true) {
        crate::log::warn(
            "memory.disableOOMKiller ignored: cgroup v2 cannot disable the OOM killer",
        );
    }
    if mem.swappiness().is_some() {
        crate::log::warn("memory.swappiness ignored: cgroup v2 has no per-cgroup swappiness");
    }
    Ok(())
}

fn cpu(d: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = cpu.shares().filter(|s| *s != 0) {
        let w = shares_to_weight(s);
        if !(1..=10000).contains(&w) {
            return Err(CgroupError::Invalid(format!(
                "cpu.shares {s} is out of range: it must be between 2 and 262144"
            )));
        }
        fs::write(&d.join("cpu.weight"), &w.to_string())?;
    }
    let quota = cpu.quota().filter(|q| *q != 0);
    let period = cpu.period().filter(|p| *p != 0);
    if quota.is_some() || period.is_some() {
        let mut v = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        if let Some(p) = period {
            v.push(' ');
            v.push_str(&p.to_string());
        }
        fs::write(&d.join("cpu.max"), &v)?;
    }
    if let Some(b) = cpu.burst() {
        common::write_if_present(&d.join("cpu.max.burst"), &b.to_string(), "cpu.burst")?;
    }
    if let Some(i) = cpu.idle() {
        common::write_if_present(&d.join("cpu.idle"), &i.to_string(), "cpu.idle")?;
    }
    if cpu.realtime_runtime().is_some_and(|r| r != 0)
        || cpu.realtime_period().is_some_and(|p| p != 0)
    {
        crate::log::warn("cpu.realtimeRuntime/realtimePeriod ignored: cgroup v2 has no realtime group scheduling");
    }
    if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        fs::write(&d.join("cpuset.cpus"), c)?;
    }
    if let Some(mm) = cpu.mems().as_deref().filter(|c| !c.is_empty()) {
        fs::write(&d.join("cpuset.mems"), mm)?;
    }
    Ok(())
}

fn io(d: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let bfq = d.join("io.bfq.weight");
    let has_bfq = bfq.exists();
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if has_bfq {
            fs::write(&bfq, &w.to_string())?;
        } else {
            let v = blkio_weight_to_io_weight(w as u64);
            fs::write(&d.join("io.weight"), &format!("default {v}"))?;
        }
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            if has_bfq {
                fs::write(&bfq, &format!("{}:{} {}", wd.major(), wd.minor(), w))?;
            } else {
                let v = blkio_weight_to_io_weight(w as u64);
                fs::write(
                    &d.join("io.weight"),
                    &format!("{}:{} {}", wd.major(), wd.minor(), v),
                )?;
            }
        }
    }
    let throttles = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (list, key) in throttles {
        for t in list.iter().flatten() {
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            fs::write(
                &d.join("io.max"),
                &format!("{}:{} {key}={rate}", t.major(), t.minor()),
            )?;
        }
    }
    Ok(())
}

/// Writes cgroup.freeze and waits for cgroup.events to report the new state.
pub fn freeze(d: &Path, frozen: bool) -> Result<(), CgroupError> {
    let v = if frozen { "1" } else { "0" };
    fs::write(&d.join("cgroup.freeze"), v)?;
    let events = d.join("cgroup.events");
    let want = u64::from(frozen);
    common::wait_until(
        &events,
        if frozen { "frozen" } else { "thawed" },
        Duration::from_secs(10),
        |_| Ok(fs::read_keyed(&events)?.get("frozen").copied() == Some(want)),
    )
    .inspect_err(|_| {
        if frozen {
            let _ = fs::write(&d.join("cgroup.freeze"), "0");
        }
    })
}

//! cgroup v1 (and hybrid): one directory per hierarchy, one file per limit.

use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::common::{self, Dirs, Layout};
use super::error::CgroupError;
use super::{devices, fs};

/// Creates `dir` below `mount`, copying `cpuset.cpus` and `cpuset.mems` down into every new
/// (or still empty) level: the kernel refuses processes in a cpuset without CPUs or nodes.
pub fn create_cpuset(mount: &Path, dir: &Path) -> Result<(), CgroupError> {
    let rel = dir.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut parent = mount.to_path_buf();
    for c in rel.components() {
        let cur = parent.join(c);
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: cur, source }),
        }
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = cur.join(f);
            if fs::read_opt(&mine)?.is_some_and(|v| v.is_empty()) {
                let from_parent = fs::read(&parent.join(f))?;
                if !from_parent.is_empty() {
                    fs::write(&mine, &from_parent)?;
                }
            }
        }
        parent = cur;
    }
    Ok(())
}

fn need<'a>(
    m: &'a impl Dirs,
    controller: &'static str,
    what: &'static str,
) -> Result<&'a Path, CgroupError> {
    m.v1_path(controller)
        .ok_or(CgroupError::NoController { controller, what })
}

pub fn apply(m: &impl Dirs, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(mem) = r.memory() {
        memory(need(m, "memory", "a memory limit")?, mem)?;
    }
    if let Some(cpu) = r.cpu() {
        self::cpu(m, cpu)?;
    }
    if let Some(p) = r.pids() {
        let d = need(m, "pids", "a pids limit")?;
        fs::write(&d.join("pids.max"), &common::pids_value(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        blkio(need(m, "blkio", "a blockIO limit")?, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        if !h.is_empty() {
            hugetlb(m, h)?;
        }
    }
    if let Some(net) = r.network() {
        if let Some(id) = net.class_id() {
            fs::write(
                &need(m, "net_cls", "network.classID")?.join("net_cls.classid"),
                &id.to_string(),
            )?;
        }
        if let Some(prios) = net.priorities() {
            let d = need(m, "net_prio", "network.priorities")?;
            for p in prios {
                fs::write(
                    &d.join("net_prio.ifpriomap"),
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
    }
    if let Some(rdma) = r.rdma() {
        if !rdma.is_empty() {
            let d = need(m, "rdma", "rdma limits")?;
            for line in common::rdma_lines(rdma) {
                fs::write(&d.join("rdma.max"), &line)?;
            }
        }
    }
    if let Some(devs) = r.devices() {
        let d = need(m, "devices", "device rules")?;
        devices::apply_v1(d, devs)?;
    }
    if let Some(u) = r.unified() {
        unified(m, u)?;
    }
    Ok(())
}

/// `linux.resources.unified` on v1/hybrid: only files present in the hybrid cgroup2 directory.
fn unified(
    m: &impl Dirs,
    u: &std::collections::HashMap<String, String>,
) -> Result<(), CgroupError> {
    let mut keys: Vec<_> = u.keys().collect();
    keys.sort();
    for k in keys {
        common::check_unified_key(k)?;
        let file = match (m.layout(), m.unified_path()) {
            (Layout::Hybrid, Some(d)) if d.join(k).exists() => d.join(k),
            _ => {
                return Err(CgroupError::Invalid(format!(
                    "linux.resources.unified[{k:?}]: unified resources require cgroup v2, and this \
                     host's cgroup2 hierarchy has no {k} file (use the v1 fields of linux.resources)"
                )))
            }
        };
        fs::write(&file, &u[k])?;
    }
    Ok(())
}

fn memory(d: &Path, mem: &LinuxMemory) -> Result<(), CgroupError> {
    // 0 means "not set", as in runc.
    let limit = mem.limit().filter(|l| *l != 0);
    let mut swap = mem.swap().filter(|s| *s != 0);
    if let Some(l) = limit {
        common::check_memory_limit(l)?;
    }
    let memsw = d.join("memory.memsw.limit_in_bytes");
    let has_swap = memsw.exists();
    if limit == Some(-1) && swap.is_none() && has_swap {
        swap = Some(-1);
    }
    if let (Some(l), Some(s)) = (limit, swap) {
        if l > 0 && s > 0 && s < l {
            return Err(CgroupError::Invalid(format!(
                "memory+swap limit ({s}) must be at least the memory limit ({l})"
            )));
        }
    }
    if swap.is_some() && !has_swap {
        crate::warning!("memory.swap ignored: this kernel does not account swap ({} is missing; boot with swapaccount=1)", memsw.display());
        swap = None;
    }
    let set_limit = |l: i64| -> Result<(), CgroupError> {
        let file = d.join("memory.limit_in_bytes");
        fs::write(&file, &l.to_string()).map_err(|e| match e {
            CgroupError::Write { ref source, .. }
                if source.raw_os_error() == Some(libc::EBUSY) =>
            {
                let usage = fs::read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0);
                let peak = fs::read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0);
                CgroupError::Invalid(format!(
                    "unable to set memory limit to {l} (current usage: {usage}, peak usage: {peak}): \
                     the container already uses more; raise the limit"
                ))
            }
            e => e,
        })
    };
    let set_swap = |s: i64| fs::write(&memsw, &s.to_string());
    match (limit, swap) {
        (Some(l), Some(s)) => {
            let cur = fs::read_u64(&d.join("memory.limit_in_bytes"))?;
            // The kernel wants memory <= memory+swap at every step: raise memsw first when
            // it grows.
            if s == -1 || cur < s as u64 {
                set_swap(s)?;
                set_limit(l)?;
            } else {
                set_limit(l)?;
                set_swap(s)?;
            }
        }
        (Some(l), None) => set_limit(l)?,
        (None, Some(s)) => set_swap(s)?,
        (None, None) => {}
    }
    if let Some(r) = mem.reservation() {
        fs::write(&d.join("memory.soft_limit_in_bytes"), &r.to_string())?;
    }
    if let Some(s) = mem.swappiness() {
        if s > 100 {
            return Err(CgroupError::Invalid(format!(
                "invalid memory.swappiness {s}: it must be between 0 and 100"
            )));
        }
        fs::write(&d.join("memory.swappiness"), &s.to_string())?;
    }
    if mem.disable_oom_killer() == Some(true) {
        fs::write(&d.join("memory.oom_control"), "1")?;
    }
    Ok(())
}

fn cpu(m: &impl Dirs, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let wants_cpu = cpu.shares().is_some()
        || cpu.quota().is_some()
        || cpu.period().is_some()
        || cpu.realtime_period().is_some()
        || cpu.realtime_runtime().is_some()
        || cpu.idle().is_some()
        || cpu.burst().is_some();
    if wants_cpu {
        let d = need(m, "cpu", "a cpu limit")?;
        if let Some(s) = cpu.shares() {
            let file = d.join("cpu.shares");
            fs::write(&file, &s.to_string())?;
            let got = fs::read_u64(&file)?;
            if got != s {
                let which = if s > got { "maximum" } else { "minimum" };
                return Err(CgroupError::Invalid(format!(
                    "cpu.shares {s} is out of range: the {which} allowed cpu-shares is {got}"
                )));
            }
        }
        // Period first, then quota; if the new period clashes with the old quota, write the
        // period again after the quota.
        let period_file = d.join("cpu.cfs_period_us");
        let mut period_later = None;
        if let Some(p) = cpu.period().filter(|p| *p != 0) {
            if let Err(e) = fs::write(&period_file, &p.to_string()) {
                if cpu.quota().is_none() {
                    return Err(e);
                }
                period_later = Some(p);
            }
        }
        if let Some(q) = cpu.quota().filter(|q| *q != 0) {
            let q = if q < 0 { -1 } else { q };
            fs::write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
            if let Some(p) = period_later {
                fs::write(&period_file, &p.to_string())?;
            }
        }
        if let Some(b) = cpu.burst() {
            common::write_if_present(&d.join("cpu.cfs_burst_us"), &b.to_string(), "cpu.burst")?;
        }
        if let Some(p) = cpu.realtime_period().filter(|p| *p != 0) {
            common::write_if_present(
                &d.join("cpu.rt_period_us"),
                &p.to_string(),
                "cpu.realtimePeriod",
            )?;
        }
        if let Some(r) = cpu.realtime_runtime().filter(|r| *r != 0) {
            common::write_if_present(
                &d.join("cpu.rt_runtime_us"),
                &r.to_string(),
                "cpu.realtimeRuntime",
            )?;
        }
        if let Some(i) = cpu.idle() {
            common::write_if_present(&d.join("cpu.idle"), &i.to_string(), "cpu.idle")?;
        }
    }
    let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let d = need(m, "cpuset", "cpu.cpus / cpu.mems")?;
        if let Some(c) = cpus {
            fs::write(&d.join("cpuset.cpus"), c)?;
        }
        if let Some(mm) = mems {
            fs::write(&d.join("cpuset.mems"), mm)?;
        }
    }
    Ok(())
}

fn blkio(d: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    // CFQ's blkio.weight is gone from current kernels; BFQ offers blkio.bfq.weight.
    let weight_file = ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .map(|f| d.join(f))
        .find(|p| p.exists());
    if let Some(w) = b.weight() {
        match &weight_file {
            Some(f) => fs::write(f, &w.to_string())?,
            None => crate::warning!("blockIO.weight ignored: no blkio.weight or blkio.bfq.weight (the I/O scheduler has no weights)"),
        }
    }
    if let Some(w) = b.leaf_weight() {
        common::write_if_present(
            &d.join("blkio.leaf_weight"),
            &w.to_string(),
            "blockIO.leafWeight",
        )?;
    }
    // CFQ took per-device weights in blkio.weight_device; BFQ in blkio.bfq.weight itself.
    let weight_device_file = weight_file.as_ref().map(|f| {
        if f.ends_with("blkio.weight") {
            d.join("blkio.weight_device")
        } else {
            f.clone()
        }
    });
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            match &weight_device_file {
                Some(f) => fs::write(f, &format!("{}:{} {}", wd.major(), wd.minor(), w))?,
                None => {
                    crate::warning!(
                        "blockIO.weightDevice ignored: the I/O scheduler has no weights"
                    )
                }
            }
        }
        if let Some(w) = wd.leaf_weight() {
            common::write_if_present(
                &d.join("blkio.leaf_weight_device"),
                &format!("{}:{} {}", wd.major(), wd.minor(), w),
                "blockIO.weightDevice.leafWeight",
            )?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (list, file) in throttles {
        for t in list.iter().flatten() {
            fs::write(
                &d.join(file),
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

fn hugetlb(
    m: &impl Dirs,
    limits: &[oci_spec::runtime::LinuxHugepageLimit],
) -> Result<(), CgroupError> {
    // Prefer a v1 hugetlb hierarchy; hybrid hosts may have hugetlb only on cgroup2.
    if let Some(d) = m.v1_path("hugetlb") {
        for l in limits {
            let file = d.join(format!("hugetlb.{}.limit_in_bytes", l.page_size()));
            common::check_page_size(&file, l.page_size())?;
            let v = if l.limit() < 0 {
                "-1".to_string()
            } else {
                l.limit().to_string()
            };
            fs::write(&file, &v)?;
        }
        return Ok(());
    }
    match m.unified_path() {
        Some(u) if common::has_controller(u, "hugetlb") => common::hugetlb(u, limits),
        _ => Err(CgroupError::NoController {
            controller: "hugetlb",
            what: "hugepageLimits",
        }),
    }
}

/// Writes FROZEN or THAWED to `freezer.state` and waits until the state settles.
pub fn freeze(d: &Path, frozen: bool) -> Result<(), CgroupError> {
    let file = d.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    fs::write(&file, want)?;
    let res = common::wait_until(&file, want, Duration::from_secs(10), |i| {
        // A freeze can stall in FREEZING behind a task in an uninterruptible sleep: kick it.
        if i > 0 && i % 50 == 0 {
            fs::write(&file, want)?;
        }
        Ok(fs::read(&file)? == want)
    });
    if res.is_err() && frozen {
        let _ = fs::write(&file, "THAWED");
    }
    res
}

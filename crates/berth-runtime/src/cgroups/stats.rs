//! Resource usage in the shape of runc's `events --stats` data.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::common::{self, Dirs};
use super::error::CgroupError;
use super::fs;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    /// Processes killed by the OOM killer in this cgroup.
    #[serde(rename = "oomKill")]
    pub oom_kill: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn page_sizes() -> Vec<String> {
    common::host_page_sizes()
}

/// Parses v1 blkio files: "8:0 Read 4096" lines (the "Total" line is skipped).
fn blkio_v1(path: &Path) -> Result<Vec<BlkioEntry>, CgroupError> {
    let mut out = Vec::new();
    for line in fs::read_opt(path)?.unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let Some((maj, min)) = f[0].split_once(':') else {
            continue;
        };
        out.push(BlkioEntry {
            major: maj.parse().unwrap_or(0),
            minor: min.parse().unwrap_or(0),
            op: f[1].to_string(),
            value: f[2].parse().unwrap_or(0),
        });
    }
    Ok(out)
}

fn unlimited(v: u64) -> u64 {
    // v1 reports "no limit" as a huge page-aligned number; v2 as "max".
    if v >= i64::MAX as u64 / 4096 * 4096 {
        u64::MAX
    } else {
        v
    }
}

pub fn v1(m: &impl Dirs) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    if let Some(d) = m.v1_path("cpuacct") {
        s.cpu.usage.total = fs::read_u64(&d.join("cpuacct.usage"))?;
        s.cpu.usage.percpu = fs::read_opt(&d.join("cpuacct.usage_percpu"))?
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let st = fs::read_keyed(&d.join("cpuacct.stat"))?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ns = 1_000_000_000 / hz;
        s.cpu.usage.user = st.get("user").copied().unwrap_or(0) * ns;
        s.cpu.usage.kernel = st.get("system").copied().unwrap_or(0) * ns;
    }
    if let Some(d) = m.v1_path("cpu") {
        let st = fs::read_keyed(&d.join("cpu.stat"))?;
        s.cpu.throttling = Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: st.get("throttled_time").copied().unwrap_or(0),
        };
    }
    if let Some(d) = m.v1_path("memory") {
        let entry = |prefix: &str| -> Result<MemoryEntry, CgroupError> {
            Ok(MemoryEntry {
                limit: unlimited(fs::read_u64(&d.join(format!("{prefix}limit_in_bytes")))?),
                usage: fs::read_u64(&d.join(format!("{prefix}usage_in_bytes")))?,
                max: fs::read_u64(&d.join(format!("{prefix}max_usage_in_bytes")))?,
                failcnt: fs::read_u64(&d.join(format!("{prefix}failcnt")))?,
            })
        };
        s.memory.usage = entry("memory.")?;
        s.memory.swap = entry("memory.memsw.")?;
        s.memory.kernel = entry("memory.kmem.")?;
        s.memory.raw = fs::read_keyed(&d.join("memory.stat"))?;
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        s.memory.oom_kill = fs::read_keyed(&d.join("memory.oom_control"))?
            .get("oom_kill")
            .copied()
            .unwrap_or(0);
    }
    if let Some(d) = m.v1_path("pids") {
        s.pids.current = fs::read_u64(&d.join("pids.current"))?;
        s.pids.limit = limit_or_zero(fs::read_u64(&d.join("pids.max"))?);
    }
    if let Some(d) = m.v1_path("blkio") {
        s.blkio.io_service_bytes_recursive =
            blkio_v1(&d.join("blkio.throttle.io_service_bytes_recursive"))?;
        s.blkio.io_serviced_recursive = blkio_v1(&d.join("blkio.throttle.io_serviced_recursive"))?;
    }
    if let Some(d) = m.v1_path("hugetlb") {
        for size in page_sizes() {
            let p = |f: &str| d.join(format!("hugetlb.{size}.{f}"));
            s.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage: fs::read_u64(&p("usage_in_bytes"))?,
                    max: fs::read_u64(&p("max_usage_in_bytes"))?,
                    failcnt: fs::read_u64(&p("failcnt"))?,
                },
            );
        }
    } else if let Some(u) = m.unified_path() {
        hugetlb_v2(u, &mut s)?;
    }
    Ok(s)
}

fn limit_or_zero(v: u64) -> u64 {
    if v == u64::MAX {
        0
    } else {
        v
    }
}

fn hugetlb_v2(d: &Path, s: &mut Stats) -> Result<(), CgroupError> {
    if !common::has_controller(d, "hugetlb") {
        return Ok(());
    }
    for size in page_sizes() {
        let p = |f: &str| d.join(format!("hugetlb.{size}.{f}"));
        s.hugetlb.insert(
            size.clone(),
            Hugetlb {
                usage: fs::read_u64(&p("current"))?,
                max: 0,
                failcnt: fs::read_keyed(&p("events"))?
                    .get("max")
                    .copied()
                    .unwrap_or(0),
            },
        );
    }
    Ok(())
}

pub fn v2(m: &impl Dirs) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    let Some(d) = m.unified_path() else {
        return Ok(s);
    };
    let cpu = fs::read_keyed(&d.join("cpu.stat"))?;
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    s.cpu.usage.total = us("usage_usec");
    s.cpu.usage.user = us("user_usec");
    s.cpu.usage.kernel = us("system_usec");
    s.cpu.throttling = Throttling {
        periods: cpu.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    if d.join("memory.current").exists() {
        let events = fs::read_keyed(&d.join("memory.events"))?;
        let usage = fs::read_u64(&d.join("memory.current"))?;
        let limit = fs::read_u64(&d.join("memory.max"))?;
        s.memory.usage = MemoryEntry {
            limit,
            usage,
            max: fs::read_u64(&d.join("memory.peak"))?,
            failcnt: events.get("max").copied().unwrap_or(0),
        };
        // v1 reported swap as memory+swap; keep that meaning.
        let swap = fs::read_u64(&d.join("memory.swap.current"))?;
        let swap_max = fs::read_u64(&d.join("memory.swap.max"))?;
        s.memory.swap = MemoryEntry {
            limit: limit.saturating_add(swap_max),
            usage: usage + swap,
            max: 0,
            failcnt: 0,
        };
        s.memory.raw = fs::read_keyed(&d.join("memory.stat"))?;
        s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
        s.memory.oom_kill = events.get("oom_kill").copied().unwrap_or(0);
    }
    if d.join("pids.current").exists() {
        s.pids.current = fs::read_u64(&d.join("pids.current"))?;
        s.pids.limit = limit_or_zero(fs::read_u64(&d.join("pids.max"))?);
    }
    for line in fs::read_opt(&d.join("io.stat"))?
        .unwrap_or_default()
        .lines()
    {
        let mut it = line.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (major, minor) = (maj.parse().unwrap_or(0), min.parse().unwrap_or(0));
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let value = v.parse().unwrap_or(0);
            let (list, op) = match k {
                "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    hugetlb_v2(d, &mut s)?;
    Ok(s)
}

//! What cgroup v1 and v2 share: the host layout, the view of a container's directories the
//! resource writers need ([`Dirs`]), value conversions and checks, and the poll loop of the
//! freezers. `v1` and `v2` depend on this module and never on each other or on `mod.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxHugepageLimit;
use serde::{Deserialize, Serialize};

use super::error::CgroupError;
use super::fs;

/// How cgroups are mounted on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only cgroup v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 hierarchy elsewhere (systemd's "hybrid" mode).
    Hybrid,
    /// A single cgroup2 hierarchy at /sys/fs/cgroup.
    V2,
}

/// The directories of one container's cgroups, as the resource writers and statistics see
/// them (implemented by [`super::Manager`]).
pub trait Dirs {
    /// The host's layout.
    fn layout(&self) -> Layout;
    /// The container's directory in the v1 hierarchy holding `controller`.
    fn v1_path(&self, controller: &str) -> Option<&Path>;
    /// The container's directory in the cgroup2 hierarchy (pure v2, or hybrid's unified mount).
    fn unified_path(&self) -> Option<&Path>;
}

/// The smallest memory limit berth accepts (as Docker): below it a container cannot even
/// start its first process.
pub const MIN_MEMORY_LIMIT: i64 = 6 * 1024 * 1024;

/// Whether `controller` is enabled for the cgroup `dir`.
pub fn has_controller(dir: &Path, controller: &str) -> bool {
    fs::read_opt(&dir.join("cgroup.controllers"))
        .ok()
        .flatten()
        .is_some_and(|c| c.split_whitespace().any(|x| x == controller))
}

/// OCI pids.limit: positive is the limit, 0 or negative is no limit.
pub fn pids_value(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

/// `rdma.max` lines for `linux.resources.rdma`.
pub fn rdma_lines(rdma: &HashMap<String, oci_spec::runtime::LinuxRdma>) -> Vec<String> {
    let mut names: Vec<_> = rdma.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|dev| {
            let r = &rdma[dev];
            let mut parts = vec![dev.clone()];
            if let Some(h) = r.hca_handles() {
                parts.push(format!("hca_handle={h}"));
            }
            if let Some(o) = r.hca_objects() {
                parts.push(format!("hca_object={o}"));
            }
            (parts.len() > 1).then(|| parts.join(" "))
        })
        .collect()
}

/// Refuses keys that would escape the cgroup directory or write cgroup core files.
pub fn check_unified_key(k: &str) -> Result<(), CgroupError> {
    if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
        return Err(CgroupError::Invalid(format!(
            "linux.resources.unified: invalid key {k:?}: it must be a cgroup file name such as memory.high"
        )));
    }
    if k.starts_with("cgroup.") {
        return Err(CgroupError::Invalid(format!(
            "linux.resources.unified: {k:?} is a cgroup core file the runtime manages itself"
        )));
    }
    Ok(())
}

/// The hugepage sizes of this host, as cgroup file names spell them (2MB, 1GB).
pub fn host_page_sizes() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(kb) = name
                .strip_prefix("hugepages-")
                .and_then(|s| s.strip_suffix("kB"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push(page_size_name(kb));
            }
        }
    }
    out.sort();
    out
}

/// 2048 (kB) -> "2MB", 1048576 -> "1GB", 64 -> "64KB".
pub fn page_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb & ((1 << 20) - 1) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb & ((1 << 10) - 1) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// Fails, naming the host's page sizes, when the hugetlb `file` of `size` does not exist.
pub fn check_page_size(file: &Path, size: &str) -> Result<(), CgroupError> {
    if file.exists() {
        return Ok(());
    }
    Err(CgroupError::Invalid(format!(
        "hugepage size {size:?} is not supported here ({} does not exist); this host has: {}",
        file.display(),
        host_page_sizes().join(", ")
    )))
}

/// Writes `hugepageLimits` to cgroup2's `hugetlb.<size>.max` (and `.rsvd.max` where present).
pub fn hugetlb(d: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        let file = d.join(format!("hugetlb.{}.max", l.page_size()));
        check_page_size(&file, l.page_size())?;
        let v = if l.limit() < 0 {
            "max".to_string()
        } else {
            l.limit().to_string()
        };
        fs::write(&file, &v)?;
        let rsvd = d.join(format!("hugetlb.{}.rsvd.max", l.page_size()));
        if rsvd.exists() {
            fs::write(&rsvd, &v)?;
        }
    }
    Ok(())
}

/// Refuses memory limits below [`MIN_MEMORY_LIMIT`] and negative ones other than -1.
pub fn check_memory_limit(l: i64) -> Result<(), CgroupError> {
    if l > 0 && l < MIN_MEMORY_LIMIT {
        return Err(CgroupError::Invalid(format!(
            "memory limit too low: {l} bytes; the minimum allowed memory limit is 6MB ({MIN_MEMORY_LIMIT} bytes)"
        )));
    }
    if l < -1 {
        return Err(CgroupError::Invalid(format!(
            "invalid memory limit {l}: use a positive number of bytes, or -1 for no limit"
        )));
    }
    Ok(())
}

/// Writes a file the kernel may lack (realtime group scheduling, burst, idle): a warning
/// instead of an error when it is absent.
pub fn write_if_present(file: &Path, value: &str, field: &str) -> Result<(), CgroupError> {
    if file.exists() {
        fs::write(file, value)
    } else {
        crate::warning!(
            "{field} ignored: this kernel has no {}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        Ok(())
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(
    path: &Path,
    state: &'static str,
    timeout: Duration,
    mut check: impl FnMut(u32) -> Result<bool, CgroupError>,
) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut i = 0u32;
    loop {
        if check(i)? {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(CgroupError::Timeout {
                path: path.to_path_buf(),
                state,
                secs: timeout.as_secs(),
            });
        }
        i += 1;
        std::thread::sleep(Duration::from_micros(if i < 10 { 100 } else { 2000 }));
    }
}

//! Parsing of `/proc/self/mountinfo` and `/proc/self/cgroup` for the cgroup manager.

use berth_sys::mountinfo::unescape;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// v1 controllers berth creates a directory for (plus the `name=systemd` hierarchy).
pub const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "name=systemd",
];

/// One cgroup filesystem mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The path inside the hierarchy that is mounted there (field 4 of mountinfo).
    pub root: String,
    /// `true` for cgroup2.
    pub v2: bool,
    /// The v1 controllers of this hierarchy (empty for cgroup2).
    pub controllers: Vec<String>,
}

/// Every cgroup (v1) and cgroup2 mount in a mountinfo text, in order.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let fstype = post[0];
        let v2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            post[2]
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_string)
                .collect()
        };
        mounts.push(CgroupMount {
            mount_point: unescape(pre[4]),
            root: unescape(pre[3]).to_string_lossy().into_owned(),
            v2,
            controllers,
        });
    }
    mounts
}

/// `/proc/<pid>/cgroup` as a map from each controller (`memory`, `name=systemd`, and `""`
/// for the cgroup2 line) to the process's path in that hierarchy.
pub fn parse_proc_cgroup(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if ctrls.is_empty() {
            map.insert(String::new(), path.to_string());
        } else {
            for c in ctrls.split(',') {
                map.insert(c.to_string(), path.to_string());
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_cgroup_lines() {
        let m = parse_proc_cgroup("2:cpu,cpuacct:/a\n1:name=systemd:/s\n0::/u\n");
        assert_eq!(m["cpu"], "/a");
        assert_eq!(m["cpuacct"], "/a");
        assert_eq!(m["name=systemd"], "/s");
        assert_eq!(m[""], "/u");
    }

    #[test]
    fn parses_optional_fields_and_super_options() {
        let t = "30 24 0:26 /docker/x /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 master:2 - cgroup cgroup rw,cpu,cpuacct\n\
                 31 24 0:27 / /sys/fs/cgroup/x rw - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].root, "/docker/x");
        assert_eq!(m[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(
            m[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
    }
}

//! Docker's default seccomp profile, resolved for a container's capabilities
//! and the host architecture into the OCI `linux.seccomp` form.

use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile is not valid JSON for berth: {0}")]
    Parse(#[from] serde_json::Error),
}

#[derive(Deserialize, Default)]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

#[derive(Deserialize)]
struct Rule {
    names: Vec<String>,
    action: String,
    #[serde(default, rename = "errnoRet")]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize)]
struct Profile {
    #[serde(rename = "defaultAction")]
    default_action: String,
    #[serde(default, rename = "defaultErrnoRet")]
    default_errno_ret: Option<u32>,
    #[serde(default, rename = "archMap")]
    arch_map: BTreeMap<String, Vec<String>>,
    syscalls: Vec<Rule>,
}

/// Docker's arch names that a host arch covers (amd64 runs x86 and x32 code too).
fn arch_family(arch: &str) -> Vec<&str> {
    match arch {
        "amd64" => vec!["amd64", "x86", "x32"],
        "arm64" => vec!["arm64", "arm"],
        "s390x" => vec!["s390x", "s390"],
        a => vec![a],
    }
}

/// Docker's default profile for `caps` on `arch`.
pub fn default_profile(caps: &[String], arch: &str) -> Result<Value, SeccompError> {
    from_json(DEFAULT_PROFILE, caps, arch)
}

/// A profile in Docker's format (rules with includes/excludes) or already in
/// OCI form, resolved for `caps` and `arch`.
pub fn from_json(text: &str, caps: &[String], arch: &str) -> Result<Value, SeccompError> {
    let raw: Value = serde_json::from_str(text)?;
    if raw.get("archMap").is_none() && raw.get("architectures").is_some() {
        return Ok(raw);
    }
    let p: Profile = serde_json::from_value(raw)?;
    let family = arch_family(arch);
    let mut syscalls = Vec::new();
    for r in p.syscalls {
        let inc_caps = r.includes.caps.iter().all(|c| caps.contains(c));
        let inc_arch = r.includes.arches.is_empty()
            || r.includes
                .arches
                .iter()
                .any(|a| family.contains(&a.as_str()));
        let exc_caps =
            !r.excludes.caps.is_empty() && r.excludes.caps.iter().any(|c| caps.contains(c));
        let exc_arch = r.excludes.arches.iter().any(|a| a == arch);
        if !(inc_caps && inc_arch) || exc_caps || exc_arch {
            continue;
        }
        let mut s = json!({"names": r.names, "action": r.action});
        if let Some(e) = r.errno_ret {
            s["errnoRet"] = json!(e);
        }
        if !r.args.is_empty() {
            s["args"] = Value::Array(r.args);
        }
        syscalls.push(s);
    }
    let arches = p.arch_map.get(arch).cloned().unwrap_or_default();
    let mut out = json!({
        "defaultAction": p.default_action,
        "architectures": arches,
        "syscalls": syscalls,
    });
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &Value, name: &str) -> bool {
        p["syscalls"].as_array().unwrap().iter().any(|s| {
            s["action"] == "SCMP_ACT_ALLOW"
                && s["args"].is_null()
                && s["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    #[test]
    fn rules_follow_caps_and_arch() {
        let default: Vec<String> = crate::spec::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = default_profile(&default, "amd64").unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(p["architectures"][0], "SCMP_ARCH_X86_64");
        assert!(allowed(&p, "read"));
        assert!(allowed(&p, "arch_prctl"));
        assert!(!allowed(&p, "mount"));
        assert!(!allowed(&p, "unshare"));
        assert!(!allowed(&p, "set_tls"));
        assert!(allowed(&p, "chroot"));
        // clone3 answers ENOSYS without CAP_SYS_ADMIN so libcs fall back to clone.
        assert!(p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["names"][0] == "clone3" && s["errnoRet"] == 38));
        let mut admin = default.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let p = default_profile(&admin, "amd64").unwrap();
        assert!(allowed(&p, "mount"));
        assert!(allowed(&p, "clone"));
        let p = default_profile(&default, "arm64").unwrap();
        assert!(allowed(&p, "set_tls"));
        assert!(!allowed(&p, "arch_prctl"));
    }
}

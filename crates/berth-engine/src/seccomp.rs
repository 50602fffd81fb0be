//! Docker's default seccomp profile, resolved for a container's capabilities
//! and the host architecture into the OCI `linux.seccomp` form.

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};
use serde::de::IntoDeserializer;
use serde::Deserialize;
use std::collections::BTreeMap;

const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// Why a seccomp profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile is not valid JSON for berth: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("seccomp profile: unknown architecture {0:?}")]
    Arch(String),
}

#[derive(Deserialize, Default)]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

/// A rule of Docker's format: OCI's syscall rule plus the capabilities and architectures
/// it applies to.
#[derive(Deserialize)]
struct Rule {
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default, rename = "errnoRet")]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

/// Docker's profile format.
#[derive(Deserialize)]
struct Profile {
    #[serde(rename = "defaultAction")]
    default_action: LinuxSeccompAction,
    #[serde(default, rename = "defaultErrnoRet")]
    default_errno_ret: Option<u32>,
    /// Docker's arch name -> the libseccomp architectures it covers. Kept as names: only
    /// the host's entry is converted, so a profile may list arches oci-spec lacks.
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
pub fn default_profile(caps: &[String], arch: &str) -> Result<LinuxSeccomp, SeccompError> {
    resolve(serde_json::from_str(DEFAULT_PROFILE)?, caps, arch)
}

/// A profile in Docker's format (rules with includes/excludes) or already in
/// OCI form, resolved for `caps` and `arch`.
pub fn from_json(text: &str, caps: &[String], arch: &str) -> Result<LinuxSeccomp, SeccompError> {
    let raw: serde_json::Value = serde_json::from_str(text)?;
    if raw.get("archMap").is_none() && raw.get("architectures").is_some() {
        return Ok(serde_json::from_value(raw)?);
    }
    resolve(serde_json::from_value(raw)?, caps, arch)
}

/// The rules of a Docker profile that apply to `caps` on `arch`, in OCI form.
fn resolve(p: Profile, caps: &[String], arch: &str) -> Result<LinuxSeccomp, SeccompError> {
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
        let mut s = LinuxSyscall::default();
        s.set_names(r.names)
            .set_action(r.action)
            .set_errno_ret(r.errno_ret)
            .set_args((!r.args.is_empty()).then_some(r.args));
        syscalls.push(s);
    }
    let arches = p
        .arch_map
        .get(arch)
        .into_iter()
        .flatten()
        .map(|name| {
            let de: serde::de::value::StrDeserializer<serde::de::value::Error> =
                name.as_str().into_deserializer();
            Arch::deserialize(de).map_err(|_| SeccompError::Arch(name.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = LinuxSeccomp::default();
    out.set_default_action(p.default_action)
        .set_default_errno_ret(p.default_errno_ret)
        .set_architectures(Some(arches))
        .set_flags(None)
        .set_listener_path(None)
        .set_listener_metadata(None)
        .set_syscalls(Some(syscalls));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().is_none()
                && s.names().iter().any(|n| n == name)
        })
    }

    #[test]
    fn rules_follow_caps_and_arch() {
        let default: Vec<String> = crate::spec::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = default_profile(&default, "amd64").unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(p.architectures().as_ref().unwrap()[0], Arch::ScmpArchX86_64);
        assert!(allowed(&p, "read"));
        assert!(allowed(&p, "arch_prctl"));
        assert!(!allowed(&p, "mount"));
        assert!(!allowed(&p, "unshare"));
        assert!(!allowed(&p, "set_tls"));
        assert!(allowed(&p, "chroot"));
        // clone3 answers ENOSYS without CAP_SYS_ADMIN so libcs fall back to clone.
        assert!(p
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.names()[0] == "clone3" && s.errno_ret() == Some(38)));
        let mut admin = default.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let p = default_profile(&admin, "amd64").unwrap();
        assert!(allowed(&p, "mount"));
        assert!(allowed(&p, "clone"));
        let p = default_profile(&default, "arm64").unwrap();
        assert!(allowed(&p, "set_tls"));
        assert!(!allowed(&p, "arch_prctl"));
    }

    #[test]
    fn every_architecture_of_the_default_profile_is_known() {
        for arch in ["amd64", "arm64", "ppc64le", "s390x", "riscv64"] {
            let p = default_profile(&[], arch).unwrap();
            assert!(!p.architectures().as_ref().unwrap().is_empty(), "{arch}");
        }
    }

    #[test]
    fn an_oci_profile_is_used_as_it_is() {
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#;
        let p = from_json(text, &[], "amd64").unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(p.syscalls().as_ref().unwrap()[0].errno_ret(), Some(13));
        assert!(from_json("{", &[], "amd64").is_err());
    }
}

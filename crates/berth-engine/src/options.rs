//! The options of `berth run` / `berth create` (the CLI fills them in; the record keeps
//! them as the container's HostConfig).
//!
//! Flags with a syntax of their own are parsed once, where they enter (the CLI), into
//! typed values ([`Flag`]`<`[`Memory`]`>`, [`Bytes`], [`Cpus`], [`Ulimit`], [`Sysctl`], [`MemorySwap`],
//! [`DeviceSpec`], [`Publish`], [`SecurityOpt`], [`Ip`], [`Cap`]),
//! with errors that name the flag. A [`Flag`] keeps the text as given too: the record
//! stores it, and `inspect` shows it, exactly as before the values were typed.

use crate::caps::Cap;
use berth_net::PortMapping;
use oci_spec::runtime::PosixRlimitType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::str::FromStr;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RunOptions {
    pub name: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
    pub rm: bool,
    pub env: Vec<String>,
    pub env_files: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub group_add: Vec<String>,
    pub entrypoint: Option<String>,
    /// Arguments after the image name.
    pub cmd: Vec<String>,
    pub hostname: Option<String>,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    #[serde(deserialize_with = "lenient_opt")]
    pub memory: Option<Flag<Memory>>,
    /// `--memory-swap`: memory plus swap, or -1.
    #[serde(deserialize_with = "lenient_opt")]
    pub memory_swap: Option<Flag<MemorySwap>>,
    #[serde(deserialize_with = "lenient_opt")]
    pub cpus: Option<Flag<Cpus>>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    #[serde(deserialize_with = "lenient_vec")]
    pub ulimits: Vec<Flag<Ulimit>>,
    #[serde(deserialize_with = "lenient_vec")]
    pub cap_add: Vec<Flag<Cap>>,
    #[serde(deserialize_with = "lenient_vec")]
    pub cap_drop: Vec<Flag<Cap>>,
    pub privileged: bool,
    #[serde(deserialize_with = "lenient_vec")]
    pub security_opt: Vec<Flag<SecurityOpt>>,
    #[serde(deserialize_with = "lenient_vec")]
    pub devices: Vec<Flag<DeviceSpec>>,
    #[serde(deserialize_with = "lenient_vec")]
    pub sysctls: Vec<Flag<Sysctl>>,
    /// `--shm-size`: the size of `/dev/shm`.
    #[serde(deserialize_with = "lenient_opt")]
    pub shm_size: Option<Flag<Bytes>>,
    pub init: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    /// `--network`: "bridge" (empty means it too), "none", "host", "container:NAME" or a
    /// user-defined network's name.
    pub network: String,
    pub labels: Vec<String>,
    pub add_hosts: Vec<String>,
    #[serde(deserialize_with = "lenient_vec")]
    pub dns: Vec<Flag<Ip>>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--ip`, `--mac-address`, `--network-alias`.
    #[serde(deserialize_with = "lenient_opt")]
    pub ip: Option<Flag<Ip>>,
    pub mac_address: Option<String>,
    pub network_aliases: Vec<String>,
    /// `-p`, and `-P`.
    #[serde(deserialize_with = "lenient_vec")]
    pub publish: Vec<Flag<Publish>>,
    pub publish_all: bool,
}

/// The longest `--name`: a DNS name's limit, which also keeps the name index's entry
/// (`containers/.names/<name>`) within the 255-byte file name limit.
pub const MAX_NAME_LEN: usize = 253;

impl RunOptions {
    /// Checks what each flag's value alone cannot: the name's length, `-e` names, and
    /// `--cpus` against this host's CPUs (as Docker's daemon does at create). The error names
    /// the flag.
    pub fn check(&self) -> Result<(), OptionError> {
        if let Some(n) = &self.name {
            if n.len() > MAX_NAME_LEN {
                return Err(bad(
                    "--name",
                    &format!(
                        "{}...",
                        &n[..n.char_indices().nth(20).map_or(n.len(), |(i, _)| i)]
                    ),
                    format!(
                        "a name is at most {MAX_NAME_LEN} characters long, this one has {}",
                        n.len()
                    ),
                ));
            }
        }
        for e in &self.env {
            check_env("--env", e)?;
        }
        if let Some(c) = &self.cpus {
            c.check_host("--cpus", c.as_str(), host_cpus())?;
        }
        if let Some(sig) = &self.stop_signal {
            if parse_signal(sig).is_none() {
                return Err(bad(
                    "--stop-signal",
                    sig,
                    "not a signal: use a name such as SIGTERM or TERM, or a number",
                ));
            }
        }
        Ok(())
    }
}

/// A `-e NAME[=VALUE]`: the name must not be empty (Docker: "invalid environment variable").
fn check_env(flag: &'static str, e: &str) -> Result<(), OptionError> {
    let name = e.split_once('=').map_or(e, |(k, _)| k);
    if name.is_empty() {
        return Err(bad(
            flag,
            e,
            "the variable name is empty (expected NAME=VALUE or NAME)",
        ));
    }
    Ok(())
}

/// The CPUs this process may run on (`sched_getaffinity`, as Docker's `NCPU`), at least 1.
pub fn host_cpus() -> usize {
    // SAFETY: `cpu_set_t` is plain data, zeroed is a valid empty set; the call writes at most
    // `size_of::<cpu_set_t>()` bytes into it, and CPU_COUNT only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (libc::CPU_COUNT(&set) as usize).max(1);
        }
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A flag's value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} value {value:?}: {why}")]
pub struct OptionError {
    /// The flag, as the user types it (`--memory`).
    pub flag: &'static str,
    /// What the error names: usually the whole value.
    pub value: String,
    pub why: String,
}

fn bad(flag: &'static str, value: &str, why: impl Into<String>) -> OptionError {
    OptionError {
        flag,
        value: value.to_string(),
        why: why.into(),
    }
}

/// A value with a syntax of its own, parsed from a flag's text.
pub trait FlagValue: Sized {
    /// Why a text does not parse ([`OptionError`] unless the value's own crate has one).
    type Error: std::error::Error + Send + Sync + 'static;
    /// Parses `text`, given to `flag`.
    fn parse(flag: &'static str, text: &str) -> Result<Self, Self::Error>;
}

/// A flag's value: the text as given (what the record stores and `inspect` shows) and
/// what it means. It serializes as the text and is parsed again from it on loading.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag<T> {
    text: String,
    parsed: T,
}

impl<T: FlagValue> Flag<T> {
    /// Parses `text`, given to `flag`.
    pub fn parse(flag: &'static str, text: &str) -> Result<Self, T::Error> {
        Ok(Flag {
            parsed: T::parse(flag, text)?,
            text: text.to_string(),
        })
    }

    /// Parses every value of a repeated flag.
    pub fn parse_all(flag: &'static str, texts: &[String]) -> Result<Vec<Self>, T::Error> {
        texts.iter().map(|t| Self::parse(flag, t)).collect()
    }

    /// Parses an optional flag.
    pub fn parse_opt(flag: &'static str, text: Option<&str>) -> Result<Option<Self>, T::Error> {
        text.map(|t| Self::parse(flag, t)).transpose()
    }
}

impl<T> Flag<T> {
    /// The text as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed value.
    pub fn value(&self) -> &T {
        &self.parsed
    }
}

impl<T> std::ops::Deref for Flag<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.parsed
    }
}

impl<T> Serialize for Flag<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de, T: FlagValue> Deserialize<'de> for Flag<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Flag::parse("option", &text).map_err(serde::de::Error::custom)
    }
}

/// Records written before the values were typed were not checked when they were made
/// (a bad value failed each start): such a value is dropped, with a warning, rather than
/// making the whole record, and so `ps`, unreadable.
fn lenient_opt<'de, D: Deserializer<'de>, T: FlagValue>(d: D) -> Result<Option<Flag<T>>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.and_then(|t| keep(Flag::parse("option", &t))))
}

/// [`lenient_opt`] for repeated flags.
fn lenient_vec<'de, D: Deserializer<'de>, T: FlagValue>(d: D) -> Result<Vec<Flag<T>>, D::Error> {
    let texts: Vec<String> = Vec::deserialize(d)?;
    Ok(texts
        .iter()
        .filter_map(|t| keep(Flag::parse("option", t)))
        .collect())
}

fn keep<T, E: std::fmt::Display>(r: Result<T, E>) -> Option<T> {
    r.map_err(|e| tracing::warn!("stored container option dropped: {e}"))
        .ok()
}

/// A size in bytes: `64m`, `1g`, `512k`, `1024b`, plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl FlagValue for Bytes {
    type Error = OptionError;
    fn parse(flag: &'static str, text: &str) -> Result<Self, OptionError> {
        parse_bytes(text).map(Bytes).map_err(|e| bad(flag, text, e))
    }
}

/// `--memory`: a size of at least 6 MiB, as Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Memory(pub u64);

/// The smallest `--memory`.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

impl FlagValue for Memory {
    type Error = OptionError;
    fn parse(flag: &'static str, text: &str) -> Result<Self, OptionError> {
        let Bytes(v) = Bytes::parse(flag, text)?;
        if v < MIN_MEMORY {
            return Err(bad(flag, text, "the minimum memory limit is 6m"));
        }
        Ok(Memory(v))
    }
}

/// `--memory-swap`: a limit on memory plus swap, or unlimited swap (`-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySwap {
    Unlimited,
    Limit(u64),
}

impl FlagValue for MemorySwap {
    type Error = OptionError;
    fn parse(flag: &'static str, text: &str) -> Result<Self, OptionError> {
        if text == "-1" {
            return Ok(MemorySwap::Unlimited);
        }
        parse_bytes(text)
            .map(MemorySwap::Limit)
            .map_err(|e| bad(flag, text, e))
    }
}

/// `--cpus`: a number of CPUs above 0, such as 1.5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpus(f64);

impl Cpus {
    /// The CFS quota for `period_us`, rounded to the microsecond.
    pub fn quota(self, period_us: u64) -> i64 {
        (self.0 * period_us as f64).round() as i64
    }

    /// Docker's `NanoCpus`.
    pub fn nano_cpus(self) -> i64 {
        (self.0 * 1e9) as i64
    }

    /// Refuses a value outside 0.01 to the host's number of CPUs, with Docker's words.
    pub fn check_host(
        self,
        flag: &'static str,
        text: &str,
        cpus: usize,
    ) -> Result<(), OptionError> {
        let nano = self.nano_cpus();
        if nano < 10_000_000 || nano > cpus as i64 * 1_000_000_000 {
            return Err(bad(
                flag,
                text,
                format!(
                    "Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
                ),
            ));
        }
        Ok(())
    }
}

impl FlagValue for Cpus {
    type Error = OptionError;
    fn parse(flag: &'static str, text: &str) -> Result<Self, OptionError> {
        let v: f64 = text
            .parse()
            .map_err(|_| bad(flag, text, "expected a number such as 1.5"))?;
        if v <= 0.0 {
            return Err(bad(flag, text, "it must be above 0"));
        }
        Ok(Cpus(v))
    }
}

/// `--ulimit name=soft[:hard]`; `-1` and `unlimited` are no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub kind: PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
}

/// The names `--ulimit` knows (`RLIMIT_` + the name in capitals).
pub const ULIMIT_NAMES: [&str; 16] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
    "as",
];

impl FlagValue for Ulimit {
    type Error = OptionError;
    fn parse(flag: &'static str, text: &str) -> Result<Self, OptionError> {
        let (name, vals) = text
            .split_once('=')
            .ok_or_else(|| bad(flag, text, "expected name=soft[:hard]"))?;
        let value = |v: &str| -> Result<u64, OptionError> {
            if v == "-1" || v == "unlimited" {
                return Ok(u64::MAX);
            }
            v.parse::<u64>()
                .map_err(|_| bad(flag, name, format!("{v:?} is not a number")))
        };
        let (soft, hard) = match vals.split_once(':') {
            Some((s, h)) => (value(s)?, value(h)?),
            None => {
                let v = value(vals)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(bad(flag, text, "the soft limit is above the hard limit"));
        }
        let unknown = || bad(flag, text, format!("unknown limit {name:?}"));
        if !ULIMIT_NAMES.contains(&name) {
            return Err(unknown());
        }
        let kind = PosixRlimitType::from_str(&format!("RLIMIT_{}", name.to_ascii_uppercase()))
            .map_err(|_| unknown())?;
        Ok(Ulimit { kind, soft, hard })
    }
}

/// `--sysctl name=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

impl FlagValue for Sysctl {
    type Error = OptionError;
    fn parse(flag: &'static str, text: &str) -> Result<Self, OptionError> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| bad(flag, text, "expected name=value"))?;
        Ok(Sysctl {
            name: name.into(),
            value: value.into(),
        })
    }
}

/// `--device HOST[:CONTAINER[:PERMISSIONS]]`: the container's path is the host's by
/// default, the cgroup permissions `rwm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub host: String,
    pub container: String,
    pub permissions: String,
}

impl FlagValue for DeviceSpec {
    type Error = OptionError;
    fn parse(_flag: &'static str, text: &str) -> Result<Self, OptionError> {
        let mut parts = text.split(':');
        let host = parts.next().unwrap_or_default().to_string();
        let container = parts.next().unwrap_or(&host).to_string();
        let permissions = parts.next().unwrap_or("rwm").to_string();
        Ok(DeviceSpec {
            host,
            container,
            permissions,
        })
    }
}

impl FlagValue for Cap {
    type Error = crate::caps::BadCap;
    fn parse(_flag: &'static str, text: &str) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// An IP address (`--ip`, `--dns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(pub std::net::IpAddr);

/// A value that is not an IP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} {value:?}: not an IP address")]
pub struct BadIp {
    pub flag: &'static str,
    pub value: String,
}

impl FlagValue for Ip {
    type Error = BadIp;
    fn parse(flag: &'static str, text: &str) -> Result<Self, BadIp> {
        text.parse().map(Ip).map_err(|_| BadIp {
            flag,
            value: text.into(),
        })
    }
}

/// One `--security-opt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    /// `seccomp=unconfined`: no seccomp filter.
    SeccompUnconfined,
    /// `seccomp=PROFILE.json`: a profile file, Docker's format or OCI's.
    SeccompProfile(String),
    /// `no-new-privileges[=true|false]`.
    NoNewPrivileges(bool),
    /// `label=...`, `apparmor=...`: accepted, as there is nothing to apply.
    Ignored,
}

impl FlagValue for SecurityOpt {
    type Error = OptionError;
    fn parse(flag: &'static str, text: &str) -> Result<Self, OptionError> {
        let (k, v) = text.split_once(['=', ':']).unwrap_or((text, ""));
        Ok(match k {
            "seccomp" if v == "unconfined" => SecurityOpt::SeccompUnconfined,
            "seccomp" if !v.is_empty() => SecurityOpt::SeccompProfile(v.to_string()),
            "no-new-privileges" if v.is_empty() || v == "true" => {
                SecurityOpt::NoNewPrivileges(true)
            }
            "no-new-privileges" if v == "false" => SecurityOpt::NoNewPrivileges(false),
            "label" | "apparmor" => SecurityOpt::Ignored,
            _ => {
                return Err(bad(
                    flag,
                    text,
                    "expected seccomp=unconfined|PROFILE.json or no-new-privileges",
                ))
            }
        })
    }
}

/// `-p [hostip:][hostport:]containerport[/tcp|udp]`: one mapping per port of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish(pub Vec<PortMapping>);

impl FlagValue for Publish {
    type Error = berth_net::PublishError;
    fn parse(_flag: &'static str, text: &str) -> Result<Self, Self::Error> {
        berth_net::parse_publish(text).map(Publish)
    }
}

/// `64m`, `1g`, `512k`, `1024b`, plain bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|x| !x.is_empty()).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 64m or 1g"))?;
    if v < 0.0 {
        return Err(format!("{s:?} is negative"));
    }
    Ok((v * mult as f64) as u64)
}

/// Signal by name (`TERM`, `SIGTERM`) or number: the runtime's parser, so both
/// command lines accept the same names.
pub fn parse_signal(s: &str) -> Option<i32> {
    berth_runtime::container::parse_signal(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn bytes_and_signals() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert_eq!(parse_bytes("10mb").unwrap(), 10 << 20);
        assert!(parse_bytes("x").is_err());
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("sigkill"), Some(9));
        assert_eq!(parse_signal("2"), Some(2));
        assert_eq!(parse_signal("NOPE"), None);
    }

    #[test]
    fn flags_parse_once_with_errors_that_name_them() {
        let m = Flag::<Memory>::parse("--memory", "64m").unwrap();
        assert_eq!((m.0, m.as_str()), (64 << 20, "64m"));
        assert_eq!(
            Flag::<Memory>::parse("--memory", "5m")
                .unwrap_err()
                .to_string(),
            "invalid --memory value \"5m\": the minimum memory limit is 6m"
        );
        // The minimum is --memory's only.
        assert_eq!(Flag::<Bytes>::parse("--shm-size", "2m").unwrap().0, 2 << 20);
        assert_eq!(
            Flag::<Bytes>::parse("--shm-size", "lots")
                .unwrap_err()
                .to_string(),
            "invalid --shm-size value \"lots\": \"lots\" is not a size such as 64m or 1g"
        );
        assert_eq!(
            *Flag::<MemorySwap>::parse("--memory-swap", "-1").unwrap(),
            MemorySwap::Unlimited
        );
        assert_eq!(
            *Flag::<MemorySwap>::parse("--memory-swap", "1g").unwrap(),
            MemorySwap::Limit(1 << 30)
        );
        let c = Flag::<Cpus>::parse("--cpus", "1.5").unwrap();
        assert_eq!((c.quota(100_000), c.nano_cpus()), (150_000, 1_500_000_000));
        assert_eq!(
            Flag::<Cpus>::parse("--cpus", "0").unwrap_err().why,
            "it must be above 0"
        );
        assert_eq!(
            Flag::<Cpus>::parse("--cpus", "many").unwrap_err().why,
            "expected a number such as 1.5"
        );
        let two = |t: &str| {
            Flag::<Cpus>::parse("--cpus", t)
                .unwrap()
                .check_host("--cpus", t, 2)
        };
        assert!(two("2").is_ok() && two("0.01").is_ok());
        assert_eq!(
            two("1000").unwrap_err().to_string(),
            "invalid --cpus value \"1000\": Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert!(two("0.001").is_err());
        let u = Flag::<Ulimit>::parse("--ulimit", "nofile=10:20").unwrap();
        assert_eq!(
            (u.kind, u.soft, u.hard),
            (PosixRlimitType::RlimitNofile, 10, 20)
        );
        assert_eq!(
            Flag::<Ulimit>::parse("--ulimit", "core=-1").unwrap().hard,
            u64::MAX
        );
        for (text, err) in [
            (
                "nofile",
                "invalid --ulimit value \"nofile\": expected name=soft[:hard]",
            ),
            (
                "nofile=x",
                "invalid --ulimit value \"nofile\": \"x\" is not a number",
            ),
            (
                "nofile=20:10",
                "invalid --ulimit value \"nofile=20:10\": the soft limit is above the hard limit",
            ),
            (
                "bogus=1",
                "invalid --ulimit value \"bogus=1\": unknown limit \"bogus\"",
            ),
        ] {
            assert_eq!(
                Flag::<Ulimit>::parse("--ulimit", text)
                    .unwrap_err()
                    .to_string(),
                err
            );
        }
        for name in ULIMIT_NAMES {
            Flag::<Ulimit>::parse("--ulimit", &format!("{name}=1")).unwrap();
        }
        let d = Flag::<DeviceSpec>::parse("--device", "/dev/null").unwrap();
        assert_eq!(
            (
                d.host.as_str(),
                d.container.as_str(),
                d.permissions.as_str()
            ),
            ("/dev/null", "/dev/null", "rwm")
        );
        let d = Flag::<DeviceSpec>::parse("--device", "/dev/null:/dev/n:r").unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/n", "r")
        );
        assert_eq!(
            Flag::<Publish>::parse("-p", "8080-8081:80-81")
                .unwrap()
                .0
                .len(),
            2
        );
        assert!(Flag::<Publish>::parse("-p", "x:y:z:w")
            .unwrap_err()
            .to_string()
            .starts_with("invalid publish spec \"x:y:z:w\""));
        for (text, want) in [
            ("seccomp=unconfined", SecurityOpt::SeccompUnconfined),
            (
                "seccomp:/p.json",
                SecurityOpt::SeccompProfile("/p.json".into()),
            ),
            ("no-new-privileges", SecurityOpt::NoNewPrivileges(true)),
            (
                "no-new-privileges=false",
                SecurityOpt::NoNewPrivileges(false),
            ),
            ("label=disable", SecurityOpt::Ignored),
        ] {
            assert_eq!(
                *Flag::<SecurityOpt>::parse("--security-opt", text).unwrap(),
                want
            );
        }
        assert_eq!(
            Flag::<SecurityOpt>::parse("--security-opt", "bogus")
                .unwrap_err()
                .to_string(),
            "invalid --security-opt value \"bogus\": \
             expected seccomp=unconfined|PROFILE.json or no-new-privileges"
        );
        assert_eq!(
            Flag::<Ip>::parse("--dns", "9.9.9.9").unwrap().0.to_string(),
            "9.9.9.9"
        );
        assert_eq!(
            Flag::<Ip>::parse("--ip", "10.0.0.300")
                .unwrap_err()
                .to_string(),
            "invalid --ip \"10.0.0.300\": not an IP address"
        );
        let s = Flag::<Sysctl>::parse("--sysctl", "a.b=c=d").unwrap();
        assert_eq!((s.name.as_str(), s.value.as_str()), ("a.b", "c=d"));
        assert!(Flag::<Sysctl>::parse("--sysctl", "a.b").is_err());
    }

    #[test]
    fn records_keep_the_text_as_given() {
        let stored = serde_json::json!({"memory": "64M", "memory_swap": "-1", "cpus": "1.50",
            "ulimits": ["nofile=10:20"], "sysctls": ["net.ipv4.ip_forward=1"], "shm_size": "2m",
            "devices": ["/dev/null:/dev/n"], "security_opt": ["seccomp:unconfined"],
            "publish": ["127.0.0.1:8080:80/udp"], "ip": "10.1.2.3", "dns": ["::1"],
            "cap_add": ["net_admin"], "cap_drop": ["ALL"]});
        let o: RunOptions = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(o.memory.as_ref().unwrap().0, 64 << 20);
        assert_eq!(o.cpus.as_ref().unwrap().nano_cpus(), 1_500_000_000);
        let back = serde_json::to_value(&o).unwrap();
        for (k, v) in stored.as_object().unwrap() {
            assert_eq!(&back[k], v, "{k}");
        }
        // A value an older berth stored without checking is dropped, not fatal.
        let o: RunOptions = serde_json::from_value(
            serde_json::json!({"memory": "lots", "ulimits": ["nofile=1", "x"], "name": "n"}),
        )
        .unwrap();
        assert!(o.memory.is_none());
        assert_eq!(o.ulimits.len(), 1);
        assert_eq!(o.name.as_deref(), Some("n"));
    }

    #[test]
    fn whole_options_are_checked() {
        let ok = RunOptions {
            name: Some("a".repeat(MAX_NAME_LEN)),
            env: vec!["A=1".into(), "B".into(), "C=".into()],
            ..Default::default()
        };
        assert_eq!(ok.check(), Ok(()));
        let long = RunOptions {
            name: Some("a".repeat(300)),
            ..Default::default()
        };
        let e = long.check().unwrap_err();
        assert_eq!(e.flag, "--name");
        assert!(
            e.why.contains("at most 253") && e.why.contains("300"),
            "{e}"
        );
        for bad_env in ["=x", "", "="] {
            let o = RunOptions {
                env: vec![bad_env.into()],
                ..Default::default()
            };
            let e = o.check().unwrap_err();
            assert_eq!(e.flag, "--env", "{bad_env:?}");
            assert!(e.to_string().contains("name is empty"), "{e}");
        }
        assert!(host_cpus() >= 1);
    }
}

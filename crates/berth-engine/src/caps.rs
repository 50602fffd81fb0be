//! Linux capabilities by name: Docker's default set, every name the kernel knows, and the
//! names `--cap-add`/`--cap-drop` take.

/// Docker's 14 default capabilities.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, by number.
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A `--cap-add`/`--cap-drop` value: `CAP_X` from `x`, `X` or `CAP_X`, or `ALL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap(String);

impl Cap {
    /// `CAP_X`, or `ALL`.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Whether this is `ALL`.
    pub fn is_all(&self) -> bool {
        self.0 == "ALL"
    }
}

/// A name that is no capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid capability {0:?}: see capabilities(7) for the names (with or without CAP_)")]
pub struct BadCap(pub String);

impl std::str::FromStr for Cap {
    type Err = BadCap;
    fn from_str(c: &str) -> Result<Cap, BadCap> {
        let up = c.trim().to_ascii_uppercase();
        if up == "ALL" {
            return Ok(Cap(up));
        }
        let name = if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        if ALL_CAPS.contains(&name.as_str()) {
            Ok(Cap(name))
        } else {
            Err(BadCap(c.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_or_without_the_prefix() {
        assert_eq!("sys_admin".parse::<Cap>().unwrap().name(), "CAP_SYS_ADMIN");
        assert_eq!("CAP_KILL".parse::<Cap>().unwrap().name(), "CAP_KILL");
        assert!("all".parse::<Cap>().unwrap().is_all());
        assert_eq!(
            "bogus".parse::<Cap>().unwrap_err().to_string(),
            "invalid capability \"bogus\": see capabilities(7) for the names (with or without CAP_)"
        );
    }
}

//! A container's `--network` mode.

use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::model::DEFAULT_NETWORK;

/// A container's `--network` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// Only `lo`, in a namespace of its own.
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace (`container:NAME|ID`).
    Container(String),
    /// A bridge network: `bridge` (the default) or a user-defined one.
    Bridge(String),
}

impl NetworkMode {
    /// Parses `--network`; an empty value is the default bridge.
    pub fn parse(s: &str) -> Result<NetworkMode, NetError> {
        Ok(match s {
            "" | "default" | DEFAULT_NETWORK => NetworkMode::Bridge(DEFAULT_NETWORK.into()),
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => match s.strip_prefix("container:") {
                Some("") => {
                    return Err(NetError::Invalid {
                        what: "network mode",
                        value: s.into(),
                        why: "container: needs a container name or ID".into(),
                    })
                }
                Some(c) => NetworkMode::Container(c.into()),
                None => NetworkMode::Bridge(s.into()),
            },
        })
    }

    /// Whether the container gets a namespace of its own that berth must create.
    pub fn needs_own_netns(&self) -> bool {
        matches!(self, NetworkMode::None | NetworkMode::Bridge(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes() {
        assert_eq!(
            NetworkMode::parse("").unwrap(),
            NetworkMode::Bridge("bridge".into())
        );
        assert_eq!(NetworkMode::parse("none").unwrap(), NetworkMode::None);
        assert_eq!(NetworkMode::parse("host").unwrap(), NetworkMode::Host);
        assert_eq!(
            NetworkMode::parse("container:web").unwrap(),
            NetworkMode::Container("web".into())
        );
        assert_eq!(
            NetworkMode::parse("app").unwrap(),
            NetworkMode::Bridge("app".into())
        );
        assert!(NetworkMode::parse("container:").is_err());
        assert!(!NetworkMode::Host.needs_own_netns());
    }
}

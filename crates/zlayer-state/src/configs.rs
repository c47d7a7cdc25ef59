//! Configs in the cluster state: named files a spec mounts read-only
//! (Kubernetes' ConfigMap as files). They are not secret, so the state holds
//! them as they are; each new value counts up a version, and a proposal
//! made against an older one is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ClusterState;

/// The largest config (it travels in a Raft entry).
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub version: u64,
    /// The content, base64.
    pub data: String,
    pub bytes: u64,
    pub updated_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutConfig {
    pub name: String,
    /// One above the version it replaces (1 for a new config).
    pub version: u64,
    pub data: String,
    pub bytes: u64,
    pub at_ms: u64,
}

/// The command for a new value of `name`, checked here.
pub fn put_command(
    configs: &BTreeMap<String, ConfigRecord>,
    name: &str,
    value: &[u8],
    at_ms: u64,
) -> Result<PutConfig, String> {
    use base64::Engine;
    if !zlayer_spec::is_dns_label(name) {
        return Err(format!(
            "config name `{name}` is not a DNS label (lowercase letters, digits and `-`)"
        ));
    }
    if value.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "config `{name}` is {} bytes; the most a config holds is {MAX_CONFIG_BYTES}",
            value.len()
        ));
    }
    Ok(PutConfig {
        name: name.to_string(),
        version: configs.get(name).map_or(1, |c| c.version + 1),
        data: base64::engine::general_purpose::STANDARD.encode(value),
        bytes: value.len() as u64,
        at_ms,
    })
}

pub(crate) fn put(
    configs: &mut BTreeMap<String, ConfigRecord>,
    p: PutConfig,
) -> Result<(), String> {
    let current = configs.get(&p.name).map_or(0, |c| c.version);
    if p.version != current + 1 {
        return Err(format!(
            "config `{}` changed while this was sent (now version {current}); run it again",
            p.name
        ));
    }
    configs.insert(
        p.name,
        ConfigRecord {
            version: p.version,
            data: p.data,
            bytes: p.bytes,
            updated_ms: p.at_ms,
        },
    );
    Ok(())
}

/// `deployment/service` of each service whose current spec mounts `name`.
pub fn consumers(s: &ClusterState, name: &str) -> Vec<String> {
    s.services_where(|svc| svc.config_refs().contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_counts_up_and_a_stale_one_is_refused() {
        let mut configs = BTreeMap::new();
        let a = put_command(&configs, "app", b"one", 0).unwrap();
        let racing = put_command(&configs, "app", b"two", 0).unwrap();
        put(&mut configs, a).unwrap();
        let err = put(&mut configs, racing).unwrap_err();
        assert!(err.contains("run it again"), "{err}");
        let next = put_command(&configs, "app", b"three", 0).unwrap();
        put(&mut configs, next).unwrap();
        assert_eq!(configs["app"].version, 2);
        assert!(put_command(&configs, "Bad", b"x", 0).is_err());
        assert!(put_command(&configs, "big", &vec![0; MAX_CONFIG_BYTES + 1], 0).is_err());
    }
}

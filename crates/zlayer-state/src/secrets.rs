//! Secrets in the cluster state. Each value is sealed under the current
//! data key of the secrets keyring; each data key is sealed under a key
//! derived from the cluster CA key. So the Raft log, the snapshots and sled
//! hold no usable value, only voters (holders of the CA key) can open one,
//! and `rotate` replaces the data key and reseals every value.
//!
//! Who may read a value is decided here too ([`answer`]): only a node that
//! runs a replica of a service that uses the secret. Applying a command
//! never opens or parses anything: the proposer seals, and apply checks
//! versions and key ids.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::ClusterState;
use crate::seal::SealKey;

/// Where a node asks the leader for the values its replicas need.
pub const SECRETS: &str = "/cluster/secrets";

/// What the keyring's data keys are sealed with.
const KEYRING_LABEL: &[u8] = b"zlayer secrets keyring v1";

/// The largest value a secret may hold (Kubernetes allows 1 MiB; values
/// travel in Raft entries, so zlayer keeps them smaller).
pub const MAX_SECRET_BYTES: usize = 256 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsState {
    /// Data keys by generation, each sealed under the CA-derived key.
    #[serde(default)]
    pub keys: BTreeMap<u32, String>,
    /// The generation new values are sealed with.
    #[serde(default)]
    pub current_key: u32,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// 1 for the first value; each new value counts up.
    pub version: u64,
    /// The data key generation that sealed it.
    pub key: u32,
    /// The value, sealed with the secret's name as associated data.
    pub sealed: String,
    pub bytes: u64,
    pub updated_ms: u64,
}

/// A data key as the cluster keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    pub id: u32,
    pub sealed: String,
}

/// A new value for a secret, sealed by the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutSecret {
    pub name: String,
    /// The version this value becomes: one above the version it replaces.
    pub version: u64,
    /// A data key to add first (the first secret of a cluster brings one).
    pub new_key: Option<SealedKey>,
    pub key: u32,
    pub sealed: String,
    pub bytes: u64,
    pub at_ms: u64,
}

/// A new data key, with every value resealed under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateKey {
    /// The generation it replaces: refused if another rotation came first.
    pub from: u32,
    pub key: SealedKey,
    /// name -> (version, value sealed under `key`).
    pub resealed: BTreeMap<String, (u64, String)>,
}

const RACED: &str = "the secrets changed while this was sealed (another `secret create` or `rotate-key`); run it again";

impl SecretsState {
    pub fn put(&mut self, p: PutSecret) -> Result<(), String> {
        let current = self.secrets.get(&p.name).map_or(0, |s| s.version);
        if p.version != current + 1 {
            return Err(RACED.into());
        }
        if let Some(k) = p.new_key {
            if !self.keys.is_empty() {
                return Err(RACED.into());
            }
            self.current_key = k.id;
            self.keys.insert(k.id, k.sealed);
        }
        if p.key != self.current_key || !self.keys.contains_key(&p.key) {
            return Err(RACED.into());
        }
        self.secrets.insert(
            p.name,
            SecretRecord {
                version: p.version,
                key: p.key,
                sealed: p.sealed,
                bytes: p.bytes,
                updated_ms: p.at_ms,
            },
        );
        Ok(())
    }

    pub fn rotate(&mut self, r: RotateKey) -> Result<(), String> {
        let names: BTreeSet<&String> = self.secrets.keys().collect();
        let same_versions = r.resealed.len() == self.secrets.len()
            && r.resealed
                .iter()
                .all(|(name, (v, _))| self.secrets.get(name).map(|s| s.version) == Some(*v));
        if r.from != self.current_key || !same_versions || names.len() != r.resealed.len() {
            return Err(RACED.into());
        }
        for (name, (_, sealed)) in r.resealed {
            if let Some(s) = self.secrets.get_mut(&name) {
                s.sealed = sealed;
                s.key = r.key.id;
            }
        }
        self.keys = BTreeMap::from([(r.key.id, r.key.sealed)]);
        self.current_key = r.key.id;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("only a voter holds the cluster key that opens secrets; run this on a manager")]
    NotAVoter,
    #[error("no secret named `{0}`; create it with `zlayer secret create {0} --from-file F`")]
    Unknown(String),
    #[error("secret `{name}` is {bytes} bytes; the most a secret holds is {MAX_SECRET_BYTES}")]
    TooLarge { name: String, bytes: usize },
    #[error("secret name `{0}` is not a DNS label (lowercase letters, digits and `-`)")]
    BadName(String),
    #[error("the secrets keyring does not open with this cluster's key: {0}")]
    Keyring(crate::seal::SealError),
    #[error("secret `{0}` does not open (altered, or sealed by another cluster)")]
    Open(String),
    #[error("sealing failed")]
    Seal,
}

fn kek(ca_key_pem: &str) -> SealKey {
    SealKey::derive(ca_key_pem, KEYRING_LABEL)
}

fn key_aad(id: u32) -> String {
    format!("secrets-key/{id}")
}

fn data_key(s: &SecretsState, ca_key_pem: &str, id: u32) -> Result<SealKey, SecretError> {
    let sealed = s
        .keys
        .get(&id)
        .ok_or(SecretError::Keyring(crate::seal::SealError::Open))?;
    let bytes = kek(ca_key_pem)
        .open(&key_aad(id), sealed)
        .map_err(SecretError::Keyring)?;
    Ok(SealKey::from_bytes(&bytes))
}

fn new_data_key(ca_key_pem: &str, id: u32) -> Result<(SealKey, SealedKey), SecretError> {
    let (key, bytes) = SealKey::generate().map_err(|_| SecretError::Seal)?;
    let sealed = kek(ca_key_pem)
        .seal(&key_aad(id), &bytes)
        .map_err(|_| SecretError::Seal)?;
    Ok((key, SealedKey { id, sealed }))
}

/// The sealed command for a new value of `name` (its first, or its next).
pub fn seal_put(
    s: &SecretsState,
    ca_key_pem: &str,
    name: &str,
    value: &[u8],
    at_ms: u64,
) -> Result<PutSecret, SecretError> {
    if !zlayer_spec::is_dns_label(name) {
        return Err(SecretError::BadName(name.to_string()));
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge {
            name: name.to_string(),
            bytes: value.len(),
        });
    }
    let (key, new_key, id) = if s.keys.is_empty() {
        let (key, sealed) = new_data_key(ca_key_pem, 1)?;
        (key, Some(sealed), 1)
    } else {
        let id = s.current_key;
        (data_key(s, ca_key_pem, id)?, None, id)
    };
    let sealed = key.seal(name, value).map_err(|_| SecretError::Seal)?;
    Ok(PutSecret {
        name: name.to_string(),
        version: s.secrets.get(name).map_or(1, |r| r.version + 1),
        new_key,
        key: id,
        sealed,
        bytes: value.len() as u64,
        at_ms,
    })
}

/// A new data key and every value resealed under it.
pub fn seal_rotation(s: &SecretsState, ca_key_pem: &str) -> Result<RotateKey, SecretError> {
    let id = s.keys.keys().max().copied().unwrap_or(0) + 1;
    let (key, sealed_key) = new_data_key(ca_key_pem, id)?;
    let mut resealed = BTreeMap::new();
    for name in s.secrets.keys() {
        let (version, value) = open(s, ca_key_pem, name)?;
        let sealed = key.seal(name, &value).map_err(|_| SecretError::Seal)?;
        resealed.insert(name.clone(), (version, sealed));
    }
    Ok(RotateKey {
        from: s.current_key,
        key: sealed_key,
        resealed,
    })
}

/// A secret's version and value.
pub fn open(s: &SecretsState, ca_key_pem: &str, name: &str) -> Result<(u64, Vec<u8>), SecretError> {
    let r = s
        .secrets
        .get(name)
        .ok_or_else(|| SecretError::Unknown(name.to_string()))?;
    let value = data_key(s, ca_key_pem, r.key)?
        .open(name, &r.sealed)
        .map_err(|_| SecretError::Open(name.to_string()))?;
    Ok((r.version, value))
}

/// Every secret a kept revision of `deployment/service` gives its replicas.
pub fn used_by(s: &ClusterState, deployment: &str, service: &str) -> BTreeSet<String> {
    kept_refs(s, deployment, service, |svc| {
        let mut refs = svc.secret_refs();
        refs.extend(svc.pull_secret_refs());
        refs
    })
}

/// The secrets the current spec of `deployment/service` takes its ingress
/// certificates from: every node's ingress serves them.
pub fn served_by(s: &ClusterState, deployment: &str, service: &str) -> BTreeSet<String> {
    let Some(d) = s.deployments.get(deployment) else {
        return BTreeSet::new();
    };
    zlayer_spec::parse(&d.current.file, &d.current.text)
        .ok()
        .and_then(|spec| spec.services.get(service).map(|svc| svc.tls_secret_refs()))
        .unwrap_or_default()
}

fn kept_refs(
    s: &ClusterState,
    deployment: &str,
    service: &str,
    refs: fn(&zlayer_spec::Service) -> BTreeSet<String>,
) -> BTreeSet<String> {
    let Some(d) = s.deployments.get(deployment) else {
        return BTreeSet::new();
    };
    d.history
        .iter()
        .chain([&d.current])
        .filter_map(|rev| zlayer_spec::parse(&rev.file, &rev.text).ok())
        .filter_map(|spec| spec.services.get(service).map(refs))
        .flatten()
        .collect()
}

/// Deployments whose current spec uses `name`, as `deployment/service`.
pub fn consumers(s: &ClusterState, name: &str) -> Vec<String> {
    s.services_where(|svc| {
        svc.secret_refs().contains(name)
            || svc.tls_secret_refs().contains(name)
            || svc.pull_secret_refs().contains(name)
    })
}

/// A node's request for the values its replicas need.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecretsRequest {
    pub deployment: String,
    pub service: String,
    pub names: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SecretsReply {
    /// name -> (version, value), base64.
    Values(BTreeMap<String, (u64, String)>),
    Refused(String),
}

/// The values, for node `caller` only if each is the certificate or key of
/// one of that service's https routes (every node's ingress serves them), or
/// the cluster placed a replica of that service on it and the service uses
/// the secret.
pub fn answer(
    s: &ClusterState,
    ca_key_pem: Option<&str>,
    caller: u64,
    req: &SecretsRequest,
) -> SecretsReply {
    use base64::Engine;
    let Some(ca_key_pem) = ca_key_pem else {
        return SecretsReply::Refused(SecretError::NotAVoter.to_string());
    };
    let Some(node) = s.nodes.get(&caller).map(|n| n.name.clone()) else {
        return SecretsReply::Refused(format!("no node record for member {caller}"));
    };
    let workload = format!("{}/{}", req.deployment, req.service);
    let runs_one = s.assignments_on(&node).any(|a| a.workload == workload);
    let used = used_by(s, &req.deployment, &req.service);
    let served = served_by(s, &req.deployment, &req.service);
    let mut values = BTreeMap::new();
    for name in &req.names {
        if served.contains(name) {
            // An ingress certificate: every node serves the route.
        } else if !runs_one {
            return SecretsReply::Refused(format!(
                "node {node} runs no replica of {workload}; secrets go only to the nodes that run their consumers"
            ));
        } else if !used.contains(name) {
            return SecretsReply::Refused(format!("{workload} does not use secret `{name}`"));
        }
        match open(&s.secrets, ca_key_pem, name) {
            Ok((version, value)) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                values.insert(name.clone(), (version, encoded));
            }
            Err(e) => return SecretsReply::Refused(e.to_string()),
        }
    }
    SecretsReply::Values(values)
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;

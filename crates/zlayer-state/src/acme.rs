//! What the cluster keeps for ACME: the challenge answers every node's
//! ingress must give while an order is validated (HTTP-01 key
//! authorizations by token, TLS-ALPN-01 key authorization digests by host:
//! each node makes its own challenge certificate from the digest, so no
//! challenge key is ever in the state), the cluster's ACME account, and the
//! certificates obtained. Account and certificate keys are sealed
//! (AES-256-GCM under a key derived from the cluster CA key), so the Raft
//! log and sled hold no usable key. Only holders of the cluster CA key
//! (voters) can open them. The ACME conversation itself is not here: it is
//! the node's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::seal::{SealError, SealKey};

/// What ACME private keys are sealed with: see [`SealKey::derive`].
pub const SEAL_LABEL: &[u8] = b"zlayer acme key seal v1";

/// The ACME part of the cluster state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeState {
    /// HTTP-01: token -> key authorization.
    #[serde(default)]
    pub http01: BTreeMap<String, String>,
    /// TLS-ALPN-01: host -> what the challenge certificate must carry.
    #[serde(default)]
    pub alpn01: BTreeMap<String, AlpnChallenge>,
    /// The ACME account, by directory URL: its credentials (key included),
    /// sealed, so every leader orders as the same account.
    #[serde(default)]
    pub accounts: BTreeMap<String, String>,
    /// host -> the certificate obtained for it.
    #[serde(default)]
    pub certs: BTreeMap<String, AcmeCertificate>,
}

/// What a TLS-ALPN-01 answer carries: the SHA-256 of the key authorization
/// (RFC 8737), base64. A public value, like an HTTP-01 key authorization;
/// each node signs its own short-lived certificate over it. (Entries from
/// before this field read as empty and are answered by no node.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlpnChallenge {
    #[serde(default)]
    pub digest_b64: String,
}

/// What the ACME account's sealed credentials are bound to.
pub fn account_owner(directory: &str) -> String {
    format!("acme account {directory}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeCertificate {
    /// The chain, leaf first.
    pub cert_pem: String,
    /// The private key, sealed with [`seal`].
    pub sealed_key: String,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

impl AcmeCertificate {
    /// Renewal is due once a third of its validity is left.
    pub fn renewal_due(&self, now_ms: u64) -> bool {
        let life = self.not_after_ms.saturating_sub(self.not_before_ms);
        self.not_after_ms.saturating_sub(now_ms) <= life / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_with_a_third_of_the_life_left() {
        let c = AcmeCertificate {
            cert_pem: String::new(),
            sealed_key: String::new(),
            not_before_ms: 0,
            not_after_ms: 90,
        };
        assert!(!c.renewal_due(59));
        assert!(c.renewal_due(60));
        assert!(c.renewal_due(100));
    }

    // The attack: a sealed account copied under another directory's entry
    // (a CA the attacker runs) must not open there.
    #[test]
    fn a_sealed_account_opens_only_for_its_own_directory() {
        let key = SealKey::derive("cluster CA key", SEAL_LABEL);
        let sealed = key
            .seal(&account_owner("https://ca.test/dir"), b"{\"id\":\"acct\"}")
            .unwrap();
        assert!(key
            .open(&account_owner("https://ca.test/dir"), &sealed)
            .is_ok());
        assert!(key
            .open(&account_owner("https://evil.test/dir"), &sealed)
            .is_err());
    }
}

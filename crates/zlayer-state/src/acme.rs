//! What the cluster keeps for ACME: the challenge answers every node's
//! ingress must give while an order is validated (HTTP-01 key
//! authorizations by token, TLS-ALPN-01 certificates by host), and the
//! certificates obtained, with their private keys sealed (AES-256-GCM under
//! a key derived from the cluster CA key), so the Raft log and sled hold
//! no usable key. Only holders of the cluster CA key (voters) can open
//! them. The ACME conversation itself is not here: it is the node's.

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
    /// TLS-ALPN-01: host -> the challenge certificate to answer with.
    #[serde(default)]
    pub alpn01: BTreeMap<String, AlpnChallenge>,
    /// host -> the certificate obtained for it.
    #[serde(default)]
    pub certs: BTreeMap<String, AcmeCertificate>,
}

/// A self-signed certificate carrying the acmeIdentifier extension, valid
/// only for the validation; its key is thrown away once the order is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlpnChallenge {
    pub cert_pem: String,
    pub key_pem: String,
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
}

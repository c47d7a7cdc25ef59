//! What the cluster keeps for ACME: the challenge answers every node's
//! ingress must give while an order is validated (HTTP-01 key
//! authorizations by token, TLS-ALPN-01 certificates by host), and the
//! certificates obtained, with their private keys sealed (AES-256-GCM under
//! a key derived from the cluster CA key), so the Raft log and sled hold
//! no usable key. Only holders of the cluster CA key (voters) can open
//! them. The ACME conversation itself is not here: it is the node's.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use aws_lc_rs::{hmac, rand};
use base64::Engine;
use serde::{Deserialize, Serialize};

const SEAL_LABEL: &[u8] = b"zlayer acme key seal v1";

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

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the sealed key is not valid base64")]
    Encoding,
    #[error("the sealed key does not open with this cluster's key (sealed by another cluster, or altered)")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// The sealing key, the same on every holder of the cluster CA key.
pub struct SealKey(LessSafeKey);

impl SealKey {
    pub fn derive(cluster_ca_key_pem: &str) -> SealKey {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, cluster_ca_key_pem.as_bytes());
        let bytes = hmac::sign(&mac, SEAL_LABEL);
        // Both are 32 bytes: AES-256 takes the HMAC-SHA256 output whole.
        let key = UnboundKey::new(&aead::AES_256_GCM, bytes.as_ref()).expect("32-byte key");
        SealKey(LessSafeKey::new(key))
    }

    /// `nonce || ciphertext || tag`, base64; `host` is bound in as
    /// associated data, so a sealed key moved to another host does not open.
    pub fn seal(&self, host: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).map_err(|_| SealError::Seal)?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(host.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend(buf);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open(&self, host: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| SealError::Encoding)?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(host.as_bytes()), &mut buf)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_the_same_cluster_key_and_host() {
        let k = SealKey::derive("cluster one");
        let sealed = k.seal("shop.test", b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert!(!sealed.contains("PRIVATE"), "the sealed form shows the key");
        assert_eq!(
            k.open("shop.test", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(SealKey::derive("cluster two")
            .open("shop.test", &sealed)
            .is_err());
        assert!(k.open("other.test", &sealed).is_err());
        let mut altered = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        *altered.last_mut().unwrap() ^= 1;
        let altered = base64::engine::general_purpose::STANDARD.encode(altered);
        assert!(k.open("shop.test", &altered).is_err());
    }

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

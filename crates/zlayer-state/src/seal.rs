//! Sealing values into the cluster state: AES-256-GCM with a random nonce
//! and the owner's name as associated data. The keys come from the cluster
//! CA key (one per use, see [`SealKey::derive`]) or are random and sealed in
//! turn (the secrets keyring). It knows nothing of what it seals.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use aws_lc_rs::{hmac, rand};
use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the sealed key is not valid base64")]
    Encoding,
    #[error("the sealed key does not open with this cluster's key (sealed by another cluster, or altered)")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// An AES-256-GCM key that seals values into the cluster state.
pub struct SealKey(LessSafeKey);

impl SealKey {
    /// The key for one use (`label`), derived from the cluster CA key:
    /// the same on every holder of it, and different for each use.
    pub fn derive(cluster_ca_key_pem: &str, label: &[u8]) -> SealKey {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, cluster_ca_key_pem.as_bytes());
        let bytes = hmac::sign(&mac, label);
        // Both are 32 bytes: AES-256 takes the HMAC-SHA256 output whole.
        Self::from_bytes(bytes.as_ref())
    }

    /// A key of 32 random bytes, and those bytes (to be sealed in turn).
    pub fn generate() -> Result<(SealKey, [u8; 32]), SealError> {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes).map_err(|_| SealError::Seal)?;
        Ok((Self::from_bytes(&bytes), bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> SealKey {
        let key = UnboundKey::new(&aead::AES_256_GCM, bytes).expect("32-byte key");
        SealKey(LessSafeKey::new(key))
    }

    /// `nonce || ciphertext || tag`, base64; `host` (what the value belongs
    /// to) is bound in as associated data, so a sealed value moved to
    /// another owner does not open.
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
        let k = SealKey::derive("cluster one", b"test");
        let sealed = k.seal("shop.test", b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert!(!sealed.contains("PRIVATE"), "the sealed form shows the key");
        assert_eq!(
            k.open("shop.test", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(SealKey::derive("cluster two", b"test")
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
    fn each_use_gets_its_own_key() {
        let sealed = SealKey::derive("ca", b"one").seal("x", b"v").unwrap();
        assert!(SealKey::derive("ca", b"two").open("x", &sealed).is_err());
        assert!(SealKey::derive("ca", b"one").open("x", &sealed).is_ok());
    }
}

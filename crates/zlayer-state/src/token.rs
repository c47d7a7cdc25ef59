//! Join tokens as the user sees them: `zlt1.` then base64url of JSON with
//! the CA's fingerprint, the token's id and secret, its expiry and the
//! addresses of the members that can admit a joiner. The cluster keeps only
//! a hash of the secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const PREFIX: &str = "zlt1.";
/// API tokens carry the same fields; the prefix keeps the two apart.
const API_PREFIX: &str = "zla1.";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate, hex.
    pub ca: String,
    pub id: String,
    pub secret: String,
    pub expires_ms: u64,
    pub addrs: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a zlayer token: {0} (join tokens start with `zlt1.`, API tokens with `zla1.`; make one with `zlayer token create [--api]` on a member)")]
pub struct BadToken(&'static str);

impl JoinToken {
    pub fn encode(&self) -> String {
        self.encode_as(PREFIX)
    }

    /// The same fields as an API token, for a remote CLI.
    pub fn encode_api(&self) -> String {
        self.encode_as(API_PREFIX)
    }

    fn encode_as(&self, prefix: &str) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(s: &str) -> Result<JoinToken, BadToken> {
        Self::decode_as(s, PREFIX)
    }

    pub fn decode_api(s: &str) -> Result<JoinToken, BadToken> {
        Self::decode_as(s, API_PREFIX)
    }

    fn decode_as(s: &str, prefix: &str) -> Result<JoinToken, BadToken> {
        let body = s
            .trim()
            .strip_prefix(prefix)
            .ok_or(BadToken("wrong prefix"))?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| BadToken("not base64url"))?;
        serde_json::from_slice(&json).map_err(|_| BadToken("fields are missing or damaged"))
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_garbage_is_named() {
        let t = JoinToken {
            ca: "ab".into(),
            id: "id".into(),
            secret: "s".into(),
            expires_ms: 5,
            addrs: vec!["10.0.0.1:7443".into()],
        };
        assert_eq!(JoinToken::decode(&t.encode()).unwrap(), t);
        let e = JoinToken::decode("zlt1.!!").unwrap_err().to_string();
        assert!(e.contains("not base64url"), "{e}");
        let e = JoinToken::decode("K10abc").unwrap_err().to_string();
        assert!(e.contains("wrong prefix"), "{e}");
    }
}

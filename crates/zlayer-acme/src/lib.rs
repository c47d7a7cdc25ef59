//! zlayer-acme owns the ACME conversation (RFC 8555, through
//! `instant-acme`): an account at a directory, an order for one host, its
//! HTTP-01 or TLS-ALPN-01 challenge, a fresh key and CSR, and the issued
//! chain. The challenge answers go out through [`Publish`], which the node
//! implements by committing them to the cluster state, so whichever node's
//! ingress the CA reaches can answer.
//!
//! It must not touch the cluster state, the proxy or any file: the node
//! decides which hosts need a certificate, and stores what this returns.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

pub use instant_acme::Account;
use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

/// Where certificates come from and how the CA checks control of a host.
#[derive(Clone, Debug)]
pub struct AcmeConfig {
    /// The directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// `mailto:` contact for the account; none is sent when empty.
    pub contact: Option<String>,
    /// A PEM root to trust for the directory's own HTTPS (a private CA such
    /// as a test server's); the system roots otherwise.
    pub ca_cert: Option<PathBuf>,
    pub challenge: Challenge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// The CA fetches `http://HOST/.well-known/acme-challenge/TOKEN` (port 80).
    Http01,
    /// The CA opens TLS to HOST:443 offering ALPN `acme-tls/1`.
    TlsAlpn01,
}

impl std::fmt::Display for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        })
    }
}

impl std::str::FromStr for Challenge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http-01" => Ok(Challenge::Http01),
            "tls-alpn-01" => Ok(Challenge::TlsAlpn01),
            other => Err(format!(
                "`{other}` is not an ACME challenge zlayer answers: use http-01 or tls-alpn-01"
            )),
        }
    }
}

/// A TLS-ALPN-01 answer: a self-signed certificate for the host carrying
/// the acmeIdentifier extension, and its key.
#[derive(Clone, Debug)]
pub struct AlpnAnswer {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What an obtained certificate is.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The chain, leaf first.
    pub cert_pem: String,
    pub key_pem: String,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME ({0}): {1}")]
    Protocol(&'static str, instant_acme::Error),
    #[error("the CA offers no {0:?} challenge for {1}")]
    NoChallenge(Challenge, String),
    #[error("the order for {0} ended {1:?}; the CA could not validate the challenge (is {0} pointed at a node, with port {2} reachable?)")]
    NotValidated(String, OrderStatus, u16),
    #[error("authorization for {0} is {1:?}")]
    Authorization(String, AuthorizationStatus),
    #[error("publishing the challenge answer: {0}")]
    Publish(String),
    #[error("key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the issued certificate does not parse: {0}")]
    Issued(String),
    #[error("the ACME account's credentials: {0}")]
    Credentials(String),
}

pub type PublishFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Where challenge answers go while an order is validated; `None` withdraws.
/// Both carry only public values: a TLS-ALPN-01 answer is the SHA-256 of
/// the key authorization, from which each ingress makes its own
/// certificate ([`alpn_answer`]), so no challenge key travels or is kept.
pub trait Publish: Send + Sync {
    fn http01(&self, token: &str, key_authorization: Option<&str>) -> PublishFuture<'_>;
    fn alpn01(&self, host: &str, digest: Option<&[u8]>) -> PublishFuture<'_>;
}

/// A new account at the configured directory, and its credentials (its
/// key included) as JSON, for the caller to keep sealed and pass to
/// [`restore_account`] from then on.
pub async fn create_account(cfg: &AcmeConfig) -> Result<(Account, String), AcmeError> {
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let (account, credentials) = account_builder(cfg)?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            cfg.directory.clone(),
            None,
        )
        .await
        .map_err(|e| AcmeError::Protocol("account", e))?;
    let json =
        serde_json::to_string(&credentials).map_err(|e| AcmeError::Credentials(e.to_string()))?;
    Ok((account, json))
}

/// The account [`create_account`] made, from its credentials.
pub async fn restore_account(
    cfg: &AcmeConfig,
    credentials_json: &str,
) -> Result<Account, AcmeError> {
    let credentials: instant_acme::AccountCredentials = serde_json::from_str(credentials_json)
        .map_err(|e| AcmeError::Credentials(e.to_string()))?;
    account_builder(cfg)?
        .from_credentials(credentials)
        .await
        .map_err(|e| AcmeError::Protocol("account", e))
}

fn account_builder(cfg: &AcmeConfig) -> Result<instant_acme::AccountBuilder, AcmeError> {
    match &cfg.ca_cert {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    }
    .map_err(|e| AcmeError::Protocol("client", e))
}

/// Orders a certificate for `host` and answers its challenge through `publish`.
/// The answers are withdrawn whatever the outcome.
pub async fn obtain(
    account: &Account,
    challenge: Challenge,
    host: &str,
    publish: &dyn Publish,
) -> Result<Issued, AcmeError> {
    let identifiers = [Identifier::Dns(host.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| AcmeError::Protocol("order", e))?;
    let mut published = Vec::new();
    let outcome = answer_and_finalize(&mut order, challenge, host, publish, &mut published).await;
    for token in published {
        let withdrawn = match challenge {
            Challenge::Http01 => publish.http01(&token, None).await,
            Challenge::TlsAlpn01 => publish.alpn01(&token, None).await,
        };
        if let Err(e) = withdrawn {
            tracing::warn!("withdrawing the ACME answer for {host}: {e}");
        }
    }
    outcome
}

async fn answer_and_finalize(
    order: &mut instant_acme::Order,
    challenge: Challenge,
    host: &str,
    publish: &dyn Publish,
    published: &mut Vec<String>,
) -> Result<Issued, AcmeError> {
    let kind = match challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| AcmeError::Protocol("authorization", e))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError::Authorization(host.to_string(), other)),
        }
        let mut ch = authz
            .challenge(kind.clone())
            .ok_or_else(|| AcmeError::NoChallenge(challenge, host.to_string()))?;
        let key_auth = ch.key_authorization();
        match challenge {
            Challenge::Http01 => {
                publish
                    .http01(&ch.token, Some(key_auth.as_str()))
                    .await
                    .map_err(AcmeError::Publish)?;
                published.push(ch.token.clone());
            }
            Challenge::TlsAlpn01 => {
                publish
                    .alpn01(host, Some(key_auth.digest().as_ref()))
                    .await
                    .map_err(AcmeError::Publish)?;
                published.push(host.to_string());
            }
        }
        ch.set_ready()
            .await
            .map_err(|e| AcmeError::Protocol("challenge", e))?;
    }
    let patience = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(60));
    let status = order
        .poll_ready(&patience)
        .await
        .map_err(|e| AcmeError::Protocol("validation", e))?;
    if status != OrderStatus::Ready {
        let port = if challenge == Challenge::Http01 {
            80
        } else {
            443
        };
        return Err(AcmeError::NotValidated(host.to_string(), status, port));
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = rcgen::CertificateParams::new(vec![host.to_string()])?.serialize_request(&key)?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| AcmeError::Protocol("finalize", e))?;
    let cert_pem = order
        .poll_certificate(&patience)
        .await
        .map_err(|e| AcmeError::Protocol("certificate", e))?;
    let (not_before_ms, not_after_ms) = validity_ms(&cert_pem)?;
    Ok(Issued {
        cert_pem,
        key_pem: key.serialize_pem(),
        not_before_ms,
        not_after_ms,
    })
}

/// RFC 8737: a self-signed certificate for `host` with the critical
/// acmeIdentifier extension holding the SHA-256 of the key authorization.
pub fn alpn_answer(host: &str, digest: &[u8]) -> Result<AlpnAnswer, AcmeError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key)?;
    Ok(AlpnAnswer {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The leaf's validity, in Unix milliseconds.
pub fn validity_ms(chain_pem: &str) -> Result<(u64, u64), AcmeError> {
    use x509_parser::prelude::*;
    let (_, pem) =
        parse_x509_pem(chain_pem.as_bytes()).map_err(|e| AcmeError::Issued(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| AcmeError::Issued(e.to_string()))?;
    let v = cert.validity();
    let ms = |t: ASN1Time| (t.timestamp().max(0) as u64) * 1000;
    Ok((ms(v.not_before), ms(v.not_after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alpn_answer_carries_the_critical_acme_identifier() {
        use x509_parser::prelude::*;
        let digest = [7u8; 32];
        let a = alpn_answer("shop.test", &digest).unwrap();
        let (_, pem) = parse_x509_pem(a.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("no acmeIdentifier extension");
        assert!(ext.critical);
        assert!(ext.value.ends_with(&digest));
    }

    #[test]
    fn a_challenge_name_is_parsed_or_refused_with_the_choices() {
        assert_eq!("http-01".parse(), Ok(Challenge::Http01));
        assert_eq!("tls-alpn-01".parse(), Ok(Challenge::TlsAlpn01));
        let e = "dns-01".parse::<Challenge>().unwrap_err();
        assert!(e.contains("http-01 or tls-alpn-01"), "{e}");
    }
}

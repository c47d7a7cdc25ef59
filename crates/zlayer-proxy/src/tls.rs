//! TLS termination: one certificate per host pattern, chosen by SNI (an
//! exact name first, then the longest wildcard). TLS 1.2 and 1.3 only,
//! with the aws-lc-rs provider's default suites (ECDHE with AES-GCM or
//! ChaCha20-Poly1305), and ALPN offering h2 before http/1.1. A handshake
//! that names no host this node has a certificate for is refused.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::route::HostPattern;
use crate::ProxyError;

/// The certificates the HTTPS listener serves; replaced whole on change.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Arc<Certs>>,
    /// TLS-ALPN-01 answers by host, served only to `acme-tls/1` handshakes.
    acme: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
}

/// The ALPN protocol of a TLS-ALPN-01 validation (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug, Default)]
struct Certs {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Longest suffix first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
}

impl CertResolver {
    pub fn replace(&self, certs: Vec<(HostPattern, Arc<CertifiedKey>)>) {
        let mut next = Certs::default();
        for (host, key) in certs {
            match host {
                HostPattern::Exact(h) => {
                    next.exact.insert(h, key);
                }
                HostPattern::Wildcard(s) => next.wildcard.push((s, key)),
            }
        }
        next.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    pub fn replace_acme(&self, answers: Vec<(String, Arc<CertifiedKey>)>) {
        let next = answers
            .into_iter()
            .map(|(h, k)| (h.to_ascii_lowercase(), k))
            .collect();
        *self.acme.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    fn acme_answer(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let answers = self.acme.read().unwrap_or_else(|e| e.into_inner()).clone();
        answers.get(&host.to_ascii_lowercase()).cloned()
    }

    fn only(&self) -> Option<Arc<CertifiedKey>> {
        let certs = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut all = certs
            .exact
            .values()
            .chain(certs.wildcard.iter().map(|(_, k)| k));
        match (all.next(), all.next()) {
            (Some(k), None) => Some(k.clone()),
            _ => None,
        }
    }

    pub fn find(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let certs = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let host = host.to_ascii_lowercase();
        certs.exact.get(&host).cloned().or_else(|| {
            certs
                .wildcard
                .iter()
                .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                .map(|(_, k)| k.clone())
        })
    }
}

impl ResolvesServerCert for CertResolver {
    /// A client that names no host (one that connects by address) gets the
    /// node's only certificate when it has exactly one, as a default
    /// server would; with several, it is refused.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A validation handshake gets the challenge certificate or nothing,
        // never the host's real one.
        if hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
        {
            return self.acme_answer(hello.server_name()?);
        }
        match hello.server_name() {
            Some(name) => self.find(name),
            None => self.only(),
        }
    }
}

/// The server side of every HTTPS listener.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// A certificate chain and its key, from PEM; `what` names them in errors.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<CertifiedKey, ProxyError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ProxyError::Certificate(format!("{what}: reading the certificate PEM: {e}"))
        })?;
    if chain.is_empty() {
        return Err(ProxyError::Certificate(format!(
            "{what}: no CERTIFICATE block in the certificate PEM"
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        ProxyError::Certificate(format!("{what}: reading the private key PEM: {e}"))
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| ProxyError::Certificate(format!("{what}: {e}")))?;
    Ok(ck)
}

/// A TLS-ALPN-01 challenge certificate and its key (RFC 8737). Its
/// `acmeIdentifier` extension is critical and unknown to webpki, so the
/// key-matches-certificate check of [`certified_key`] would refuse it; the
/// pair is made together by the node that orders, and a wrong key only
/// fails that one challenge.
pub fn acme_challenge_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    host: &str,
) -> Result<CertifiedKey, ProxyError> {
    let what = format!("TLS-ALPN-01 answer for {host}");
    let cert = CertificateDer::from_pem_slice(cert_pem).map_err(|e| {
        ProxyError::Certificate(format!("{what}: reading the certificate PEM: {e}"))
    })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        ProxyError::Certificate(format!("{what}: reading the private key PEM: {e}"))
    })?;
    let signer = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| ProxyError::Certificate(format!("{what}: {e}")))?;
    Ok(CertifiedKey::new(vec![cert], signer))
}

/// A certificate and key read from files on this node.
pub fn certified_key_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<CertifiedKey, ProxyError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| ProxyError::Certificate(format!("reading {}: {e}", p.display())))
    };
    certified_key(
        &read(cert)?,
        &read(key)?,
        &format!("{} and {}", cert.display(), key.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(name: &str) -> Arc<CertifiedKey> {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        Arc::new(
            certified_key(
                c.cert.pem().as_bytes(),
                c.key_pair.serialize_pem().as_bytes(),
                name,
            )
            .unwrap(),
        )
    }

    #[test]
    fn sni_picks_the_exact_name_then_the_longest_wildcard() {
        let r = CertResolver::default();
        let (shop, wild, eu) = (
            key_for("shop.test"),
            key_for("*.test"),
            key_for("*.eu.test"),
        );
        r.replace(vec![
            (HostPattern::parse("shop.test").unwrap(), shop.clone()),
            (HostPattern::parse("*.test").unwrap(), wild.clone()),
            (HostPattern::parse("*.eu.test").unwrap(), eu.clone()),
        ]);
        assert!(Arc::ptr_eq(&r.find("SHOP.test").unwrap(), &shop));
        assert!(Arc::ptr_eq(&r.find("a.test").unwrap(), &wild));
        assert!(Arc::ptr_eq(&r.find("a.eu.test").unwrap(), &eu));
        assert!(r.find("test").is_none());
        assert!(r.find("other.example").is_none());
        assert!(r.only().is_none(), "no default among several");
        r.replace(vec![(
            HostPattern::parse("shop.test").unwrap(),
            shop.clone(),
        )]);
        assert!(Arc::ptr_eq(&r.only().unwrap(), &shop));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        let err = certified_key(
            a.cert.pem().as_bytes(),
            b.key_pair.serialize_pem().as_bytes(),
            "a.pem and b.key",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("a.pem and b.key"), "{err}");
        let err = certified_key(b"junk", b"junk", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}

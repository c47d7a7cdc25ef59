//! rustls configurations. Every config names its crypto provider
//! (aws-lc-rs) explicitly, because both providers are in the build graph.
//!
//! - A node serves with its certificate followed by the CA's, so a joiner
//!   can pin the CA by fingerprint from the token before it sends anything.
//! - Clients leave ALPN to hyper-rustls, which sets it from the HTTP
//!   versions it enables.
//! - Client certificates are verified against the cluster CA when offered;
//!   only the join and CA endpoints accept a connection without one.

use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::pki::{fingerprint_der, NodeIdentity};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS setup: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("{0} is not valid PEM")]
    Pem(&'static str),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let out: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem(what))?;
    if out.is_empty() {
        return Err(TlsError::Pem(what));
    }
    Ok(out)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| TlsError::Pem("node key"))
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(ca_pem, "CA certificate")? {
        store.add(c)?;
    }
    Ok(Arc::new(store))
}

/// The certificate chain a node presents: its own, then the CA's.
fn chain(id: &NodeIdentity) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut chain = certs(&id.cert_pem, "node certificate")?;
    chain.extend(certs(&id.ca_pem, "CA certificate")?);
    Ok(chain)
}

/// The certificate and key a node presents, as server and as client. A
/// renewal swaps them in place: connections made afterwards use the new
/// ones, and nothing is rebuilt.
#[derive(Debug)]
pub struct LiveIdentity {
    current: RwLock<Arc<CertifiedKey>>,
    ca_pem: String,
}

impl LiveIdentity {
    pub fn new(id: &NodeIdentity) -> Result<Arc<LiveIdentity>, TlsError> {
        Ok(Arc::new(LiveIdentity {
            current: RwLock::new(certified(id)?),
            ca_pem: id.ca_pem.clone(),
        }))
    }

    /// Presents `id` from now on. It must come from the same CA.
    pub fn replace(&self, id: &NodeIdentity) -> Result<(), TlsError> {
        if id.ca_pem != self.ca_pem {
            return Err(TlsError::Pem("a renewed identity from another CA"));
        }
        let next = certified(id)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn certified(id: &NodeIdentity) -> Result<Arc<CertifiedKey>, TlsError> {
    let signing = provider()
        .key_provider
        .load_private_key(key(&id.key_pem)?)?;
    Ok(Arc::new(CertifiedKey::new(chain(id)?, signing)))
}

impl ResolvesServerCert for LiveIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for LiveIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

pub fn server_config(id: &Arc<LiveIdentity>) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&id.ca_pem)?, provider())
        .allow_unauthenticated()
        .build()?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(id.clone());
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A member calling another: verifies the server against the CA and
/// presents its own certificate.
pub fn client_config(id: &Arc<LiveIdentity>) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(&id.ca_pem)?)
        .with_client_cert_resolver(id.clone());
    Ok(Arc::new(cfg))
}

/// A joiner, which has no certificate yet: trusts only a CA whose
/// fingerprint it was given, found in the chain the server presents.
pub fn pinned_client_config(
    ca_fingerprint: &str,
) -> Result<(Arc<ClientConfig>, Arc<PinnedCa>), TlsError> {
    let pinned = Arc::new(PinnedCa {
        fingerprint: ca_fingerprint.to_string(),
        seen: Mutex::new(None),
        algorithms: provider().signature_verification_algorithms,
    });
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(pinned.clone())
        .with_no_client_auth();
    Ok((Arc::new(cfg), pinned))
}

/// Verifies a server chain against the CA the token names, by fingerprint.
#[derive(Debug)]
pub struct PinnedCa {
    fingerprint: String,
    /// The CA fingerprints the server offered, when none matched.
    seen: Mutex<Option<Vec<String>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCa {
    /// The CAs a server offered instead of the pinned one, if it did.
    pub fn mismatch(&self) -> Option<Vec<String>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| fingerprint_der(c) == self.fingerprint)
        else {
            let offered = intermediates.iter().map(|c| fingerprint_der(c)).collect();
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(offered);
            return Err(rustls::Error::General(
                "the server's CA is not the one the token pins".into(),
            ));
        };
        let mut store = RootCertStore::empty();
        store.add(ca.clone().into_owned())?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

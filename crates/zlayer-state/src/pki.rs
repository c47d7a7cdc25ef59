//! The cluster's identities: the CA made when the first node starts, node
//! keys and certificates, and fingerprints. Keys are ECDSA P-256; a node's
//! private key is made on the node and never leaves it (the CA signs a CSR).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use crate::model::CaRecord;

const CA_DAYS: i64 = 3650;
const NODE_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{what} is not valid PEM")]
    Pem { what: &'static str },
}

/// A node's key and certificate, with the CA that signed it.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// SHA-256 of a certificate's DER, hex.
pub fn fingerprint_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// SHA-256 of the first certificate in `pem`.
pub fn fingerprint_pem(pem: &str) -> Result<String, PkiError> {
    Ok(fingerprint_der(&first_der(pem, "certificate")?))
}

pub(crate) fn first_der(pem: &str, what: &'static str) -> Result<Vec<u8>, PkiError> {
    rustls_pki_pem(pem)
        .into_iter()
        .next()
        .ok_or(PkiError::Pem { what })
}

fn rustls_pki_pem(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(days as u64 * 86_400)).into();
}

/// Makes a new cluster CA.
pub fn create_ca(cluster_id: &str) -> Result<CaRecord, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("zlayer cluster {cluster_id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    Ok(CaRecord {
        cluster_id: cluster_id.to_string(),
        fingerprint: fingerprint_der(cert.der()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A fresh node key and a CSR for it. The CSR's names do not matter: the CA
/// decides what the certificate says.
pub fn node_key_and_csr(name: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec![name.to_string()])?;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// Signs a node certificate for `csr_pem`, valid for `name` and the
/// addresses the node advertises, usable as both TLS server and client.
pub fn sign_node(
    ca: &CaRecord,
    csr_pem: &str,
    name: &str,
    addrs: &[IpAddr],
) -> Result<String, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = CertificateParams::from_ca_cert_pem(&ca.cert_pem)?.self_signed(&ca_key)?;
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params
        .subject_alt_names
        .extend(addrs.iter().map(|a| SanType::IpAddress(*a)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut params, NODE_DAYS);
    csr.params = params;
    Ok(csr.signed_by(&issuer, &ca_key)?.pem())
}

/// Signs a member's CSR on the leader, for its name, the IP of its
/// `ip:port` and, behind NAT, its address in the mesh; the error says why not, for the member to read.
pub(crate) fn sign_member(
    mut ca: CaRecord,
    ca_key: Option<String>,
    csr_pem: &str,
    name: &str,
    addr: &str,
    overlay: Option<IpAddr>,
) -> Result<String, String> {
    ca.key_pem = ca_key.ok_or(
        "this leader does not hold the CA key yet (it fetches it as a voter); try again in a moment",
    )?;
    let ip = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|_| format!("address {addr:?} is not ip:port"))?
        .ip();
    let ips: Vec<IpAddr> = std::iter::once(ip).chain(overlay).collect();
    sign_node(&ca, csr_pem, name, &ips).map_err(|e| format!("the CSR: {e}"))
}

/// The first node's identity: it signs its own CSR with the CA it made.
pub fn bootstrap_identity(
    ca: &CaRecord,
    name: &str,
    addrs: &[IpAddr],
) -> Result<NodeIdentity, PkiError> {
    let (key_pem, csr) = node_key_and_csr(name)?;
    Ok(NodeIdentity {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: sign_node(ca, &csr, name, addrs)?,
        key_pem,
    })
}

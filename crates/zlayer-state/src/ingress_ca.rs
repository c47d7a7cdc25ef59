//! The ingress CA: a second CA, only for the dev certificates the ingress
//! serves for `https` routes that name none of their own. Its key is
//! derived from the cluster CA key (HMAC-SHA256 under a fixed label), so
//! every voter holds it without another secret to hand around, and only
//! voters can sign with it. It is a different key from the cluster CA's, so
//! a certificate it signs never passes as a member's identity, and users
//! who trust it for their hosts do not trust the cluster's members.

use aws_lc_rs::{agreement, hmac, signature};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Leaf certificates live this long; the ingress renews them a third before.
const LEAF_DAYS: u64 = 90;
const LABEL: &[u8] = b"zlayer ingress CA v1";

#[derive(Debug, thiserror::Error)]
pub enum IngressCaError {
    #[error("deriving the ingress CA key: {0}")]
    Derive(&'static str),
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("`{0}` is not a host name to certify")]
    Host(String),
}

/// The ingress CA's key pair, the same on every holder of the cluster CA key.
fn ca_key(cluster_ca_key_pem: &str) -> Result<KeyPair, IngressCaError> {
    let mac = hmac::Key::new(hmac::HMAC_SHA256, cluster_ca_key_pem.as_bytes());
    // A scalar outside P-256's range is vanishingly rare; count up past one.
    for counter in 0u8..=16 {
        let seed = hmac::sign(&mac, &[LABEL, &[counter]].concat());
        let Ok(private) =
            agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, seed.as_ref())
        else {
            continue;
        };
        let public = private
            .compute_public_key()
            .map_err(|_| IngressCaError::Derive("public key"))?;
        let pair = signature::EcdsaKeyPair::from_private_key_and_public_key(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            seed.as_ref(),
            public.as_ref(),
        )
        .map_err(|_| IngressCaError::Derive("key pair"))?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| IngressCaError::Derive("PKCS#8"))?;
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
        return Ok(KeyPair::from_pkcs8_der_and_sign_algo(
            &der,
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )?);
    }
    Err(IngressCaError::Derive("no usable scalar"))
}

fn ca_params(cluster_id: &str) -> Result<CertificateParams, IngressCaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("zlayer ingress CA {cluster_id}"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Fixed dates: every voter makes the same CA certificate but for its signature.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    Ok(params)
}

/// The ingress CA certificate, for clients to trust (`zlayer ca export`).
pub fn ca_cert_pem(cluster_ca_key_pem: &str, cluster_id: &str) -> Result<String, IngressCaError> {
    let key = ca_key(cluster_ca_key_pem)?;
    Ok(ca_params(cluster_id)?.self_signed(&key)?.pem())
}

/// A new key and a certificate for `hosts` (names, or `*.` wildcards),
/// signed by the ingress CA: server authentication only. Returns the chain
/// (leaf, then CA) and the key, as PEM.
pub fn issue(
    cluster_ca_key_pem: &str,
    cluster_id: &str,
    hosts: &[String],
) -> Result<(String, String), IngressCaError> {
    let (key_pem, csr_pem) = key_and_csr(hosts)?;
    let chain = sign_csr(cluster_ca_key_pem, cluster_id, hosts, &csr_pem)?;
    Ok((chain, key_pem))
}

/// A new key and a CSR for it, made where the certificate will be served,
/// so the key never leaves that node.
pub fn key_and_csr(hosts: &[String]) -> Result<(String, String), IngressCaError> {
    check_hosts(hosts)?;
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(hosts.to_vec())?.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// Signs the key of `csr_pem` for `hosts` with the ingress CA, server
/// authentication only: whatever else the CSR asks for (names, uses,
/// constraints) is ignored. Returns the chain, leaf then CA, as PEM.
pub fn sign_csr(
    cluster_ca_key_pem: &str,
    cluster_id: &str,
    hosts: &[String],
    csr_pem: &str,
) -> Result<String, IngressCaError> {
    check_hosts(hosts)?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    let ca_key = ca_key(cluster_ca_key_pem)?;
    let issuer = ca_params(cluster_id)?.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    for h in hosts {
        params
            .subject_alt_names
            .push(SanType::DnsName(h.clone().try_into()?));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hosts[0].clone());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(LEAF_DAYS * 86_400)).into();
    csr.params = params;
    let leaf = csr.signed_by(&issuer, &ca_key)?;
    Ok(format!("{}{}", leaf.pem(), issuer.pem()))
}

/// Host names, or `*.` wildcards, and at least one.
fn check_hosts(hosts: &[String]) -> Result<(), IngressCaError> {
    for h in hosts {
        let name = h.strip_prefix("*.").unwrap_or(h);
        let ok = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(IngressCaError::Host(h.clone()));
        }
    }
    if hosts.is_empty() {
        return Err(IngressCaError::Host(String::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_holder_of_the_cluster_key_derives_the_same_ingress_key_and_no_one_else() {
        let a = crate::pki::create_ca("c1").unwrap();
        let b = crate::pki::create_ca("c1").unwrap();
        let k1 = ca_key(&a.key_pem).unwrap().public_key_der();
        assert_eq!(k1, ca_key(&a.key_pem).unwrap().public_key_der());
        assert_ne!(k1, ca_key(&b.key_pem).unwrap().public_key_der());
        let cluster_pub = KeyPair::from_pem(&a.key_pem).unwrap().public_key_der();
        assert_ne!(k1, cluster_pub, "the ingress CA is not the cluster CA");
    }

    /// Whether `chain_pem` verifies for `host` under the CA in `root_pem`.
    fn verifies(root_pem: &str, chain_pem: &str, host: &str) -> bool {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap();
        let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
        v.verify_server_cert(
            &certs[0],
            &certs[1..],
            &ServerName::try_from(host.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .is_ok()
    }

    #[test]
    fn an_issued_chain_verifies_under_the_ingress_ca_and_never_under_the_cluster_ca() {
        let ca = crate::pki::create_ca("c1").unwrap();
        let hosts = ["shop.test".to_string(), "*.shop.test".to_string()];
        let (chain, _key) = issue(&ca.key_pem, "c1", &hosts).unwrap();
        // Another voter's copy of the CA certificate trusts it too.
        let exported = ca_cert_pem(&ca.key_pem, "c1").unwrap();
        assert!(verifies(&exported, &chain, "shop.test"));
        assert!(verifies(&exported, &chain, "a.shop.test"));
        assert!(!verifies(&exported, &chain, "other.test"));
        // The attack: an ingress certificate presented where the cluster CA is trusted.
        assert!(!verifies(&ca.cert_pem, &chain, "shop.test"));
        assert!(issue(&ca.key_pem, "c1", &["a/b".into()]).is_err());
        assert!(issue(&ca.key_pem, "c1", &[]).is_err());
    }

    /// A CSR comes from a node that may be hostile: what it asks for beyond
    /// its key (other names, a signer's key usage, client authentication)
    /// is not what it gets. (rcgen puts no basicConstraints in a CSR.)
    #[test]
    fn a_csr_gets_the_hosts_it_was_granted_and_nothing_it_asked_for() {
        let ca = crate::pki::create_ca("c1").unwrap();
        let key = KeyPair::generate().unwrap();
        let mut wants = CertificateParams::new(vec!["bank.example".to_string()]).unwrap();
        wants.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        wants.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let csr = wants.serialize_request(&key).unwrap().pem().unwrap();
        let chain = sign_csr(&ca.key_pem, "c1", &["shop.test".into()], &csr).unwrap();
        let root = ca_cert_pem(&ca.key_pem, "c1").unwrap();
        assert!(verifies(&root, &chain, "shop.test"));
        assert!(!verifies(&root, &chain, "bank.example"));
        let leaf = chain
            .split_inclusive("-----END CERTIFICATE-----")
            .next()
            .unwrap();
        let parsed = CertificateParams::from_ca_cert_pem(leaf).unwrap();
        assert!(
            matches!(parsed.is_ca, IsCa::NoCa | IsCa::ExplicitNoCa),
            "{:?}",
            parsed.is_ca
        );
        assert_eq!(parsed.key_usages, vec![KeyUsagePurpose::DigitalSignature]);
        assert_eq!(
            parsed.extended_key_usages,
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        );
        assert!(sign_csr(&ca.key_pem, "c1", &["shop.test".into()], "junk").is_err());
    }
}

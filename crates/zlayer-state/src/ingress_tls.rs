//! Ingress TLS for nodes that do not hold the CA key: a node that is not a
//! voter serves every `https` route too, but cannot sign a dev certificate
//! or open a sealed ACME key. It asks the leader (a voter) over mTLS
//! (`/cluster/ingress-tls`): to sign a CSR whose key never leaves the node,
//! or for the key of an ACME certificate the state holds. The leader
//! answers only for hosts the cluster serves: dev certificates for the
//! hosts of committed `https` routes that name no certificate, ACME keys
//! for hosts whose certificate the state holds. Any other name is refused,
//! so a node's certificate never buys a certificate for a host the
//! cluster's managers did not route.

use serde::{Deserialize, Serialize};

use crate::ca_key::CaKey;
use crate::{ClusterState, StateMachine};

pub const INGRESS_TLS: &str = "/cluster/ingress-tls";

#[derive(Debug, Serialize, Deserialize)]
pub enum IngressTlsRequest {
    /// Sign a dev certificate for `hosts` over this CSR.
    Sign { hosts: Vec<String>, csr_pem: String },
    /// The ACME certificate for `host`, its key opened.
    Acme { host: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum IngressTlsReply {
    /// The chain, leaf first.
    Signed {
        chain_pem: String,
    },
    /// Chain and key from one view of the state, so they match.
    Acme {
        cert_pem: String,
        key_pem: String,
        not_before_ms: u64,
    },
    Refused(String),
}

/// The answer of a holder of the CA key (`None`: not a voter).
pub(crate) fn answer(
    machine: &StateMachine,
    ca_key: &CaKey,
    req: IngressTlsRequest,
) -> IngressTlsReply {
    let key = ca_key.get();
    machine.read(|s| decide(s, key.as_deref(), req))
}

/// [`answer`] against one view of the state.
pub(crate) fn decide(
    s: &ClusterState,
    ca_key: Option<&str>,
    req: IngressTlsRequest,
) -> IngressTlsReply {
    let Some(ca_key) = ca_key else {
        return IngressTlsReply::Refused(
            "this member holds no CA key yet (only voters do); try again in a moment".into(),
        );
    };
    match req {
        IngressTlsRequest::Sign { hosts, csr_pem } => {
            let routed = dev_hosts(s);
            if let Some(h) = hosts
                .iter()
                .find(|h| !routed.contains(&h.to_ascii_lowercase()))
            {
                return IngressTlsReply::Refused(format!(
                    "no committed https route without a certificate of its own has host `{h}`"
                ));
            }
            let Some(id) = s.ca.as_ref().map(|c| c.cluster_id.clone()) else {
                return IngressTlsReply::Refused("the cluster has no CA yet".into());
            };
            match crate::ingress_ca::sign_csr(ca_key, &id, &hosts, &csr_pem) {
                Ok(chain_pem) => IngressTlsReply::Signed { chain_pem },
                Err(e) => IngressTlsReply::Refused(e.to_string()),
            }
        }
        IngressTlsRequest::Acme { host } => {
            let host = host.to_ascii_lowercase();
            let Some(cert) = s.acme.certs.get(&host) else {
                return IngressTlsReply::Refused(format!(
                    "the cluster holds no ACME certificate for `{host}`"
                ));
            };
            let opened = crate::acme::SealKey::derive(ca_key, crate::acme::SEAL_LABEL)
                .open(&host, &cert.sealed_key);
            match opened.map(String::from_utf8) {
                Ok(Ok(key_pem)) => IngressTlsReply::Acme {
                    cert_pem: cert.cert_pem.clone(),
                    key_pem,
                    not_before_ms: cert.not_before_ms,
                },
                Ok(Err(_)) => IngressTlsReply::Refused("the opened key is not PEM".into()),
                Err(e) => IngressTlsReply::Refused(e.to_string()),
            }
        }
    }
}

/// Hosts of the committed specs' `https` routes that name no certificate
/// (lowercased): the ones the ingress CA certifies.
fn dev_hosts(s: &ClusterState) -> std::collections::BTreeSet<String> {
    let mut hosts = std::collections::BTreeSet::new();
    for d in s.deployments.values() {
        let Ok(spec) = zlayer_spec::parse(&d.current.file, &d.current.text) else {
            continue;
        };
        for svc in spec.services.values() {
            for ep in svc.endpoints.iter().filter(|e| e.is_ingress_route()) {
                if let (zlayer_spec::Protocol::Https, None, Some(h)) =
                    (ep.protocol, &ep.tls, &ep.host)
                {
                    hosts.insert(h.to_ascii_lowercase());
                }
            }
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::{AcmeCertificate, SealKey};
    use crate::DeploymentRecord;

    const SPEC: &str = "version: v1\ndeployment: shop\nservices:\n  web:\n    image: { name: demo }\n    endpoints:\n      - { name: dev, protocol: https, port: 80, host: Shop.test, expose: public }\n      - { name: files, protocol: https, port: 80, host: files.test, expose: public, tls: { cert: /c.pem, key: /k.pem } }\n      - { name: plain, protocol: http, port: 80, host: plain.test, expose: public }\n";

    fn state() -> (ClusterState, String) {
        let ca = crate::pki::create_ca("c1").unwrap();
        let key = ca.key_pem.clone();
        let mut s = ClusterState {
            ca: Some(ca),
            ..ClusterState::default()
        };
        s.deployments
            .insert("shop".into(), DeploymentRecord::fixture("shop", SPEC));
        (s, key)
    }

    fn sign(s: &ClusterState, key: Option<&str>, hosts: &[&str]) -> IngressTlsReply {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let (_, csr_pem) = crate::ingress_ca::key_and_csr(&hosts).unwrap();
        decide(s, key, IngressTlsRequest::Sign { hosts, csr_pem })
    }

    /// A node's certificate buys dev certificates only for the hosts of
    /// committed https routes that name no certificate: not for any name
    /// it likes, nor for a host whose route serves files or plain HTTP.
    #[test]
    fn dev_certificates_only_for_hosts_the_cluster_routes_without_one() {
        let (s, key) = state();
        assert!(matches!(
            sign(&s, Some(&key), &["shop.test"]),
            IngressTlsReply::Signed { .. }
        ));
        for hosts in [
            &["bank.example"][..],
            &["shop.test", "bank.example"],
            &["files.test"],
            &["plain.test"],
        ] {
            let got = sign(&s, Some(&key), hosts);
            assert!(
                matches!(&got, IngressTlsReply::Refused(why) if why.contains("no committed https route")),
                "{hosts:?}: {got:?}"
            );
        }
        assert!(matches!(
            sign(&s, None, &["shop.test"]),
            IngressTlsReply::Refused(_)
        ));
    }

    /// A sealed key opens only for the host it was sealed for, and only a
    /// certificate the state holds is handed out.
    #[test]
    fn acme_keys_only_for_certificates_the_state_holds() {
        let (mut s, key) = state();
        let seal = SealKey::derive(&key, crate::acme::SEAL_LABEL);
        let cert = |host: &str| AcmeCertificate {
            cert_pem: "CHAIN".into(),
            sealed_key: seal.seal(host, b"KEY PEM").unwrap(),
            not_before_ms: 7,
            not_after_ms: 9,
        };
        s.acme.certs.insert("a.test".into(), cert("a.test"));
        // Sealed for a.test, stored under b.test: it does not open there.
        s.acme.certs.insert("b.test".into(), cert("a.test"));
        let ask = |host: &str| {
            decide(
                &s,
                Some(&key),
                IngressTlsRequest::Acme { host: host.into() },
            )
        };
        match ask("A.test") {
            IngressTlsReply::Acme {
                cert_pem,
                key_pem,
                not_before_ms,
            } => {
                assert_eq!(
                    (cert_pem.as_str(), key_pem.as_str(), not_before_ms),
                    ("CHAIN", "KEY PEM", 7)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(ask("b.test"), IngressTlsReply::Refused(_)));
        assert!(
            matches!(ask("c.test"), IngressTlsReply::Refused(why) if why.contains("no ACME certificate"))
        );
    }
}

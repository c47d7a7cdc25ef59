//! Sealing, rotation and who may read a secret: the attack tests.

use super::*;
use crate::model::{Command, DeploymentRecord, NodeRecord, Response};
use base64::Engine;

const CANARY: &[u8] = b"canary-7f3a9c-do-not-leak";
const SPEC: &str = "version: v1\ndeployment: shop\nservices:\n  web:\n    image: { name: demo }\n    env: { DB: $S:db-pass }\n  cache:\n    image: { name: demo }\n";

fn state() -> (ClusterState, String) {
    let ca = crate::pki::create_ca("c1").unwrap();
    let key = ca.key_pem.clone();
    let mut s = ClusterState {
        ca: Some(ca),
        ..ClusterState::default()
    };
    for (id, name) in [(1, "n1"), (2, "n2")] {
        s.nodes.insert(
            id,
            NodeRecord {
                id,
                name: name.into(),
                ..NodeRecord::default()
            },
        );
    }
    s.deployments
        .insert("shop".into(), DeploymentRecord::fixture("shop", SPEC));
    for (workload, node) in [("shop/web", "n1"), ("shop/cache", "n2")] {
        let a = zlayer_model::Assignment {
            workload: workload.into(),
            replica: 0,
            node: node.into(),
            generation: 1,
            attempt: 0,
        };
        s.assignments.insert(crate::AssignmentKey::of(&a), a);
    }
    (s, key)
}

fn put(s: &mut ClusterState, key: &str, name: &str, value: &[u8]) -> Response {
    let p = seal_put(&s.secrets, key, name, value, 0).unwrap();
    s.apply(Command::PutSecret(p), &mut Vec::new())
}

fn ask(s: &ClusterState, key: Option<&str>, node: u64, service: &str, name: &str) -> SecretsReply {
    let req = SecretsRequest {
        deployment: "shop".into(),
        service: service.into(),
        names: vec![name.into()],
    };
    answer(s, key, node, &req)
}

#[test]
fn the_state_holds_no_value_and_only_the_cluster_key_opens_it() {
    let (mut s, key) = state();
    assert_eq!(put(&mut s, &key, "db-pass", CANARY), Response::Done);
    let stored = serde_json::to_string(&s).unwrap();
    assert!(!stored.contains("canary"), "the state shows the value");
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    assert!(!stored.contains(&b64[..16]), "the state shows it in base64");
    assert_eq!(
        open(&s.secrets, &key, "db-pass").unwrap(),
        (1, CANARY.to_vec())
    );
    let other = crate::pki::create_ca("c2").unwrap().key_pem;
    assert!(open(&s.secrets, &other, "db-pass").is_err());
}

#[test]
fn a_new_value_counts_up_and_a_stale_proposal_is_refused() {
    let (mut s, key) = state();
    let first = seal_put(&s.secrets, &key, "db-pass", b"one", 0).unwrap();
    let racing = seal_put(&s.secrets, &key, "db-pass", b"two", 0).unwrap();
    assert_eq!(
        s.apply(Command::PutSecret(first), &mut Vec::new()),
        Response::Done
    );
    let refused = s.apply(Command::PutSecret(racing), &mut Vec::new());
    assert!(
        matches!(refused, Response::Refused(ref r) if r.contains("run it again")),
        "{refused:?}"
    );
    assert_eq!(put(&mut s, &key, "db-pass", b"three"), Response::Done);
    assert_eq!(
        open(&s.secrets, &key, "db-pass").unwrap(),
        (2, b"three".to_vec())
    );
    assert!(seal_put(&s.secrets, &key, "Bad_Name", b"x", 0).is_err());
    let big = vec![0u8; MAX_SECRET_BYTES + 1];
    assert!(matches!(
        seal_put(&s.secrets, &key, "big", &big, 0),
        Err(SecretError::TooLarge { .. })
    ));
}

#[test]
fn rotation_reseals_every_value_and_drops_the_old_key() {
    let (mut s, key) = state();
    put(&mut s, &key, "db-pass", CANARY);
    put(&mut s, &key, "api", b"token");
    let old_key = s.secrets.keys[&1].clone();
    let old_sealed = s.secrets.secrets["api"].sealed.clone();
    let r = seal_rotation(&s.secrets, &key).unwrap();
    assert_eq!(
        s.apply(Command::RotateSecretsKey(r), &mut Vec::new()),
        Response::Done
    );
    assert_eq!(s.secrets.current_key, 2);
    assert!(!s.secrets.keys.values().any(|k| *k == old_key));
    assert_ne!(s.secrets.secrets["api"].sealed, old_sealed);
    assert_eq!(
        open(&s.secrets, &key, "db-pass").unwrap(),
        (1, CANARY.to_vec())
    );
    assert_eq!(
        open(&s.secrets, &key, "api").unwrap(),
        (1, b"token".to_vec())
    );
    // A rotation sealed before a newer value landed is refused.
    let stale = seal_rotation(&s.secrets, &key).unwrap();
    put(&mut s, &key, "api", b"token2");
    assert!(matches!(
        s.apply(Command::RotateSecretsKey(stale), &mut Vec::new()),
        Response::Refused(_)
    ));
    assert_eq!(put(&mut s, &key, "db-pass", b"after"), Response::Done);
}

/// A node certificate buys a secret only for a service the node runs and
/// that uses it: not for another node's consumer, not through a service
/// that does not use it, and never from a member without the cluster key.
#[test]
fn a_secret_goes_only_to_a_node_that_runs_a_consumer() {
    let (mut s, key) = state();
    put(&mut s, &key, "db-pass", CANARY);
    put(&mut s, &key, "other", b"x");
    match ask(&s, Some(&key), 1, "web", "db-pass") {
        SecretsReply::Values(v) => {
            let (version, b64) = &v["db-pass"];
            assert_eq!(*version, 1);
            let value = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            assert_eq!(value, CANARY);
        }
        other => panic!("{other:?}"),
    }
    for (node, service, name, why) in [
        (2, "web", "db-pass", "runs no replica of shop/web"),
        (2, "cache", "db-pass", "does not use secret"),
        (1, "web", "other", "does not use secret"),
        (9, "web", "db-pass", "no node record"),
    ] {
        match ask(&s, Some(&key), node, service, name) {
            SecretsReply::Refused(r) => assert!(r.contains(why), "{r}"),
            other => panic!("node {node} {service} {name}: {other:?}"),
        }
    }
    assert!(matches!(
        ask(&s, None, 1, "web", "db-pass"),
        SecretsReply::Refused(_)
    ));
}

#[test]
fn consumers_are_the_services_whose_spec_uses_it() {
    let (s, _) = state();
    assert_eq!(consumers(&s, "db-pass"), vec!["shop/web".to_string()]);
    assert!(consumers(&s, "nope").is_empty());
}

/// A route's certificate secrets go to every node (each one's ingress
/// serves the route), but only those two, and only for that service.
#[test]
fn an_ingress_certificate_secret_goes_to_every_node() {
    let (mut s, key) = state();
    let tls = "version: v1\ndeployment: shop\nservices:\n  web:\n    image: { name: demo }\n    env: { DB: $S:db-pass }\n    endpoints:\n      - { name: https, protocol: https, port: 80, host: shop.test, expose: public, tls: { cert_secret: shop-crt, key_secret: shop-key } }\n  cache:\n    image: { name: demo }\n";
    s.deployments.get_mut("shop").unwrap().current.text = tls.into();
    for name in ["db-pass", "shop-crt", "shop-key"] {
        put(&mut s, &key, name, name.as_bytes());
    }
    // n2 runs no replica of shop/web, yet its ingress gets the route's pair.
    assert!(matches!(
        ask(&s, Some(&key), 2, "web", "shop-key"),
        SecretsReply::Values(_)
    ));
    assert!(
        matches!(ask(&s, Some(&key), 2, "web", "db-pass"), SecretsReply::Refused(r) if r.contains("runs no replica"))
    );
    assert!(matches!(
        ask(&s, Some(&key), 2, "cache", "shop-key"),
        SecretsReply::Refused(_)
    ));
    assert_eq!(consumers(&s, "shop-crt"), vec!["shop/web".to_string()]);
}

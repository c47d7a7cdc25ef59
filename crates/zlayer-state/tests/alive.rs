//! The liveness call: the leader notes a caller under the node id its
//! certificate belongs to, and refuses a certificate no current node record
//! holds (never recorded, or removed), so no member can keep another alive.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use support::{eventually, free_addr, start};
use zlayer_state::{pki, Command, NodeRecord};

fn record(id: u64, name: &str, cert_fingerprint: &str) -> Command {
    Command::AddNode(NodeRecord {
        id,
        name: name.into(),
        cert_fingerprint: cert_fingerprint.into(),
        ..NodeRecord::default()
    })
}

#[tokio::test]
async fn the_leader_hears_only_certificates_a_current_node_record_holds() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::create_ca("alive").unwrap();
    let local = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let id1 = pki::bootstrap_identity(&ca, "n1", &local).unwrap();
    let id2 = pki::bootstrap_identity(&ca, "n2", &local).unwrap();
    let seed = vec![zlayer_state::authz::SeedMember {
        id: 1,
        cert_fingerprint: pki::fingerprint_pem(&id1.cert_pem).unwrap(),
    }];
    let m1 = start(1, id1, free_addr(), dir.path(), false, Vec::new()).await;
    let m2 = start(2, id2.clone(), free_addr(), dir.path(), false, seed).await;
    m1.bootstrap().await.unwrap();
    eventually("member 1 leads", || m1.leader().map(|l| l.0) == Some(1)).await;
    m1.raft
        .add_learner(2, openraft::BasicNode::new(&m2.advertise), true)
        .await
        .unwrap();
    eventually("member 2 knows the leader", || {
        m2.leader().map(|l| l.0) == Some(1)
    })
    .await;

    // A CA-signed certificate that no node record holds.
    let refused = m2
        .alive()
        .await
        .expect_err("an unrecorded certificate was heard");
    assert!(refused.to_string().contains("knows no node"), "{refused}");
    // A record that claims member 2's id with another certificate does not help.
    m1.write(record(2, "n2", &"00".repeat(32))).await.unwrap();
    assert!(m2.alive().await.is_err());
    assert!(m1.heard.get(2).is_none());

    // The id comes from the certificate's record, not from who the caller says it is.
    let fingerprint = pki::fingerprint_pem(&id2.cert_pem).unwrap();
    m1.write(record(7, "n7", &fingerprint)).await.unwrap();
    m2.alive().await.expect("a recorded certificate is heard");
    assert!(m1.heard.get(7).is_some());
    assert!(m1.heard.get(2).is_none());

    // Removed, its certificate is refused again.
    m1.write(Command::RemoveNode { id: 7 }).await.unwrap();
    let before = m1.heard.get(7);
    assert!(
        m2.alive().await.is_err(),
        "a removed node's certificate was heard"
    );
    assert_eq!(m1.heard.get(7), before);
    m2.stop().await;
    m1.stop().await;
}

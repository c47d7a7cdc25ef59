//! Three members on loopback, over real mTLS: replication, writes made on a
//! follower, losing the leader, and callers the cluster must refuse.

mod support;

use std::time::Duration;

use support::{deploy, eventually, free_addr, member_at, names, three_members, LOCAL};
use zlayer_state::pki::{self, NodeIdentity};
use zlayer_state::transport::{tls, CallError, PeerClient};
use zlayer_state::{Member, Response};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_replicate_and_survive_losing_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::create_ca("test").unwrap();
    let ms = three_members(&ca, dir.path()).await;

    // A write made on a follower is forwarded to the leader.
    assert_eq!(
        ms[2].write(deploy("web")).await.unwrap(),
        Response::Revision(1)
    );
    for m in &ms {
        eventually("web everywhere", || names(m).contains("web")).await;
    }

    let leader = ms[0].leader().unwrap().0;
    let (dead, alive): (Vec<&Member>, Vec<&Member>) = ms.iter().partition(|m| m.id == leader);
    dead[0].stop().await;

    // Writes resume through a new leader, and nothing acknowledged is lost.
    let mut acked = vec!["web".to_string()];
    for i in 0..5 {
        let name = format!("after-{i}");
        alive[i % 2].write(deploy(&name)).await.unwrap();
        acked.push(name);
    }
    let new_leader = alive[0].leader().unwrap().0;
    assert_ne!(new_leader, leader);
    for m in &alive {
        eventually("every acknowledged deploy", || {
            acked.iter().all(|n| names(m).contains(n))
        })
        .await;
    }
    for m in &alive {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_keeps_its_state_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::create_ca("test").unwrap();
    let ms = three_members(&ca, dir.path()).await;
    ms[0].write(deploy("web")).await.unwrap();
    for m in &ms {
        eventually("web everywhere", || names(m).contains("web")).await;
    }
    let mut ms = ms;
    let third = ms.pop().unwrap();
    let addr = third.advertise.parse().unwrap();
    third.stop().await;
    drop(third);
    ms[0].write(deploy("db")).await.unwrap();

    // Back at the same address, with the same data dir, as after a restart.
    let again = member_at(&ca, 3, dir.path(), addr).await;
    assert!(names(&again).contains("web"), "state read back from sled");
    eventually("db reaches the restarted member", || {
        names(&again).contains("db")
    })
    .await;
    for m in [&ms[0], &ms[1], &again] {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_cluster_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::create_ca("test").unwrap();
    let m = member_at(&ca, 1, dir.path(), free_addr()).await;
    m.bootstrap().await.unwrap();
    let cmd = deploy("sneaky");

    // Trusts the cluster CA but has no certificate of its own.
    let (cfg, _) = tls::pinned_client_config(&ca.fingerprint).unwrap();
    let anonymous = PeerClient::new(cfg);
    let err = anonymous
        .call::<_, serde_json::Value>(&m.advertise, "/cluster/write", &cmd, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Status { status, .. } if status.as_u16() == 403),
        "{err}"
    );

    // Nor may it send an unbounded body to the one endpoint open to it.
    let huge = "x".repeat(100 << 10);
    let err = anonymous
        .call::<_, serde_json::Value>(&m.advertise, "/cluster/join", &huge, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Status { status, .. } if status.as_u16() == 413),
        "{err}"
    );

    // A certificate from another cluster's CA fails the handshake.
    let other = pki::create_ca("other").unwrap();
    let stranger: NodeIdentity = pki::bootstrap_identity(&other, "x", &[LOCAL]).unwrap();
    let mut id = stranger.clone();
    id.ca_pem = ca.cert_pem.clone();
    let client =
        PeerClient::new(tls::client_config(&tls::LiveIdentity::new(&id).unwrap()).unwrap());
    let err = client
        .call::<_, serde_json::Value>(&m.advertise, "/cluster/write", &cmd, Duration::from_secs(5))
        .await
        .unwrap_err();
    // In TLS 1.3 the server's verdict on a client certificate reaches the
    // client after its side of the handshake, so the client sees the
    // exchange break off (with the alert, or just a closed connection); it
    // never gets an HTTP answer.
    assert!(
        matches!(
            err,
            CallError::Unreachable { .. } | CallError::Interrupted { .. }
        ),
        "{err}"
    );

    // A joiner pinning another CA's fingerprint stops before sending.
    let (cfg, pinned) = tls::pinned_client_config(&other.fingerprint).unwrap();
    let err = PeerClient::new(cfg)
        .call::<_, serde_json::Value>(&m.advertise, "/cluster/write", &cmd, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Unreachable { .. }), "{err}");
    assert_eq!(pinned.mismatch(), Some(vec![ca.fingerprint.clone()]));

    assert!(!names(&m).contains("sneaky"));
    m.stop().await;
}

/// More idle connections than the endpoint admits, held open: writes still
/// commit through the leader and members still reach it (heartbeats are
/// such writes), because the flood costs a bounded number of slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_does_not_stop_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::create_ca("test").unwrap();
    let ms = three_members(&ca, dir.path()).await;
    let leader = ms[0].leader().unwrap().1;
    let flood_size = zlayer_state::transport::server::MAX_CONNECTIONS + 500;
    let mut idle = Vec::new();
    for _ in 0..flood_size {
        match tokio::net::TcpStream::connect(&leader).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {}: {e}", idle.len()),
        }
    }
    for (i, m) in ms.iter().enumerate() {
        let name = format!("during-flood-{i}");
        m.write(deploy(&name)).await.unwrap();
    }
    for m in &ms {
        eventually("the writes reach every member", || {
            (0..3).all(|i| names(m).contains(&format!("during-flood-{i}")))
        })
        .await;
    }
    drop(idle);
    for m in ms {
        m.stop().await;
    }
}

/// A leader's decision (node states, placements) made by a member that no
/// longer leads is refused, not forwarded: a leader cut off by a partition
/// counts every node down, and the new leader must never commit that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_decision_of_a_member_that_does_not_lead_is_not_handed_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::create_ca("test").unwrap();
    let ms = three_members(&ca, dir.path()).await;
    let follower = &ms[2];
    assert_ne!(follower.leader().map(|l| l.0), Some(follower.id));

    let refused = follower.write_as_leader(deploy("stale")).await;
    assert!(
        matches!(refused, Err(zlayer_state::WriteError::NotLeader)),
        "{refused:?}"
    );
    // The same member's ordinary write goes through, so the cluster did take writes.
    follower.write(deploy("later")).await.unwrap();
    for m in &ms {
        eventually("the later write everywhere", || names(m).contains("later")).await;
        assert!(!names(m).contains("stale"), "member {} committed it", m.id);
    }
    // The leader's own decisions still commit.
    ms[0].write_as_leader(deploy("decided")).await.unwrap();
    for m in &ms {
        m.stop().await;
    }
}

/// The liveness answer carries the index the leader had applied, so a
/// member back from a partition knows how far it must catch up before it
/// acts on its state again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_liveness_answer_says_how_far_the_leader_had_applied() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::create_ca("test").unwrap();
    let ms = three_members(&ca, dir.path()).await;
    for i in 0..3 {
        ms[0].write(deploy(&format!("d{i}"))).await.unwrap();
    }
    let leader_applied = *ms[0].machine.subscribe().borrow();
    let index = ms[2].alive().await.unwrap();
    assert!(
        index >= leader_applied,
        "the answer's index {index} is behind what the leader applied ({leader_applied})"
    );
    for m in &ms {
        m.stop().await;
    }
}

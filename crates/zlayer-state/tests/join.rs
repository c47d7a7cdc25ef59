//! Nodes join with a token over real mTLS on loopback; learners become
//! voters; every bad token is refused with its own case and writes nothing.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use support::{deploy, eventually, free_addr, start, LOCAL};
use zlayer_model::{NodeState, Resources};
use zlayer_state::join::{join, JoinError, NodeFacts};
use zlayer_state::pki;
use zlayer_state::token::JoinToken;
use zlayer_state::{Command, Member, NodeRecord, TokenKind};

fn facts(name: &str, addr: SocketAddr, zone: &str) -> NodeFacts {
    NodeFacts {
        name: name.into(),
        addr: addr.to_string(),
        capacity: Resources {
            cpu_milli: 2000,
            memory_bytes: 1 << 30,
            gpus: 0,
        },
        labels: BTreeMap::from([("zone".to_string(), zone.to_string())]),
        wg_public_key: None,
    }
}

async fn found(dir: &tempfile::TempDir) -> Member {
    let ca = pki::create_ca("test").unwrap();
    let addr = free_addr();
    let identity = pki::bootstrap_identity(&ca, "n1", &[LOCAL]).unwrap();
    let fp = pki::fingerprint_pem(&identity.cert_pem).unwrap();
    let m = start(1, identity, addr, dir.path(), true, Vec::new()).await;
    let f = facts("n1", addr, "a");
    let me = NodeRecord {
        id: 1,
        name: f.name,
        addr: f.addr,
        capacity: f.capacity,
        labels: f.labels,
        state: NodeState::Ready,
        cert_fingerprint: fp,
        ..NodeRecord::default()
    };
    m.found_cluster(ca, None, me).await.unwrap();
    m
}

/// Joins `name` with `token` on a free loopback port and starts its member.
async fn join_and_start(token: &str, name: &str, zone: &str, dir: &tempfile::TempDir) -> Member {
    let addr = free_addr();
    let joined = join(token, facts(name, addr, zone)).await.unwrap();
    start(
        joined.id,
        joined.identity,
        addr,
        dir.path(),
        true,
        joined.seed,
    )
    .await
}

fn voters(m: &Member) -> usize {
    let metrics = m.raft.metrics().borrow().clone();
    metrics.membership_config.membership().voter_ids().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_join_and_the_cluster_grows_to_three_voters() {
    let dir = tempfile::tempdir().unwrap();
    let first = found(&dir).await;
    let token = first
        .create_token(Duration::from_secs(3600), Some(2), TokenKind::Manager)
        .await
        .unwrap();

    let mut members = vec![first];
    for (name, zone) in [("n2", "b"), ("n3", "c")] {
        members.push(join_and_start(&token, name, zone, &dir).await);
    }
    eventually("three voters", || voters(&members[0]) == 3).await;
    let labels: Vec<String> = members[0].machine.read(|s| {
        s.nodes
            .values()
            .map(|n| format!("{}:{}", n.name, n.labels["zone"]))
            .collect()
    });
    assert_eq!(labels.len(), 3);
    assert!(labels.contains(&"n3:c".to_string()), "{labels:?}");

    // The joined nodes hold certificates the cluster accepts: a write made
    // on one reaches the leader and comes back to all.
    members[2].write(deploy("web")).await.unwrap();
    for m in &members {
        eventually("web everywhere", || {
            m.machine.read(|s| s.deployments.contains_key("web"))
        })
        .await;
    }
    for m in &members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bad_token_is_refused_with_its_case_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let first = found(&dir).await;
    let hour = Duration::from_secs(3600);

    let good = first
        .create_token(hour, Some(1), TokenKind::Manager)
        .await
        .unwrap();
    let used_up = first
        .create_token(hour, Some(1), TokenKind::Manager)
        .await
        .unwrap();
    let addr = free_addr();
    join(&used_up, facts("n2", addr, "b")).await.unwrap();
    let expired = first
        .create_token(Duration::from_millis(1), None, TokenKind::Manager)
        .await
        .unwrap();
    let revoked = first
        .create_token(hour, None, TokenKind::Manager)
        .await
        .unwrap();
    let id = JoinToken::decode(&revoked).unwrap().id;
    first.write(Command::RevokeToken { id }).await.unwrap();
    let tamper = |f: &dyn Fn(&mut JoinToken)| {
        let mut t = JoinToken::decode(&good).unwrap();
        f(&mut t);
        t.encode()
    };
    let forged = tamper(&|t| t.secret = "0".repeat(32));
    let wrong_ca = tamper(&|t| t.ca = "ab".repeat(32));
    let unreachable = tamper(&|t| t.addrs = vec![free_addr().to_string()]);
    // n2 was admitted but never starts: the keeper still adds it as a
    // learner, which is the last write before the refusals.
    eventually("n2 in Raft", || {
        let m = first.raft.metrics().borrow().membership_config.clone();
        m.membership().nodes().count() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let before = (
        first.raft.metrics().borrow().last_log_index,
        first.machine.read(|s| s.nodes.len()),
    );
    let try_join = |token: String| async move {
        join(&token, facts("intruder", free_addr(), "x"))
            .await
            .err()
            .unwrap()
    };
    assert!(matches!(try_join(expired).await, JoinError::Expired));
    assert!(matches!(try_join(forged).await, JoinError::Forged));
    assert!(matches!(try_join(revoked).await, JoinError::Revoked));
    assert!(matches!(try_join(used_up).await, JoinError::UsedUp));
    let e = try_join(wrong_ca).await;
    assert!(matches!(e, JoinError::WrongCa { .. }), "{e}");
    let e = try_join(unreachable).await;
    assert!(matches!(e, JoinError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("is the cluster up"), "{e}");
    let e = try_join("K10abc::def".into()).await;
    assert!(e.to_string().contains("not a zlayer token"), "{e}");

    let after = (
        first.raft.metrics().borrow().last_log_index,
        first.machine.read(|s| s.nodes.len()),
    );
    assert_eq!(before, after, "a refused join wrote to the log");
    // The good token still works after all that.
    join(&good, facts("n3", free_addr(), "c")).await.unwrap();
    first.stop().await;
}

/// The CA key is never in the log: the founder has it, voters fetch it,
/// a learner is refused it, and a new leader can still admit nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_voters_hold_the_ca_key_and_a_new_leader_admits() {
    use zlayer_state::ca_key::CA_KEY;
    use zlayer_state::transport::{tls, CallError, PeerClient};

    let dir = tempfile::tempdir().unwrap();
    let first = found(&dir).await;
    assert!(first.holds_ca_key());
    let logged = first.machine.read(|s| s.ca.clone().unwrap().key_pem);
    assert!(logged.is_empty(), "the CA key reached the replicated state");
    let token = first
        .create_token(Duration::from_secs(3600), Some(2), TokenKind::Manager)
        .await
        .unwrap();
    let mut members = vec![first];
    for name in ["n2", "n3"] {
        members.push(join_and_start(&token, name, "b", &dir).await);
    }
    eventually("three voters", || voters(&members[0]) == 3).await;
    for m in &members {
        eventually("every voter holds the key", || m.holds_ca_key()).await;
    }

    // A fourth node is a learner: asking for the key is refused.
    let token = members[0]
        .create_token(Duration::from_secs(3600), Some(2), TokenKind::Manager)
        .await
        .unwrap();
    let addr4 = free_addr();
    let n4 = join(&token, facts("n4", addr4, "d")).await.unwrap();
    let learner_client = PeerClient::new(
        tls::client_config(&tls::LiveIdentity::new(&n4.identity).unwrap()).unwrap(),
    );
    let m4 = start(n4.id, n4.identity, addr4, dir.path(), true, n4.seed).await;
    let leader_addr = members[0].leader().unwrap().1;
    eventually("n4 recorded", || {
        members[0].machine.read(|s| s.nodes.len()) == 4
    })
    .await;
    let asked = learner_client
        .call::<_, Option<String>>(&leader_addr, CA_KEY, &(), Duration::from_secs(5))
        .await;
    assert!(
        matches!(asked, Err(CallError::Status { status, .. }) if status == 403),
        "{asked:?}"
    );
    assert!(!m4.holds_ca_key());

    // The founder goes; whichever voter leads next admits a fifth node.
    members[0].stop().await;
    let addr5 = free_addr();
    let joined = join(&token, facts("n5", addr5, "e")).await;
    assert!(joined.is_ok(), "{:?}", joined.err().map(|e| e.to_string()));
    m4.stop().await;
    for m in &members[1..] {
        m.stop().await;
    }
}

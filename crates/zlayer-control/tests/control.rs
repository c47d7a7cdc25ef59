//! A real one-voter cluster on loopback: founding, the leader's scheduling
//! loop placing a committed spec on this node, restart on the same data
//! dir, and a second node joining with a token.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zlayer_control::{Control, ControlConfig, Liveness};
use zlayer_model::Resources;
use zlayer_model::{ClusterReplica, RolloutReport, RolloutState};
use zlayer_scheduler::Strategy;

const SPEC: &str = "version: v1\ndeployment: d\nservices:\n  web:\n    image: { name: demo }\n    scale: { mode: fixed, replicas: 3 }\n";

fn config(dir: &Path, name: &str) -> ControlConfig {
    ControlConfig {
        dir: dir.join(name),
        advertise: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        name: name.into(),
        capacity: Resources {
            cpu_milli: 2000,
            memory_bytes: 1 << 30,
            gpus: 0,
        },
        labels: BTreeMap::new(),
        liveness: Liveness::default(),
        timing: Default::default(),
        strategy: Strategy::Spread,
        renew_before: zlayer_control::DEFAULT_RENEW_BEFORE,
        probe_every: std::time::Duration::from_secs(30),
        network: Some(zlayer_model::ClusterNetwork {
            cidr: "10.240.0.0/16".into(),
            node_prefix: 24,
        }),
    }
}

/// Polls every 50 ms, at most 200 times: a guard against hanging, not a timing assertion.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_founds_places_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Control::start(config(dir.path(), "n1"))
        .await
        .expect("founds");
    let id = c.id();
    assert!(c
        .put_deployment("d", "d.yaml", SPEC, &BTreeMap::new())
        .await
        .expect("commits"));
    assert!(
        !c.put_deployment("d", "d.yaml", SPEC, &BTreeMap::new())
            .await
            .expect("commits"),
        "same spec: unchanged"
    );
    eventually("3 slots placed here", || {
        c.assigned_here().get("d/web").map(|s| s.len()) == Some(3)
    })
    .await;
    assert!(!c.fenced(), "a lone voter never fences");
    c.stop().await;
    drop(c);

    // In one process the old instance's Raft tasks let go of the sled lock a
    // moment after stop (a real restart is a new process); retry while it is held.
    let mut resumed = Control::start(config(dir.path(), "n1")).await;
    for _ in 0..100 {
        if resumed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        resumed = Control::start(config(dir.path(), "n1")).await;
    }
    let c = resumed.expect("resumes");
    assert_eq!(c.id(), id, "same member id after a restart");
    assert_eq!(c.assigned_here().get("d/web").map(|s| s.len()), Some(3));
    assert!(c.remove_deployment("d").await.expect("commits"));
    assert!(
        !c.remove_deployment("d").await.expect("commits"),
        "already gone"
    );
    eventually("slots released", || c.assigned_here().is_empty()).await;
    c.stop().await;
}

/// n1 founds a cluster in `dir` and makes a one-use token admitting `kind`.
async fn founder_and_token(dir: &Path, kind: zlayer_state::TokenKind) -> (Arc<Control>, String) {
    let n1 = Control::start(config(dir, "n1")).await.expect("founds");
    let token = n1
        .create_token(Duration::from_secs(60), Some(1), kind)
        .await
        .expect("token");
    (n1, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_joins_and_takes_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, token) = founder_and_token(dir.path(), zlayer_state::TokenKind::Manager).await;
    let cfg2 = config(dir.path(), "n2");
    if let Err(e) = Control::join(&cfg2, &token, None, None).await {
        panic!("join: {e}");
    }
    let again = Control::join(&cfg2, &token, None, None).await;
    assert!(again.is_err(), "a data dir joins once");
    let n2 = Control::start(cfg2).await.expect("starts");
    eventually("two nodes recorded", || n1.nodes().len() == 2).await;
    n1.put_deployment("d", "d.yaml", SPEC, &BTreeMap::new())
        .await
        .expect("commits");
    eventually("spread over both", || {
        let a = n1.assigned_here().get("d/web").map_or(0, |s| s.len());
        let b = n2.assigned_here().get("d/web").map_or(0, |s| s.len());
        a + b == 3 && a > 0 && b > 0
    })
    .await;
    let on_n1 = |c: &ClusterReplica| match c {
        ClusterReplica::Reported { node, .. } | ClusterReplica::Assigned { node, .. } => {
            node == "n1"
        }
        ClusterReplica::Pending { .. } => false,
    };
    assert_eq!(
        n2.elsewhere().iter().filter(|c| on_n1(c)).count(),
        n1.assigned_here()["d/web"].len()
    );
    // A rollout n2 reports reaches n1 with the next heartbeat.
    let stopped = RolloutReport {
        workload: "d/web".into(),
        revision: "r2".into(),
        state: RolloutState::Failed,
        message: "stopped: the new replica exited".into(),
        started_ms: 1,
    };
    n2.report_local(Vec::new(), vec![stopped.clone()]);
    eventually("n2's rollout seen on n1", || {
        n1.rollouts_elsewhere()
            .iter()
            .any(|r| r.node == "n2" && r.report == stopped)
    })
    .await;
    assert!(n2.rollouts_elsewhere().iter().all(|r| r.node != "n2"));
    n2.stop().await;
    eventually("n2 down, so its rollouts no longer count", || {
        n1.rollouts_elsewhere().is_empty()
    })
    .await;
    n1.stop().await;
}

/// n2's certificates as n1's state records them: (current, previous).
fn recorded_certs(n1: &Control, name: &str) -> (String, String) {
    n1.read(|s| {
        s.nodes
            .values()
            .find(|n| n.name == name)
            .map(|n| {
                (
                    n.cert_fingerprint.clone(),
                    n.previous_cert_fingerprint.clone(),
                )
            })
            .unwrap_or_default()
    })
}

/// Whether the leader n1 has heard `id` say it is alive since `since`.
fn heard_since(n1: &Control, id: u64, since: std::time::Instant) -> bool {
    n1.member.heard.get(id).is_some_and(|t| t > since)
}

/// A heartbeat for `id` sent to n1 with `identity`'s certificate: `Ok` when n1 accepts the caller.
async fn heartbeat_as(
    n1_addr: &str,
    identity: &zlayer_state::pki::NodeIdentity,
    id: u64,
) -> Result<zlayer_state::WriteReply, zlayer_state::transport::CallError> {
    use zlayer_state::transport::{tls, PeerClient};
    let client =
        PeerClient::new(tls::client_config(&tls::LiveIdentity::new(identity).unwrap()).unwrap());
    let cmd = zlayer_state::Command::Heartbeat {
        id,
        at_ms: zlayer_state::now_ms(),
        replica_reports: None,
        replica_changes: None,
        health: None,
        rollout_reports: None,
        volume_reports: None,
    };
    client
        .call(n1_addr, zlayer_state::WRITE, &cmd, Duration::from_secs(5))
        .await
}

/// A worker whose certificate is due renews it over mTLS from the leader:
/// the leader records the new fingerprint, the node saves and presents the
/// new certificate and keeps heartbeating with it; the certificate it renewed
/// from is still accepted until the next renewal retires it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_node_certificate_renews_over_mtls_and_the_one_before_retires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (n1, token) = founder_and_token(dir.path(), zlayer_state::TokenKind::Worker).await;
    // Longer than a certificate's life: due at once, and again at every check.
    let cfg2 = ControlConfig {
        renew_before: Duration::from_secs(400 * 86_400),
        ..config(dir.path(), "n2")
    };
    Control::join(&cfg2, &token, None, None)
        .await
        .expect("joins");
    let files = zlayer_control::ClusterFiles::new(&dir.path().join("n2"));
    let (_, joined) = files.load().expect("identity on disk");
    let first = zlayer_state::pki::fingerprint_pem(&joined.cert_pem).unwrap();
    let n2 = Control::start(cfg2).await.expect("starts");
    eventually("n2 recorded with its first certificate", || {
        recorded_certs(&n1, "n2").0 == first
    })
    .await;

    // The first check comes 3 s after start, a retry 10 s after a failure: a bound, not a timing.
    for _ in 0..600 {
        if recorded_certs(&n1, "n2").0 != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(recorded_certs(&n1, "n2").0, first, "n2 never renewed");
    let (second, previous) = recorded_certs(&n1, "n2");
    assert_eq!(
        previous, first,
        "the certificate it renewed from stays accepted"
    );
    // The leader records the new certificate before it answers, so the node
    // saves it a moment after the record changes.
    let saved_fingerprint = || {
        files
            .load()
            .ok()
            .and_then(|(_, id)| zlayer_state::pki::fingerprint_pem(&id.cert_pem).ok())
    };
    eventually("n2 saves the renewed certificate", || {
        saved_fingerprint().as_deref() == Some(second.as_str())
    })
    .await;
    let (_, saved) = files.load().expect("renewed identity on disk");
    assert_ne!(
        saved.key_pem, joined.key_pem,
        "a fresh key, not the old one re-signed"
    );
    let renewed_at = std::time::Instant::now();
    eventually("n2 heartbeats with its new certificate", || {
        heard_since(&n1, n2.id(), renewed_at)
    })
    .await;

    let n1_addr = n1.node.addr.clone();
    let n2_id = n2.id();
    assert!(
        heartbeat_as(&n1_addr, &joined, n2_id).await.is_ok(),
        "the previous certificate is still accepted"
    );
    // Renewing again (as the hourly check would) retires the first certificate for good.
    let again = n2
        .member
        .renew_certificate("n2", &saved)
        .await
        .expect("renews again");
    files.save_renewed(&again).unwrap();
    n2.member.present(&again).unwrap();
    eventually("the second renewal recorded", || {
        recorded_certs(&n1, "n2").1 == second
    })
    .await;
    match heartbeat_as(&n1_addr, &joined, n2_id).await {
        Err(zlayer_state::transport::CallError::Status { status, body, .. }) => {
            assert_eq!(status, 403);
            assert!(
                body.contains("no current node record holds this certificate"),
                "{body}"
            );
        }
        other => panic!("the retired certificate was not refused: {other:?}"),
    }
    let retired_at = std::time::Instant::now();
    eventually("n2 still heartbeats", || {
        heard_since(&n1, n2_id, retired_at)
    })
    .await;
    n2.stop().await;
    n1.stop().await;
}

/// Every node serves every deployment's routes and published ports, so a
/// second deployment may not take one the first has: its traffic would be
/// mixed into the first's replicas. TCP and UDP ports of one number differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_or_port_another_deployment_has_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Control::start(config(dir.path(), "n1"))
        .await
        .expect("founds");
    let spec = |dep: &str, endpoints: &str| {
        format!("version: v1\ndeployment: {dep}\nservices:\n  web:\n    image: {{ name: demo }}\n    endpoints:\n{endpoints}")
    };
    let none = BTreeMap::new();
    let first = spec(
        "a",
        "      - { name: dns, protocol: udp, port: 53, expose: public }\n      - { name: web, protocol: http, port: 80, host: a.test, expose: public }\n      - { name: raw, protocol: tcp, port: 9000, expose: public }\n",
    );
    c.put_deployment("a", "a.yaml", &first, &none)
        .await
        .expect("the first takes them");
    let cases = [
        (
            "      - { name: dns2, protocol: udp, port: 5353, host_port: 53, expose: public }\n",
            "takes host port 53/udp, which deployment `a` already has (web/dns)",
        ),
        (
            "      - { name: raw2, protocol: tcp, port: 9000, expose: public }\n",
            "takes host port 9000, which deployment `a` already has (web/raw)",
        ),
        (
            "      - { name: web2, protocol: http, port: 8080, host: A.test, expose: public }\n",
            "takes route http://a.test/, which deployment `a` already has (web/web)",
        ),
    ];
    for (endpoints, want) in cases {
        let err = c
            .put_deployment("b", "b.yaml", &spec("b", endpoints), &none)
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.contains(want), "{err}");
    }
    // The same numbers on the other transport, and a route on another host, are free.
    let other = spec(
        "b",
        "      - { name: dns, protocol: tcp, port: 53, expose: public }\n      - { name: raw, protocol: udp, port: 9000, expose: public }\n      - { name: web, protocol: http, port: 80, host: b.test, expose: public }\n",
    );
    c.put_deployment("b", "b.yaml", &other, &none)
        .await
        .expect("no clash");
    c.stop().await;
}

/// `rollout undo` commits an earlier revision's text and env again as a new
/// revision; one the cluster no longer keeps, or the current one, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_applies_an_earlier_revision_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Control::start(config(dir.path(), "n1"))
        .await
        .expect("founds");
    let v = |image: &str| SPEC.replace("name: demo", &format!("name: {image}"));
    let env = |m: &str| BTreeMap::from([("MSG".to_string(), m.to_string())]);
    c.put_deployment("d", "d.yaml", &v("demo:1"), &env("one"))
        .await
        .unwrap();
    c.put_deployment("d", "d.yaml", &v("demo:2"), &env("two"))
        .await
        .unwrap();
    assert_eq!(c.undo("d", None).await.expect("undone"), 3);
    let now = c.history("d").unwrap();
    let last = now.last().unwrap();
    assert_eq!(
        (last.revision, last.text.as_str()),
        (3, v("demo:1").as_str())
    );
    assert_eq!(last.env, env("one"));
    assert_eq!(c.undo("d", Some(2)).await.expect("to 2"), 4);
    assert_eq!(c.history("d").unwrap().last().unwrap().env, env("two"));
    let err = c.undo("d", Some(99)).await.unwrap_err().to_string();
    assert!(err.contains("keeps no revision 99"), "{err}");
    let err = c.undo("d", Some(4)).await.unwrap_err().to_string();
    assert!(err.contains("is the current one"), "{err}");
    assert!(c.undo("nope", None).await.is_err());
    c.stop().await;
}

//! A real one-voter cluster on loopback: founding, the leader's scheduling
//! loop placing a committed spec on this node, restart on the same data
//! dir, and a second node joining with a token.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_joins_and_takes_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = Control::start(config(dir.path(), "n1"))
        .await
        .expect("founds");
    let token = n1
        .create_token(Duration::from_secs(60), Some(1), false)
        .await
        .expect("token");
    let cfg2 = config(dir.path(), "n2");
    if let Err(e) = Control::join(&cfg2, &token, None).await {
        panic!("join: {e}");
    }
    let again = Control::join(&cfg2, &token, None).await;
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

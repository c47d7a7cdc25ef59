//! What the state machine and the log acknowledge is there after the store
//! is closed and opened again, as after `kill -9`.

mod support;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use support::deploy;
use zlayer_model::Assignment;
use zlayer_state::{Command, Response, TypeConfig};

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(cmd),
    }
}

#[tokio::test]
async fn applied_records_and_the_vote_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = zlayer_state::open(dir.path()).unwrap();
        log.save_vote(&Vote::new(3, 7)).await.unwrap();
        let place = Command::Placements {
            place: vec![Assignment {
                workload: "web/api".into(),
                replica: 0,
                node: "n1".into(),
                generation: 5,
                attempt: 0,
            }],
            stop: vec![],
        };
        let out = sm
            .apply(vec![entry(1, deploy("web")), entry(2, place)])
            .await
            .unwrap();
        assert_eq!(out[0], Response::Revision(1));
        assert_eq!(
            out[1],
            Response::Placed {
                placed: 1,
                stopped: 0,
                stale: 0
            }
        );
    }
    let (mut log, mut sm) = zlayer_state::open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(2));
    sm.read(|s| {
        assert_eq!(s.deployments["web"].current.revision, 1);
        assert_eq!(s.assignments.len(), 1);
        assert_eq!(s.next_generation, 6);
    });
    assert!(log.try_get_log_entries(0..10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_snapshot_installs_over_a_different_state() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (_, mut leader) = zlayer_state::open(a.path()).unwrap();
    leader
        .apply(vec![entry(1, deploy("web")), entry(2, deploy("db"))])
        .await
        .unwrap();
    let snap = {
        use openraft::RaftSnapshotBuilder;
        leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap()
    };

    {
        let (_, mut follower) = zlayer_state::open(b.path()).unwrap();
        follower
            .apply(vec![entry(1, deploy("stale"))])
            .await
            .unwrap();
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
    }
    let (_, mut follower) = zlayer_state::open(b.path()).unwrap();
    let names: Vec<String> = follower.read(|s| s.deployments.keys().cloned().collect());
    assert_eq!(names, ["db", "web"]);
    assert_eq!(
        follower.applied_state().await.unwrap().0.map(|l| l.index),
        Some(2)
    );
    assert!(follower.get_current_snapshot().await.unwrap().is_some());
}

fn report(replica: u32, state: zlayer_model::ReplicaState) -> zlayer_model::ReplicaReport {
    zlayer_model::ReplicaReport::new(
        "jobs/task",
        replica,
        state,
        zlayer_model::Health::None,
        "r1",
    )
}

fn heartbeat(id: u64, changes: zlayer_model::ReportChanges) -> Command {
    Command::Heartbeat {
        id,
        at_ms: 1,
        replica_reports: None,
        replica_changes: Some(changes),
        health: None,
        rollout_reports: None,
        volume_reports: None,
    }
}

fn node(id: u64) -> Command {
    Command::AddNode(zlayer_state::NodeRecord {
        id,
        name: format!("n{id}"),
        ..Default::default()
    })
}

/// The raw records of the state tree, by key.
fn raw_state(dir: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = sled::open(dir).unwrap();
    let tree = db.open_tree("state").unwrap();
    tree.iter()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

#[tokio::test]
async fn replica_reports_are_stored_one_key_each_and_survive_reopening() {
    use zlayer_model::{ReplicaState, ReportChanges};
    let dir = tempfile::tempdir().unwrap();
    let done: Vec<_> = (0..200).map(|i| report(i, ReplicaState::Exited)).collect();
    {
        let (_, mut sm) = zlayer_state::open(dir.path()).unwrap();
        let first = ReportChanges::between(&[], &done);
        let mut moved = done.clone();
        moved[7].state = ReplicaState::Running;
        let second = ReportChanges::between(&done, &moved[..199]);
        sm.apply(vec![
            entry(1, node(4)),
            entry(2, heartbeat(4, first)),
            entry(3, heartbeat(4, second)),
        ])
        .await
        .unwrap();
    }
    let records = raw_state(dir.path());
    let node_record = records
        .iter()
        .find(|(k, _)| k.starts_with(b"node/"))
        .unwrap();
    // A heartbeat that moves one report among hundreds must not rewrite a
    // record that holds them all.
    assert!(
        node_record.1.len() < 2_000,
        "the node's record holds its reports: {} bytes",
        node_record.1.len()
    );
    let report_keys = records
        .iter()
        .filter(|(k, _)| k.starts_with(b"rep/"))
        .count();
    assert_eq!(report_keys, 199, "one key per report; the gone one removed");

    let (_, sm) = zlayer_state::open(dir.path()).unwrap();
    let mut states = sm.read(|s| {
        s.nodes[&4]
            .replica_reports
            .iter()
            .map(|r| (r.replica, r.state))
            .collect::<Vec<_>>()
    });
    states.sort_by_key(|s| s.0);
    assert_eq!(states.len(), 199);
    assert_eq!(states[7], (7, ReplicaState::Running));
    assert_eq!(states[0], (0, ReplicaState::Exited));
    assert!(states.iter().all(|s| s.0 != 199));
}

#[tokio::test]
async fn a_store_that_kept_reports_in_the_node_record_moves_them_out_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("state").unwrap();
        let legacy = zlayer_state::NodeRecord {
            id: 4,
            name: "n4".into(),
            replica_reports: vec![
                report(0, zlayer_model::ReplicaState::Exited),
                report(1, zlayer_model::ReplicaState::Running),
            ],
            ..Default::default()
        };
        let key = [&b"node/"[..], &4u64.to_be_bytes()].concat();
        tree.insert(key, serde_json::to_vec(&legacy).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    for _ in 0..2 {
        let (_, sm) = zlayer_state::open(dir.path()).unwrap();
        assert_eq!(sm.read(|s| s.nodes[&4].replica_reports.len()), 2);
    }
    let records = raw_state(dir.path());
    assert_eq!(
        records
            .iter()
            .filter(|(k, _)| k.starts_with(b"rep/"))
            .count(),
        2
    );
    let node: zlayer_state::NodeRecord = serde_json::from_slice(
        &records
            .iter()
            .find(|(k, _)| k.starts_with(b"node/"))
            .unwrap()
            .1,
    )
    .unwrap();
    assert!(node.replica_reports.is_empty());
}

#[tokio::test]
async fn the_last_snapshot_is_one_file_that_each_snapshot_replaces() {
    use openraft::RaftSnapshotBuilder;
    let dir = tempfile::tempdir().unwrap();
    {
        let (_, mut sm) = zlayer_state::open(dir.path()).unwrap();
        for i in 1..=5 {
            sm.apply(vec![entry(i, deploy(&format!("d{i}")))])
                .await
                .unwrap();
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
        }
    }
    assert!(
        raw_state(dir.path())
            .iter()
            .all(|(k, _)| k != b"m/snapshot"),
        "sled keeps no snapshot"
    );
    let (_, mut sm) = zlayer_state::open(dir.path()).unwrap();
    let snap = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(5));
}

#[tokio::test]
async fn a_store_that_kept_its_snapshot_in_sled_moves_it_to_the_file() {
    use openraft::RaftSnapshotBuilder;
    let dir = tempfile::tempdir().unwrap();
    let bytes = {
        let (_, mut sm) = zlayer_state::open(dir.path()).unwrap();
        sm.apply(vec![entry(1, deploy("web"))]).await.unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        snap.snapshot.into_inner()
    };
    // As stores before the file kept it.
    std::fs::remove_file(dir.path().join("raft-snapshot.json")).unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("state").unwrap();
        tree.insert(b"m/snapshot", bytes.clone()).unwrap();
        db.flush().unwrap();
    }
    let (_, mut sm) = zlayer_state::open(dir.path()).unwrap();
    let snap = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snap.snapshot.into_inner(), bytes);
    drop(sm);
    assert!(raw_state(dir.path())
        .iter()
        .all(|(k, _)| k != b"m/snapshot"));
}

#[tokio::test]
async fn a_damaged_snapshot_file_is_set_aside_and_taken_again_from_the_state() {
    use openraft::RaftSnapshotBuilder;
    let dir = tempfile::tempdir().unwrap();
    {
        let (_, mut sm) = zlayer_state::open(dir.path()).unwrap();
        sm.apply(vec![entry(1, deploy("web"))]).await.unwrap();
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        sm.apply(vec![entry(2, deploy("api"))]).await.unwrap();
    }
    let file = dir.path().join("raft-snapshot.json");
    let damaged = b"{\"meta\": {\"last_log_id\": tru".to_vec();
    std::fs::write(&file, &damaged).unwrap();

    let (_, mut sm) = zlayer_state::open(dir.path()).unwrap();
    let snap = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(
        snap.meta.last_log_id.map(|l| l.index),
        Some(2),
        "taken from the applied state"
    );
    let aside = dir.path().join("raft-snapshot.json.damaged");
    assert_eq!(std::fs::read(aside).unwrap(), damaged, "kept for a look");
}

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

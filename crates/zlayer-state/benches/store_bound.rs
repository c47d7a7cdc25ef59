//! The Raft store's size on disk under a long run of writes: one member
//! (real sled store, every write flushed) commits heartbeats whose replica
//! report changes every time, so each one rewrites the node's record and
//! appends to the log. Snapshots every 1,000 entries and the purge behind
//! them should hold the store to a plateau; it prints the size every 2,000
//! writes. Run with `cargo bench -p zlayer-state --bench store_bound`
//! (`WRITES=N` for a longer run).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};

use zlayer_model::{Health, ReplicaReport, ReplicaState};
use zlayer_state::{pki, Command, Member, MemberConfig, NodeRecord, Timing};

fn size_on_disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => size_on_disk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Ten replicas, one of which restarted `n` times: a report that changes.
fn reports(n: u32) -> Vec<ReplicaReport> {
    (1..=10)
        .map(|i| ReplicaReport {
            restarts: if i == 1 { n } else { 0 },
            container_id: format!("web-{i}-0123456789abcdef"),
            draining: false,
            message: "running since the last apply".into(),
            ..ReplicaReport::new(
                "d/web",
                i,
                ReplicaState::Running,
                Health::Healthy,
                "0f1e2d3c",
            )
        })
        .collect()
}

fn main() {
    let writes: u32 = std::env::var("WRITES")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::create_ca("bound").unwrap();
        let listen = support::free_addr();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let store = dir.path().join("m1");
        let member = Member::start(MemberConfig {
            id: 1,
            dir: store.clone(),
            listen,
            advertise: listen.to_string(),
            identity: pki::bootstrap_identity(&ca, "n1", &[local]).unwrap(),
            timing: Timing::default(),
            keep_membership: false,
            ca_key_file: None,
            seed: Vec::new(),
        })
        .await
        .unwrap();
        member.bootstrap().await.unwrap();
        let node = NodeRecord {
            id: 1,
            name: "n1".into(),
            ..NodeRecord::default()
        };
        member.write(Command::AddNode(node)).await.unwrap();
        println!(
            "writes  store size  (snapshot every {} entries)",
            Timing::default().snapshot_every
        );
        for n in 1..=writes {
            let beat = Command::Heartbeat {
                id: 1,
                at_ms: u64::from(n),
                replica_reports: Some(reports(n)),
                replica_changes: None,
                health: None,
                rollout_reports: None,
                volume_reports: None,
            };
            member.write(beat).await.unwrap();
            if n % 2_000 == 0 {
                println!("{n:6}  {:6} KiB", size_on_disk(&store) / 1024);
            }
        }
        member.stop().await;
    });
}

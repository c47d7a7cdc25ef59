//! Raft figures on three in-process members over real mTLS on loopback:
//! placements committed per second (batched, as the leader's scheduler
//! commits them) and the time from losing the leader until a write succeeds
//! again. Run with `scripts/bench-raft`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{deploy, three_members};
use zlayer_state::{pki, Command};

const PLACEMENTS: u32 = 200_000;
const BATCH: u32 = 2_000;
const IN_FLIGHT: usize = 4;
const LEADER_LOSSES: usize = 5;

async fn cluster(dir: &std::path::Path) -> Vec<zlayer_state::Member> {
    three_members(&pki::create_ca("bench").unwrap(), dir).await
}

fn batch(start: u32) -> Command {
    support::placements("bench", start, BATCH, 1)
}

async fn throughput() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let ms = cluster(dir.path()).await;
    ms[0].write(deploy("bench")).await.unwrap();
    let started = Instant::now();
    let mut next = 0;
    while next < PLACEMENTS {
        let mut writes = Vec::new();
        for _ in 0..IN_FLIGHT {
            if next < PLACEMENTS {
                writes.push(ms[0].write(batch(next)));
                next += BATCH;
            }
        }
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let committed = ms[2].machine.read(|s| s.assignments.len());
    for m in &ms {
        m.stop().await;
    }
    assert!(committed as u32 <= PLACEMENTS);
    f64::from(PLACEMENTS) / secs
}

async fn leader_loss() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let ms = cluster(dir.path()).await;
    ms[0].write(deploy("bench")).await.unwrap();
    let leader = ms[0].leader().unwrap().0;
    let survivor = ms.iter().find(|m| m.id != leader).unwrap();
    ms.iter().find(|m| m.id == leader).unwrap().stop().await;
    let lost = Instant::now();
    survivor.write(batch(0)).await.unwrap();
    let took = lost.elapsed();
    for m in &ms {
        m.stop().await;
    }
    took
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rate = throughput().await;
    println!("raft: {PLACEMENTS} placements in batches of {BATCH}, {IN_FLIGHT} in flight: {rate:.0} placements/s committed on 3 members (goal >= 5000/s)");
    let mut losses = Vec::new();
    for _ in 0..LEADER_LOSSES {
        losses.push(leader_loss().await);
    }
    losses.sort();
    let ms: Vec<u128> = losses.iter().map(|d| d.as_millis()).collect();
    println!(
        "leader loss until a write commits again: median {} ms, max {} ms over {LEADER_LOSSES} runs {ms:?} (goal <= 2000 ms)",
        ms[LEADER_LOSSES / 2],
        ms[LEADER_LOSSES - 1]
    );
}

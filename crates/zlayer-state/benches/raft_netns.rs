//! Placements committed per second through a running cluster of `zlayer`
//! processes (scripts/netns-cluster, driven by scripts/bench-cluster): this
//! client presents a node's own certificate and sends batched `Placements`
//! to the leader's `/cluster/write` over mTLS, as the leader's scheduler
//! would commit them. Each is replicated to the other processes over the
//! namespaces' veth links, flushed and applied there.
//!
//! The placements name a deployment whose text is not a spec, so no agent
//! starts anything for them; the leader's scheduler, finding them wanted by
//! no spec, commits stops for them meanwhile, which only adds to the work.
//!
//! Environment: `ZLC_NODE_DIR` (a node's `<data>/cluster`), `ZLC_MEMBERS`
//! (comma-separated `ip:port`, the leader is found among them).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use zlayer_state::pki::NodeIdentity;
use zlayer_state::transport::{tls, PeerClient};
use zlayer_state::{Command, Response, WriteReply, WRITE};

const PLACEMENTS: u32 = 200_000;
const BATCH: u32 = 2_000;
const IN_FLIGHT: usize = 4;

fn batch(start: u32) -> Command {
    support::placements("rbench", start, BATCH, 1_000_000_000)
}

async fn write(client: &PeerClient, leader: &str, cmd: &Command) -> Response {
    match client
        .call::<_, WriteReply>(leader, WRITE, cmd, Duration::from_secs(60))
        .await
    {
        Ok(WriteReply::Done(r)) => r,
        other => panic!("write to {leader}: {other:?}"),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = std::path::PathBuf::from(std::env::var("ZLC_NODE_DIR").expect("ZLC_NODE_DIR"));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("node identity file");
    let identity = NodeIdentity {
        ca_pem: read("ca.pem"),
        cert_pem: read("node.pem"),
        key_pem: read("node.key"),
    };
    let client = PeerClient::new(
        tls::client_config(&tls::LiveIdentity::new(&identity).unwrap()).expect("tls"),
    );
    let members = std::env::var("ZLC_MEMBERS").expect("ZLC_MEMBERS");
    let deploy = Command::PutDeployment {
        name: "rbench".into(),
        file: "rbench".into(),
        text: "not a spec: raft benchmark".into(),
        env: Default::default(),
        at_ms: 0,
        counts: Default::default(),
        if_revision: None,
    };
    let mut leader = None;
    for m in members.split(',') {
        if let Ok(WriteReply::Done(_)) = client
            .call::<_, WriteReply>(m, WRITE, &deploy, Duration::from_secs(10))
            .await
        {
            leader = Some(m.to_string());
            break;
        }
    }
    let leader = leader.expect("no member accepted a write");
    let started = Instant::now();
    let (mut next, mut stale) = (0, 0);
    while next < PLACEMENTS {
        let mut writes = Vec::new();
        for _ in 0..IN_FLIGHT {
            if next < PLACEMENTS {
                let cmd = batch(next);
                let (client, leader) = (&client, leader.as_str());
                writes.push(async move { write(client, leader, &cmd).await });
                next += BATCH;
            }
        }
        for r in futures::future::join_all(writes).await {
            if let Response::Placed { stale: s, .. } = r {
                stale += s;
            }
        }
    }
    let rate = f64::from(PLACEMENTS) / started.elapsed().as_secs_f64();
    let _ = write(
        &client,
        &leader,
        &Command::RemoveDeployment {
            name: "rbench".into(),
        },
    )
    .await;
    println!(
        "raft (netns, 3 zlayer processes): {PLACEMENTS} placements in batches of {BATCH}, {IN_FLIGHT} in flight, via leader {leader}: {rate:.0} placements/s committed ({stale} stale) (goal >= 5000/s)"
    );
}

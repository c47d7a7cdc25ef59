//! Snapshots and log purging keep the Raft log bounded: after many writes,
//! a member holds only the entries since its last snapshot plus the few it
//! keeps behind it for followers.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use support::{eventually, free_addr};
use zlayer_state::{pki, Command, Member, MemberConfig, Timing};

#[tokio::test]
async fn the_log_is_purged_behind_each_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::create_ca("bounded").unwrap();
    let listen = free_addr();
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let every = 20;
    let member = Member::start(MemberConfig {
        id: 1,
        dir: dir.path().join("m1"),
        listen,
        advertise: listen.to_string(),
        identity: pki::bootstrap_identity(&ca, "n1", &[local]).unwrap(),
        timing: Timing {
            snapshot_every: every,
            ..Timing::default()
        },
        keep_membership: false,
        ca_key_file: None,
        seed: Vec::new(),
    })
    .await
    .unwrap();
    member.bootstrap().await.unwrap();
    let writes = 300;
    for _ in 0..writes {
        member.write(Command::SetPending(Vec::new())).await.unwrap();
    }
    eventually("a snapshot and a purge behind it", || {
        let m = member.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let purged = m.purged.map_or(0, |l| l.index);
        m.snapshot.is_some() && last >= writes && last - purged <= every + every / 2 + 1
    })
    .await;
    member.stop().await;
}

//! Shared by the cluster tests and the Raft bench: members on loopback with
//! real certificates, each with its own sled store under one temp dir.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use openraft::BasicNode;
use zlayer_state::authz::SeedMember;
use zlayer_state::pki::{self, NodeIdentity};
use zlayer_state::{CaRecord, Command, Member, MemberConfig, Timing};

pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind((LOCAL, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

pub async fn start(
    id: u64,
    identity: NodeIdentity,
    listen: SocketAddr,
    dir: &Path,
    keep_membership: bool,
    seed: Vec<SeedMember>,
) -> Member {
    let config = || MemberConfig {
        id,
        dir: dir.join(format!("m{id}")),
        listen,
        advertise: listen.to_string(),
        identity: identity.clone(),
        timing: Timing::default(),
        keep_membership,
        ca_key_file: Some(dir.join(format!("m{id}.ca-key"))),
        seed: seed.clone(),
    };
    // Restarting in one process: the stopped instance's last tasks (open
    // connections among them) let go of the sled lock a moment later; a
    // real restart is a new process. Retry while the lock is held.
    for _ in 0..100 {
        match Member::start(config()).await {
            Ok(m) => return m,
            Err(zlayer_state::MemberError::Store(e)) if e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("member {id}: {e}"),
        }
    }
    Member::start(config()).await.unwrap()
}

/// Member `id`'s certificate under `ca`: the same one each time it is asked
/// for, as a restarted node keeps its identity.
pub fn identity(ca: &CaRecord, id: u64) -> NodeIdentity {
    static MADE: Mutex<BTreeMap<(String, u64), NodeIdentity>> = Mutex::new(BTreeMap::new());
    MADE.lock()
        .unwrap()
        .entry((ca.fingerprint.clone(), id))
        .or_insert_with(|| pki::bootstrap_identity(ca, &format!("n{id}"), &[LOCAL]).unwrap())
        .clone()
}

/// Members 1 to 3 of `ca`'s cluster, as a join reply would name them.
pub fn seed(ca: &CaRecord) -> Vec<SeedMember> {
    (1..=3)
        .map(|id| SeedMember {
            id,
            cert_fingerprint: pki::fingerprint_pem(&identity(ca, id).cert_pem).unwrap(),
        })
        .collect()
}

/// Member `id` at `listen`, with a certificate the CA signs directly.
pub async fn member_at(ca: &CaRecord, id: u64, dir: &Path, listen: SocketAddr) -> Member {
    start(id, identity(ca, id), listen, dir, false, seed(ca)).await
}

/// Three voters, member 1 leading.
pub async fn three_members(ca: &CaRecord, dir: &Path) -> Vec<Member> {
    let mut ms = Vec::new();
    for id in 1..=3 {
        ms.push(member_at(ca, id, dir, free_addr()).await);
    }
    ms[0].bootstrap().await.unwrap();
    eventually("member 1 leads", || ms[0].leader().map(|l| l.0) == Some(1)).await;
    for m in &ms[1..] {
        let node = BasicNode::new(&m.advertise);
        ms[0].raft.add_learner(m.id, node, true).await.unwrap();
    }
    let voters = BTreeSet::from([1, 2, 3]);
    ms[0].raft.change_membership(voters, false).await.unwrap();
    // Node records, as joins make them: a member's forwarded writes are
    // authorized by the record that holds its certificate.
    for (m, s) in ms.iter().zip(seed(ca)) {
        let record = zlayer_state::NodeRecord {
            id: m.id,
            name: format!("n{}", m.id),
            addr: m.advertise.clone(),
            cert_fingerprint: s.cert_fingerprint,
            ..zlayer_state::NodeRecord::default()
        };
        ms[0].write(Command::AddNode(record)).await.unwrap();
    }
    ms
}

pub fn deploy(name: &str) -> Command {
    Command::PutDeployment {
        name: name.into(),
        file: format!("{name}.yaml"),
        text: format!("deployment: {name}"),
        env: BTreeMap::new(),
        at_ms: 0,
        counts: BTreeMap::new(),
        if_revision: None,
    }
}

pub fn names(m: &Member) -> BTreeSet<String> {
    m.machine.read(|s| s.deployments.keys().cloned().collect())
}

/// Polls `f` every 50 ms, at most 400 times: a guard against hanging, not
/// a measurement.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// `count` placements of deployment `dep`'s 50 services over three nodes,
/// replicas `start..start+count`, as one batched scheduler decision.
pub fn placements(dep: &str, start: u32, count: u32, first_generation: u64) -> Command {
    let place = (start..start + count)
        .map(|i| zlayer_model::Assignment {
            workload: format!("{dep}/svc{}", i % 50),
            replica: i,
            node: format!("n{}", i % 3 + 1),
            generation: first_generation + u64::from(i),
            attempt: 0,
        })
        .collect();
    Command::Placements {
        place,
        stop: vec![],
    }
}

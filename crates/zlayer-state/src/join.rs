//! Joining: a new node presents a token and a CSR to a member; the leader
//! checks the token, signs a certificate for the node and records it, and
//! the membership keeper adds it to Raft. A refused join writes nothing.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zlayer_model::{NodeHealth, NodeNetwork, NodeState, Resources};

use crate::authz::SeedMember;
use crate::pki::{self, NodeIdentity};
use crate::token::{sha256_hex, JoinToken};
use crate::transport::{tls, CallError, PeerClient};
use crate::{Command, NodeRecord, Raft, Response, StateMachine, TokenUse};

pub const JOIN: &str = "/cluster/join";

/// What a joining node says about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeFacts {
    pub name: String,
    /// `ip:port` the node will serve its mTLS endpoint on.
    pub addr: String,
    pub capacity: Resources,
    pub labels: BTreeMap<String, String>,
    /// The node's WireGuard public key, made before it joins: a node found
    /// to be behind NAT is recorded with it, so the mesh (the only way in
    /// to that node) is up before the cluster's state reaches it.
    #[serde(default)]
    pub wg_public_key: Option<String>,
}

/// What a node admitted from behind NAT needs before the cluster's state
/// reaches it, since that state reaches it only through the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatSeed {
    /// Its control address: its subnet's gateway, the node's own port.
    pub addr: String,
    /// The container subnet the leader picked for it.
    pub subnet: String,
    /// The nodes it can open a path to at admission.
    pub peers: Vec<SeedPeer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedPeer {
    pub name: String,
    pub public_key: String,
    pub endpoint: String,
    pub subnet: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub token_id: String,
    pub secret: String,
    pub csr_pem: String,
    pub node: NodeFacts,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum JoinReply {
    Admitted {
        id: u64,
        cert_pem: String,
        ca_pem: String,
        /// The managers at admission: whom the new node lets send it Raft
        /// RPCs before its own state knows anyone.
        #[serde(default)]
        managers: Vec<SeedMember>,
        /// Set when the node joined from behind NAT.
        #[serde(default)]
        nat: Option<NatSeed>,
    },
    Refused(TokenUse),
    Invalid(String),
    NotLeader {
        leader: Option<String>,
    },
}

/// A node that was admitted: its Raft id and its identity.
pub struct Joined {
    pub id: u64,
    pub identity: NodeIdentity,
    pub seed: Vec<SeedMember>,
    pub nat: Option<NatSeed>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    BadToken(#[from] crate::token::BadToken),
    #[error(
        "the join token has expired; make a new one with `zlayer token create --ttl …` on a member"
    )]
    Expired,
    #[error(
        "the cluster does not know this token: it is forged, mistyped or from another cluster"
    )]
    Forged,
    #[error("the join token was revoked; `zlayer token ls` on a member lists the valid ones")]
    Revoked,
    #[error("the join token has been used as many times as it allows (`--uses`); make a new one")]
    UsedUp,
    #[error("{addr} presented a CA with fingerprint {offered}, but the token pins {expected}: this is another cluster, or something is in between; nothing was sent")]
    WrongCa {
        addr: String,
        expected: String,
        offered: String,
    },
    #[error("no member in the token answered (tried {}): is the cluster up and reachable from this node?", .tried.join(", "))]
    Unreachable { tried: Vec<String> },
    #[error("the cluster refused the join: {0}")]
    Invalid(String),
    #[error("cannot make this node's key: {0}")]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

fn refusal(u: TokenUse) -> JoinError {
    match u {
        TokenUse::Expired => JoinError::Expired,
        TokenUse::Revoked => JoinError::Revoked,
        TokenUse::UsedUp => JoinError::UsedUp,
        TokenUse::Unknown | TokenUse::WrongSecret => JoinError::Forged,
        TokenUse::Accepted => JoinError::Invalid("accepted and refused at once".into()),
    }
}

/// The joining side: tries the members the token names, following a
/// redirect to the leader at most a few times.
pub async fn join(token: &str, node: NodeFacts) -> Result<Joined, JoinError> {
    // Enough for an election to finish while members answer "not leader".
    const MAX_TRIES: usize = 40;
    let token = JoinToken::decode(token)?;
    let (key_pem, csr_pem) = pki::node_key_and_csr(&node.name)?;
    let req = JoinRequest {
        token_id: token.id.clone(),
        secret: token.secret.clone(),
        csr_pem,
        node,
    };
    let mut queue: VecDeque<String> = token.addrs.iter().cloned().collect();
    let mut tried = Vec::new();
    let mut electing = false;
    loop {
        let Some(addr) = queue.pop_front() else {
            // Someone answered but no leader was found: an election is under
            // way; go round the members again.
            if !electing {
                break;
            }
            electing = false;
            tokio::time::sleep(Duration::from_millis(300)).await;
            queue.extend(token.addrs.iter().cloned());
            continue;
        };
        if tried.len() >= MAX_TRIES {
            break;
        }
        tried.push(addr.clone());
        let (cfg, pinned) = tls::pinned_client_config(&token.ca)?;
        let reply = PeerClient::new(cfg)
            .call::<_, JoinReply>(&addr, JOIN, &req, Duration::from_secs(10))
            .await;
        if let Some(offered) = pinned.mismatch() {
            return Err(JoinError::WrongCa {
                addr,
                expected: token.ca,
                offered: offered.join(" or "),
            });
        }
        match reply {
            Ok(JoinReply::Admitted {
                id,
                cert_pem,
                ca_pem,
                managers,
                nat,
            }) => {
                let fp = pki::fingerprint_pem(&ca_pem)?;
                if fp != token.ca {
                    return Err(JoinError::WrongCa {
                        addr,
                        expected: token.ca,
                        offered: fp,
                    });
                }
                return Ok(Joined {
                    id,
                    seed: managers,
                    nat,
                    identity: NodeIdentity {
                        ca_pem,
                        cert_pem,
                        key_pem,
                    },
                });
            }
            Ok(JoinReply::Refused(u)) => return Err(refusal(u)),
            Ok(JoinReply::Invalid(m)) => return Err(JoinError::Invalid(m)),
            Ok(JoinReply::NotLeader { leader }) => {
                // Ask the leader it names (or, with none known yet, the same
                // member) shortly; that may be a leader that just went away.
                electing = true;
                let next = leader.unwrap_or_else(|| addr.clone());
                tokio::time::sleep(Duration::from_millis(200)).await;
                if !queue.contains(&next) {
                    queue.push_front(next);
                }
            }
            Err(CallError::Status { body, .. }) => return Err(JoinError::Invalid(body)),
            Err(e) => tracing::debug!("join via {addr}: {e}"),
        }
    }
    let mut named: Vec<String> = Vec::new();
    for t in tried {
        if !named.contains(&t) {
            named.push(t);
        }
    }
    Err(JoinError::Unreachable { tried: named })
}

/// The admitting side, on the leader. Checks the token against committed
/// state first, so a refused join leaves the log untouched.
/// `from` is the address the request came from: a node whose request
/// does not come from the address it says it serves on is behind NAT.
pub async fn admit(
    raft: &Raft,
    machine: &StateMachine,
    ca_key: Option<String>,
    req: JoinRequest,
    from: IpAddr,
    now_ms: u64,
) -> JoinReply {
    if raft.ensure_linearizable().await.is_err() {
        let leader = raft.current_leader().await.and_then(|id| {
            let m = raft.metrics().borrow().membership_config.clone();
            m.membership().get_node(&id).map(|n| n.addr.clone())
        });
        return JoinReply::NotLeader { leader };
    }
    let secret_sha256 = sha256_hex(&req.secret);
    let (verdict, ca) = machine.read(|s| {
        let verdict = s
            .tokens
            .get(&req.token_id)
            .filter(|t| t.kind.admits().is_some())
            .map_or(TokenUse::Unknown, |t| t.check(&secret_sha256, now_ms));
        (verdict, s.ca.clone())
    });
    if verdict != TokenUse::Accepted {
        return JoinReply::Refused(verdict);
    }
    let Some(ca) = ca else {
        return JoinReply::Invalid("this cluster has no CA yet".into());
    };
    // One admission from behind NAT at a time, so the subnet picked ahead
    // is still free when its command applies.
    let _one_at_a_time = NAT_ADMISSION.lock().await;
    let nat = match behind_nat(machine, &req.node, from) {
        Ok(n) => n,
        Err(why) => return JoinReply::Invalid(why),
    };
    let cert_pem = match pki::sign_member(
        ca.clone(),
        ca_key,
        &req.csr_pem,
        &req.node.name,
        &req.node.addr,
        nat.as_ref()
            .and_then(|n| n.addr.parse::<SocketAddr>().ok())
            .map(|a| a.ip()),
    ) {
        Ok(c) => c,
        Err(why) => return JoinReply::Invalid(why),
    };
    let cert_fingerprint = pki::fingerprint_pem(&cert_pem).unwrap_or_default();
    let id = member_id(&cert_fingerprint);
    let mut network = NodeNetwork {
        wg_public_key: req.node.wg_public_key.clone(),
        ..NodeNetwork::default()
    };
    if let Some(n) = &nat {
        network.subnet = Some(n.subnet.clone());
        network.behind_nat = true;
    }
    let record = NodeRecord {
        id,
        name: req.node.name,
        addr: nat.as_ref().map_or(req.node.addr, |n| n.addr.clone()),
        network,
        capacity: req.node.capacity,
        labels: req.node.labels,
        state: NodeState::Ready,
        health: NodeHealth::default(),
        cert_fingerprint,
        joined_ms: now_ms,
        state_since_ms: now_ms,
        ..NodeRecord::default()
    };
    let admit = Command::Admit {
        token_id: req.token_id,
        secret_sha256,
        now_ms,
        node: record,
    };
    match raft.client_write(admit).await.map(|r| r.data) {
        Ok(Response::Token(TokenUse::Accepted)) => JoinReply::Admitted {
            id,
            cert_pem,
            ca_pem: ca.cert_pem,
            managers: machine.read(|s| {
                s.nodes
                    .values()
                    .filter(|n| n.role == zlayer_model::ClusterRole::Manager && n.id != id)
                    .map(|n| SeedMember {
                        id: n.id,
                        cert_fingerprint: n.cert_fingerprint.clone(),
                    })
                    .collect()
            }),
            nat,
        },
        Ok(Response::Token(u)) => JoinReply::Refused(u),
        Ok(Response::Refused(m)) => JoinReply::Invalid(m),
        Ok(other) => JoinReply::Invalid(format!("{other:?}")),
        Err(e) => JoinReply::Invalid(e.to_string()),
    }
}

static NAT_ADMISSION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether `node` joins from behind NAT and, if so, its seed: a request
/// from another address than the one it serves on, in a cluster with an
/// overlay, from a node that brings a WireGuard key. Otherwise it joins as
/// nodes always have (reachable at the address it names).
fn behind_nat(
    machine: &StateMachine,
    node: &NodeFacts,
    from: IpAddr,
) -> Result<Option<NatSeed>, String> {
    let claimed: SocketAddr = node
        .addr
        .parse()
        .map_err(|_| format!("address {:?} is not ip:port", node.addr))?;
    let Some(key) = &node.wg_public_key else {
        return Ok(None);
    };
    crate::mesh_fields::check_public_key(key)?;
    if claimed.ip() == from || from.is_loopback() {
        return Ok(None);
    }
    machine.read(|s| {
        let Some(net) = &s.network else {
            return Ok(None);
        };
        let subnet = crate::subnets::free_subnet(
            net,
            s.nodes.values().filter_map(|n| n.network.subnet.as_deref()),
        )?;
        let gateway = crate::subnets::gateway(&subnet).ok_or("no gateway in the picked subnet")?;
        let peers = s
            .nodes
            .values()
            .filter(|n| !n.network.behind_nat)
            .filter_map(|n| {
                Some(SeedPeer {
                    name: n.name.clone(),
                    public_key: n.network.wg_public_key.clone()?,
                    endpoint: n.network.wg_endpoint.clone()?,
                    subnet: n.network.subnet.clone()?,
                })
            })
            .collect();
        Ok(Some(NatSeed {
            addr: SocketAddr::new(IpAddr::V4(gateway), claimed.port()).to_string(),
            subnet,
            peers,
        }))
    })
}

/// A Raft id from the node's certificate: unique without coordination.
pub fn member_id(cert_fingerprint: &str) -> u64 {
    let bytes = hex::decode(cert_fingerprint).unwrap_or_default();
    let mut id = [0u8; 8];
    for (i, b) in bytes.iter().take(8).enumerate() {
        id[i] = *b;
    }
    (u64::from_be_bytes(id) >> 1).max(1)
}

//! The cluster as `zlayer node ls`, `token ls` and `ps` show it, and the
//! operator's commands on nodes and tokens.

use std::collections::HashMap;
use std::time::Duration;

use zlayer_api::{Amount, ClusterReply, ClusterRequest, NodeView, TokenView};
use zlayer_model::{NodeState, Resources};
use zlayer_state::{Command, Response};

use crate::{Control, ControlError};

impl Control {
    /// Answers `zlayer node …` and `zlayer token …`.
    pub async fn admin(&self, req: ClusterRequest) -> Result<ClusterReply, ControlError> {
        Ok(match req {
            ClusterRequest::Nodes => ClusterReply::Nodes(self.nodes()),
            ClusterRequest::Drain(n) => self.drain(&n).await.map(|()| ClusterReply::Done)?,
            ClusterRequest::Uncordon(n) => self.uncordon(&n).await.map(|()| ClusterReply::Done)?,
            ClusterRequest::Remove(n) => self.remove(&n).await.map(|()| ClusterReply::Done)?,
            ClusterRequest::TokenCreate {
                ttl_secs,
                uses,
                api,
            } => ClusterReply::Token(
                self.create_token(Duration::from_secs(ttl_secs), uses, api)
                    .await?,
            ),
            ClusterRequest::Tokens => ClusterReply::Tokens(self.tokens()),
            ClusterRequest::TokenRevoke(id) => {
                self.revoke_token(&id).await.map(|()| ClusterReply::Done)?
            }
        })
    }

    pub fn nodes(&self) -> Vec<NodeView> {
        let metrics = self.member.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let now = zlayer_state::now_ms();
        let leading = metrics.current_leader == Some(self.node.id);
        let specs = self.specs();
        let mut out = self.read(|s| {
            let requests: HashMap<String, Resources> = crate::leader::workloads(s, &specs)
                .into_iter()
                .map(|w| (w.id, w.request))
                .collect();
            s.nodes
                .values()
                .map(|n| {
                    let mut free = n.capacity;
                    for a in s.assignments_on(&n.name) {
                        if let Some(r) = requests.get(&a.workload) {
                            free.cpu_milli = free.cpu_milli.saturating_sub(r.cpu_milli);
                            free.memory_bytes = free.memory_bytes.saturating_sub(r.memory_bytes);
                            free.gpus = free.gpus.saturating_sub(r.gpus);
                        }
                    }
                    let role = if metrics.current_leader == Some(n.id) {
                        "leader"
                    } else if voters.contains(&n.id) {
                        "voter"
                    } else if learners.contains(&n.id) {
                        "learner"
                    } else {
                        "-"
                    };
                    NodeView {
                        id: n.id,
                        name: n.name.clone(),
                        addr: n.addr.clone(),
                        role: role.into(),
                        state: state_word(n.state).into(),
                        cpu_milli: Amount {
                            free: free.cpu_milli,
                            total: n.capacity.cpu_milli,
                        },
                        memory_bytes: Amount {
                            free: free.memory_bytes,
                            total: n.capacity.memory_bytes,
                        },
                        gpus: Amount {
                            free: free.gpus as u64,
                            total: n.capacity.gpus as u64,
                        },
                        labels: n.labels.clone(),
                        last_heartbeat_ms: self.since_heard(n, now, leading),
                        replicas: s.assignments_on(&n.name).count(),
                        health: [
                            ("bandwidth", n.health.bandwidth),
                            ("latency", n.health.latency),
                            ("efficiency", n.health.efficiency),
                            ("reputation", n.health.reputation),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    }
                })
                .collect::<Vec<NodeView>>()
        });
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Milliseconds since `n` was last heard: by this member's own clock
    /// while it leads (liveness calls come to the leader), else since the
    /// last heartbeat that went through Raft, by `n`'s clock.
    fn since_heard(&self, n: &zlayer_state::NodeRecord, now_ms: u64, leading: bool) -> u64 {
        match self.member.heard.get(n.id).filter(|_| leading) {
            Some(at) => at.elapsed().as_millis() as u64,
            None => now_ms.saturating_sub(n.last_heartbeat_ms),
        }
    }

    pub async fn create_token(
        &self,
        ttl: Duration,
        uses: Option<u32>,
        api: bool,
    ) -> Result<String, ControlError> {
        let kind = if api {
            zlayer_state::TokenKind::Api
        } else {
            zlayer_state::TokenKind::Join
        };
        Ok(self.member.create_token(ttl, uses, kind).await?)
    }

    pub fn tokens(&self) -> Vec<TokenView> {
        let now = zlayer_state::now_ms();
        self.read(|s| {
            s.tokens
                .values()
                .map(|t| TokenView {
                    id: t.id.clone(),
                    expires_ms: t.expires_ms,
                    uses: t.uses,
                    used: t.used,
                    kind: match t.kind {
                        zlayer_state::TokenKind::Join => "join",
                        zlayer_state::TokenKind::Api => "api",
                    }
                    .into(),
                    status: match t.check(&t.secret_sha256, now) {
                        zlayer_state::TokenUse::Accepted => "valid",
                        zlayer_state::TokenUse::Expired => "expired",
                        zlayer_state::TokenUse::Revoked => "revoked",
                        zlayer_state::TokenUse::UsedUp => "used up",
                        _ => "invalid",
                    }
                    .into(),
                })
                .collect()
        })
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), ControlError> {
        done(
            self.write(Command::RevokeToken { id: id.to_string() })
                .await?,
        )
    }

    /// Stops new placements on the node and moves its replicas elsewhere.
    pub async fn drain(&self, name: &str) -> Result<(), ControlError> {
        let id = self.node_id(name)?;
        done(
            self.write(Command::SetNodeState {
                id,
                state: NodeState::Draining,
                at_ms: zlayer_state::now_ms(),
            })
            .await?,
        )
    }

    /// Takes a drained node back into service.
    pub async fn uncordon(&self, name: &str) -> Result<(), ControlError> {
        let id = self.node_id(name)?;
        done(
            self.write(Command::SetNodeState {
                id,
                state: NodeState::Ready,
                at_ms: zlayer_state::now_ms(),
            })
            .await?,
        )
    }

    /// Forgets the node: its replicas move, it leaves Raft, and if it still
    /// runs, its heartbeats are refused and it fences itself.
    pub async fn remove(&self, name: &str) -> Result<(), ControlError> {
        let id = self.node_id(name)?;
        if id == self.node.id {
            return Err(ControlError::Refused(format!(
                "`{name}` is the node you are talking to; run `zlayer node rm {name}` on another member"
            )));
        }
        done(self.write(Command::RemoveNode { id }).await?)
    }

    fn node_id(&self, name: &str) -> Result<u64, ControlError> {
        self.read(|s| s.nodes.values().find(|n| n.name == name).map(|n| n.id))
            .ok_or_else(|| {
                let known =
                    self.read(|s| s.nodes.values().map(|n| n.name.clone()).collect::<Vec<_>>());
                ControlError::NoSuchNode(format!(
                    "no node named `{name}` (nodes: {})",
                    known.join(", ")
                ))
            })
    }
}

fn done(r: Response) -> Result<(), ControlError> {
    match r {
        Response::Refused(why) => Err(ControlError::Refused(why)),
        _ => Ok(()),
    }
}

fn state_word(s: NodeState) -> &'static str {
    match s {
        NodeState::Ready => "ready",
        NodeState::Draining => "draining",
        NodeState::Down => "down",
    }
}

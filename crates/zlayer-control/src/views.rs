//! The cluster's nodes and tokens as typed summaries, and the operator's
//! commands on them.

use std::collections::HashMap;
use std::time::Duration;

use zlayer_model::{NodeRole, NodeState, NodeSummary, Resources, TokenStatus, TokenSummary};
use zlayer_state::{Command, Response};

use crate::{Control, ControlError};

impl Control {
    pub fn nodes(&self) -> Vec<NodeSummary> {
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
                            free.take(r);
                        }
                    }
                    let role = if metrics.current_leader == Some(n.id) {
                        NodeRole::Leader
                    } else if voters.contains(&n.id) {
                        NodeRole::Voter
                    } else if learners.contains(&n.id) {
                        NodeRole::Learner
                    } else {
                        NodeRole::Outside
                    };
                    NodeSummary {
                        id: n.id,
                        name: n.name.clone(),
                        addr: n.addr.clone(),
                        role,
                        cluster_role: n.role,
                        state: n.state,
                        capacity: n.capacity,
                        free,
                        labels: n.labels.clone(),
                        since_heard_ms: self.since_heard(n, now, leading),
                        replicas: s.assignments_on(&n.name).count(),
                        health: n.health,
                        network: n.network.clone(),
                    }
                })
                .collect::<Vec<NodeSummary>>()
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
        kind: zlayer_state::TokenKind,
    ) -> Result<String, ControlError> {
        crate::reserve::ensure_room(self.files.dir()).map_err(ControlError::Refused)?;
        Ok(self.member.create_token(ttl, uses, kind).await?)
    }

    pub fn tokens(&self) -> Vec<TokenSummary> {
        let now = zlayer_state::now_ms();
        self.read(|s| {
            s.tokens
                .values()
                .map(|t| TokenSummary {
                    id: t.id.clone(),
                    expires_ms: t.expires_ms,
                    uses: t.uses,
                    used: t.used,
                    api: t.kind == zlayer_state::TokenKind::Api,
                    role: t.kind.admits().unwrap_or_default(),
                    status: match t.check(&t.secret_sha256, now) {
                        zlayer_state::TokenUse::Expired => TokenStatus::Expired,
                        zlayer_state::TokenUse::Revoked => TokenStatus::Revoked,
                        zlayer_state::TokenUse::UsedUp => TokenStatus::UsedUp,
                        _ => TokenStatus::Valid,
                    },
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

    /// `zlayer scale`: `service` is `DEPLOYMENT/SERVICE`, or a service name
    /// only one deployment has. The count lives in the cluster state until
    /// a spec changes that service's count.
    pub async fn scale(&self, service: &str, replicas: u32) -> Result<(), ControlError> {
        let (deployment, service) = self.service_of(service)?;
        done(
            self.write(Command::ScaleService {
                deployment,
                service,
                replicas,
            })
            .await?,
        )
    }

    /// `zlayer restart`: the service's replicas roll out again, through
    /// the normal rollout (new replicas healthy before old ones stop).
    pub async fn restart(&self, service: &str) -> Result<(), ControlError> {
        let (deployment, service) = self.service_of(service)?;
        done(
            self.write(Command::RestartService {
                deployment,
                service,
            })
            .await?,
        )
    }

    /// (deployment, service) for `DEPLOYMENT/SERVICE`, or for a service
    /// name that exactly one deployment has.
    fn service_of(&self, name: &str) -> Result<(String, String), ControlError> {
        if let Some((d, s)) = name.split_once('/') {
            return Ok((d.to_string(), s.to_string()));
        }
        let owners: Vec<String> = self
            .specs()
            .iter()
            .filter_map(|d| d.parsed.as_ref().ok())
            .filter(|spec| spec.services.contains_key(name))
            .map(|spec| spec.deployment.clone())
            .collect();
        match owners.as_slice() {
            [one] => Ok((one.clone(), name.to_string())),
            [] => Err(ControlError::Refused(format!(
                "no deployment has a service `{name}`; `zlayer ps` lists them"
            ))),
            many => Err(ControlError::Refused(format!(
                "deployments {} each have a service `{name}`; name one as DEPLOYMENT/{name}",
                many.join(", ")
            ))),
        }
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

pub(crate) fn done(r: Response) -> Result<(), ControlError> {
    match r {
        Response::Refused(why) => Err(ControlError::Refused(why)),
        _ => Ok(()),
    }
}

//! The node API, each request sent to the part that owns it: specs are
//! admitted by the agent and committed by the control plane, cluster
//! requests go straight to the control plane, and `ps` joins this node's
//! replicas with what the other nodes reported.

use std::time::Duration;

use zlayer_api::{
    ApiError, ApplyRequest, ApplyResponse, Backend, Body, ClusterReply, ClusterRequest, Event,
    ExecRequest, LogsRequest, NodeView, Origin, ReplicaLocation, ReplicaView, RolloutView,
    TokenView,
};

use crate::errors;
use crate::run::Node;

impl Backend for Node {
    async fn apply(&self, req: ApplyRequest) -> Result<ApplyResponse, ApiError> {
        let admitted = self
            .agent
            .admit(&req.file, &req.text, &req.env)
            .await
            .map_err(ApiError::Invalid)?;
        let (changed, revision) = self
            .control
            .commit_deployment(
                &admitted.name,
                &admitted.file,
                &admitted.text,
                &admitted.env,
            )
            .await
            .map_err(errors::control)?;
        let revisions = self.agent.note_applied(&admitted);
        let services = match &admitted.parsed {
            Ok(spec) => spec.services.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let scaled = self.control.read(|s| {
            s.deployments
                .get(&admitted.name)
                .map_or_else(Default::default, |d| {
                    d.scaled
                        .iter()
                        .map(|(svc, to)| (svc.clone(), to.replicas))
                        .collect()
                })
        });
        Ok(ApplyResponse {
            deployment: admitted.name,
            services,
            changed,
            revisions,
            scaled,
            revision,
        })
    }

    async fn down(&self, deployment: String) -> Result<(), ApiError> {
        let removed = self
            .control
            .remove_deployment(&deployment)
            .await
            .map_err(errors::control)?;
        if !removed {
            return Err(ApiError::NotFound(format!(
                "no deployment named `{deployment}`"
            )));
        }
        self.agent
            .wait_gone(&deployment)
            .await
            .map_err(ApiError::Unavailable)
    }

    async fn ps(&self) -> Vec<ReplicaView> {
        let now = zlayer_state::now_ms();
        let me = self.agent.node_name();
        let mut out: Vec<ReplicaView> = self
            .agent
            .local_reports()
            .iter()
            .map(|r| ReplicaView::reported(me, r, now))
            .collect();
        out.extend(self.placed_here_not_started(&out));
        out.extend(self.agent.spec_errors().into_iter().map(|e| {
            ReplicaView::spec_refused(
                &e.deployment,
                me,
                format!(
                    "revision {} does not parse on this node: {}",
                    e.revision, e.message
                ),
            )
        }));
        out.extend(
            self.control
                .elsewhere()
                .iter()
                .map(|c| ReplicaView::of(c, now)),
        );
        let kinds: std::collections::HashMap<(String, String), &'static str> = self
            .control
            .specs()
            .iter()
            .filter_map(|d| d.parsed.as_ref().ok())
            .flat_map(|spec| {
                spec.services.iter().map(|(name, svc)| {
                    ((spec.deployment.clone(), name.clone()), svc.rtype.as_str())
                })
            })
            .collect();
        for r in &mut out {
            if let Some(kind) = kinds.get(&(r.deployment.clone(), r.service.clone())) {
                r.kind = kind.to_string();
            }
        }
        out
    }

    async fn events(&self, origin: zlayer_api::Origin) -> Vec<Event> {
        let mut out = self.agent.events();
        if origin != zlayer_api::Origin::Forwarded {
            out.extend(crate::events::elsewhere(&self.control).await);
            out.sort_by_key(|e| e.time_ms);
        }
        out
    }

    async fn rollouts(&self) -> Vec<RolloutView> {
        let now = zlayer_state::now_ms();
        let me = self.agent.node_name();
        let mut out: Vec<RolloutView> = self
            .agent
            .local_rollout_reports()
            .iter()
            .map(|r| RolloutView::reported(me, r, now))
            .collect();
        out.extend(
            self.control
                .rollouts_elsewhere()
                .iter()
                .map(|r| RolloutView::of(r, now)),
        );
        out
    }

    async fn watch(&self, after: u64) -> u64 {
        self.agent.watch(after).await
    }

    async fn locate(&self, target: String) -> Result<Vec<ReplicaLocation>, ApiError> {
        self.agent.locate(&target).map_err(ApiError::NotFound)
    }

    async fn logs(&self, req: LogsRequest, origin: Origin) -> Result<Body, ApiError> {
        self.serve_logs(req, origin).await
    }

    async fn exec(&self, req: ExecRequest, origin: Origin) -> Result<Body, ApiError> {
        self.serve_exec(req, origin).await
    }

    async fn metrics(&self) -> String {
        zlayer_agent::metrics::render(&self.agent)
    }

    async fn cluster(&self, req: ClusterRequest) -> Result<ClusterReply, ApiError> {
        let c = &self.control;
        let done = |r: Result<(), _>| r.map(|()| ClusterReply::Done).map_err(errors::control);
        match req {
            ClusterRequest::Nodes => Ok(ClusterReply::Nodes(
                c.nodes().iter().map(NodeView::of).collect(),
            )),
            ClusterRequest::Scale { service, replicas } => done(c.scale(&service, replicas).await),
            ClusterRequest::Restart(s) => done(c.restart(&s).await),
            ClusterRequest::Drain(n) => done(c.drain(&n).await),
            ClusterRequest::History(d) => c
                .history(&d)
                .map(|all| {
                    let last = all.len().saturating_sub(1);
                    let rows = all.iter().enumerate();
                    ClusterReply::History(rows.map(|(i, r)| revision_view(r, i == last)).collect())
                })
                .map_err(errors::control),
            ClusterRequest::Undo { deployment, to } => c
                .undo(&deployment, to)
                .await
                .map(ClusterReply::Revision)
                .map_err(errors::control),
            ClusterRequest::Uncordon(n) => done(c.uncordon(&n).await),
            ClusterRequest::Remove(n) => done(c.remove(&n).await),
            ClusterRequest::TokenCreate {
                ttl_secs,
                uses,
                api,
                role,
            } => c
                .create_token(Duration::from_secs(ttl_secs), uses, token_kind(api, role))
                .await
                .map(ClusterReply::Token)
                .map_err(errors::control),
            ClusterRequest::IngressCa => c
                .member
                .ingress_ca_pem()
                .map(ClusterReply::Pem)
                .map_err(zlayer_api::ApiError::Invalid),
            ClusterRequest::Tokens => Ok(ClusterReply::Tokens(
                c.tokens().iter().map(TokenView::of).collect(),
            )),
            ClusterRequest::TokenRevoke(id) => done(c.revoke_token(&id).await),
            ClusterRequest::Overlay => self.overlay_view().await.map(ClusterReply::Overlay),
            ClusterRequest::PeerAdd { name, public_key } => self
                .stock_peer(&name, &public_key)
                .await
                .map(ClusterReply::Peer),
            ClusterRequest::PeerRemove(name) => done(c.remove_peer(&name).await),
            ClusterRequest::SecretCreate { name, value } => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&value.0)
                    .map_err(|e| zlayer_api::ApiError::Invalid(format!("secret value: {e}")))?;
                c.put_secret(&name, &bytes)
                    .await
                    .map(ClusterReply::Revision)
                    .map_err(errors::control)
            }
            ClusterRequest::Secrets => Ok(ClusterReply::Secrets(
                c.secrets().iter().map(secret_view).collect(),
            )),
            ClusterRequest::SecretRemove(name) => done(c.remove_secret(&name).await),
            ClusterRequest::SecretsRotateKey => done(c.rotate_secrets_key().await),
            ClusterRequest::ConfigCreate { name, data } => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&data)
                    .map_err(|e| zlayer_api::ApiError::Invalid(format!("config value: {e}")))?;
                c.put_config(&name, &bytes)
                    .await
                    .map(ClusterReply::Revision)
                    .map_err(errors::control)
            }
            ClusterRequest::Configs => Ok(ClusterReply::Configs(
                c.configs()
                    .iter()
                    .map(|s| zlayer_api::StoredView {
                        name: s.name.clone(),
                        version: s.record.version,
                        bytes: s.record.bytes,
                        updated_ms: s.record.updated_ms,
                        consumers: s.consumers.clone(),
                    })
                    .collect(),
            )),
            ClusterRequest::ConfigRemove(name) => done(c.remove_config(&name).await),
            ClusterRequest::Volumes => Ok(ClusterReply::Volumes(
                c.volumes()
                    .into_iter()
                    .map(|v| zlayer_api::VolumeView {
                        volume: v.record.key(),
                        node: v.record.node,
                        size_bytes: v.record.size_bytes,
                        created_ms: v.record.created_ms,
                        used_bytes: v.usage.as_ref().map(|u| u.used_bytes),
                        capacity_bytes: v.usage.and_then(|u| u.capacity_bytes),
                        users: v.record.users.into_iter().collect(),
                        in_use_by: v.in_use_by,
                    })
                    .collect(),
            )),
            ClusterRequest::VolumeRemove(name) => done(c.remove_volume(&name).await),
            ClusterRequest::Usage(q) => Ok(ClusterReply::Usage(c.read(|s| {
                let mut rows: Vec<zlayer_model::UsageRecord> = s
                    .usage
                    .records
                    .values()
                    .filter(|r| q.matches(r))
                    .cloned()
                    .collect();
                rows.sort_by(|a, b| {
                    (a.finished_ms, &a.container_id).cmp(&(b.finished_ms, &b.container_id))
                });
                rows
            }))),
        }
    }

    fn shutdown(&self) {
        self.agent.shutdown();
    }
}

/// A join token admits workers unless it says otherwise, as in Swarm.
fn token_kind(api: bool, role: Option<zlayer_model::ClusterRole>) -> zlayer_state::TokenKind {
    match (api, role.unwrap_or(zlayer_model::ClusterRole::Worker)) {
        (true, _) => zlayer_state::TokenKind::Api,
        (false, zlayer_model::ClusterRole::Manager) => zlayer_state::TokenKind::Manager,
        (false, zlayer_model::ClusterRole::Worker) => zlayer_state::TokenKind::Worker,
    }
}

impl Node {
    /// Slots the cluster placed on this node that the agent has not picked
    /// up yet (it does on its next tick): without them a replica would be in
    /// no row of `ps` for that moment, neither here nor elsewhere.
    fn placed_here_not_started(&self, local: &[ReplicaView]) -> Vec<ReplicaView> {
        not_started(
            local,
            self.control.assigned_here(),
            self.agent.node_name(),
            zlayer_state::now_ms(),
        )
    }
}

/// The slots in `assigned` (workload -> replica indexes placed on node
/// `me`) that no row in `local` shows yet, as `assigned` rows.
fn not_started(
    local: &[ReplicaView],
    assigned: std::collections::BTreeMap<String, std::collections::BTreeSet<u32>>,
    me: &str,
    now_ms: u64,
) -> Vec<ReplicaView> {
    let started: std::collections::HashSet<(String, u32)> = local
        .iter()
        .map(|v| (format!("{}/{}", v.deployment, v.service), v.replica))
        .collect();
    assigned
        .into_iter()
        .flat_map(|(workload, replicas)| {
            replicas
                .into_iter()
                .map(move |replica| (workload.clone(), replica))
        })
        .filter(|slot| !started.contains(slot))
        .map(|(workload, replica)| {
            let slot = zlayer_model::ClusterReplica::Assigned {
                node: me.to_string(),
                workload,
                replica,
            };
            ReplicaView::of(&slot, now_ms)
        })
        .collect()
}

fn secret_view(s: &zlayer_control::SecretSummary) -> zlayer_api::StoredView {
    zlayer_api::StoredView {
        name: s.name.clone(),
        version: s.record.version,
        bytes: s.record.bytes,
        updated_ms: s.record.updated_ms,
        consumers: s.consumers.clone(),
    }
}

/// A kept revision as `rollout history` shows it.
fn revision_view(r: &zlayer_state::SpecRevision, current: bool) -> zlayer_api::RevisionView {
    let images = zlayer_spec::parse(&r.file, &r.text)
        .map(|spec| {
            spec.services
                .iter()
                .map(|(name, svc)| format!("{name}={}", svc.image.name))
                .collect()
        })
        .unwrap_or_default();
    zlayer_api::RevisionView {
        revision: r.revision,
        current,
        file: r.file.clone(),
        applied_ms: r.at_ms,
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn a_slot_placed_here_that_the_agent_has_not_started_shows_as_assigned() {
        let running = not_started(
            &[],
            BTreeMap::from([("web/api".to_string(), BTreeSet::from([0]))]),
            "n1",
            0,
        );
        let local = running
            .iter()
            .map(|v| ReplicaView {
                state: zlayer_api::ReplicaPhase::Running,
                ..v.clone()
            })
            .collect::<Vec<_>>();
        let assigned = BTreeMap::from([
            ("web/api".to_string(), BTreeSet::from([0, 1])),
            ("batch/task".to_string(), BTreeSet::from([3])),
        ]);
        let rows = not_started(&local, assigned, "n1", 0);
        let slots: Vec<(String, String, u32, String)> = rows
            .iter()
            .map(|v| {
                assert_eq!(v.state, zlayer_api::ReplicaPhase::Assigned);
                (
                    v.deployment.clone(),
                    v.service.clone(),
                    v.replica,
                    v.node.clone(),
                )
            })
            .collect();
        assert_eq!(
            slots,
            [
                ("batch".into(), "task".into(), 3, "n1".into()),
                ("web".into(), "api".into(), 1, "n1".into()),
            ],
            "replica 0 already has its row; the others show once each"
        );
    }
}

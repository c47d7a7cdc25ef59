//! What the node's agent reads and writes through its control plane: the
//! committed specs, the slots assigned here, replicas and rollouts
//! elsewhere, and its own report.

use std::collections::{BTreeMap, BTreeSet};

use zlayer_api::{ReplicaView, RolloutView};
use zlayer_scheduler::NodeState;
use zlayer_state::{Command, DeploymentRecord, ReplicaStatus, Response, RolloutStatus};

use crate::control::Report;
use crate::{Control, ControlError};

impl Control {
    pub fn deployments(&self) -> Vec<DeploymentRecord> {
        self.read(|s| s.deployments.values().cloned().collect())
    }

    /// The replica slots assigned to this node, by `deployment/service`.
    pub fn assigned_here(&self) -> BTreeMap<String, BTreeSet<u32>> {
        let mut out: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        self.read(|s| {
            for a in s.assignments_on(&self.node.name) {
                out.entry(a.workload.clone()).or_default().insert(a.replica);
            }
        });
        out
    }

    /// Commits a spec; true if it differs from the committed one.
    pub async fn put_deployment(
        &self,
        name: &str,
        file: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<bool, ControlError> {
        let before = self.read(|s| s.deployments.get(name).map(|d| d.current.revision));
        let cmd = Command::PutDeployment {
            name: name.to_string(),
            file: file.to_string(),
            text: text.to_string(),
            env: env.clone(),
            at_ms: zlayer_state::now_ms(),
        };
        match self.write(cmd).await? {
            Response::Revision(r) => Ok(before != Some(r)),
            Response::Refused(why) => Err(ControlError::Refused(why)),
            other => Err(ControlError::Refused(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Removes a deployment and its assignments; false if there was none.
    pub async fn remove_deployment(&self, name: &str) -> Result<bool, ControlError> {
        if !self.read(|s| s.deployments.contains_key(name)) {
            return Ok(false);
        }
        match self
            .write(Command::RemoveDeployment {
                name: name.to_string(),
            })
            .await?
        {
            Response::Refused(_) => Ok(false),
            _ => Ok(true),
        }
    }

    /// Sends this node's replicas and rollouts with the next heartbeat.
    pub fn report_views(&self, views: &[ReplicaView], rollouts: &[RolloutView]) {
        let now = zlayer_state::now_ms();
        let replicas = views
            .iter()
            .map(|v| ReplicaStatus {
                workload: format!("{}/{}", v.deployment, v.service),
                replica: v.replica,
                surge: v.surge,
                state: v.state.clone(),
                health: v.health.clone(),
                restarts: v.restarts,
                ip: v.ip.clone(),
                revision: v.revision.clone(),
                message: v.message.clone(),
                started_ms: now.saturating_sub(v.age_secs * 1000),
                container_id: v.container_id.clone(),
            })
            .collect();
        let rollouts = rollouts
            .iter()
            .map(|r| RolloutStatus {
                workload: format!("{}/{}", r.deployment, r.service),
                revision: r.revision.clone(),
                state: r.state.clone(),
                message: r.message.clone(),
                started_ms: now.saturating_sub(r.age_secs * 1000),
            })
            .collect();
        self.report(Report { replicas, rollouts });
    }

    /// The other nodes' rollouts as they last reported them; a down node's
    /// are left out, as nothing vouches for them.
    pub fn rollouts_elsewhere(&self) -> Vec<RolloutView> {
        let now = zlayer_state::now_ms();
        self.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != self.node.id && n.state != NodeState::Down)
                .flat_map(|n| {
                    n.rollouts.iter().map(|r| {
                        let (deployment, service) =
                            r.workload.split_once('/').unwrap_or((&r.workload, ""));
                        RolloutView {
                            deployment: deployment.into(),
                            service: service.into(),
                            node: n.name.clone(),
                            revision: r.revision.clone(),
                            state: r.state.clone(),
                            message: r.message.clone(),
                            age_secs: now.saturating_sub(r.started_ms) / 1000,
                        }
                    })
                })
                .collect()
        })
    }

    /// Replicas on other nodes as they last reported them, slots placed on
    /// a node that has not reported them yet, and slots no node could take.
    pub fn elsewhere(&self) -> Vec<ReplicaView> {
        let now = zlayer_state::now_ms();
        self.read(|s| {
            let mut out = Vec::new();
            for n in s.nodes.values().filter(|n| n.id != self.node.id) {
                let reported: BTreeSet<(&str, u32)> = n
                    .replicas
                    .iter()
                    .map(|r| (r.workload.as_str(), r.replica))
                    .collect();
                let down = n.state == NodeState::Down;
                for r in &n.replicas {
                    out.push(view(&r.workload, r.replica, &n.name, |v| {
                        v.surge = r.surge;
                        v.state = r.state.clone();
                        v.health = r.health.clone();
                        v.restarts = r.restarts;
                        v.ip = r.ip.clone();
                        v.revision = r.revision.clone();
                        v.container_id = r.container_id.clone();
                        v.message = r.message.clone();
                        v.age_secs = now.saturating_sub(r.started_ms) / 1000;
                        if down {
                            // Its last report may be long stale: nothing vouches for it now.
                            v.message =
                                format!("node {} is down; it last reported {}", n.name, v.state);
                            v.state = "unknown".into();
                            v.health = "unknown".into();
                        }
                    }));
                }
                for a in s.assignments_on(&n.name) {
                    if !reported.contains(&(a.workload.as_str(), a.replica)) {
                        out.push(view(&a.workload, a.replica, &n.name, |v| {
                            v.state = "assigned".into();
                            v.message = format!("placed on {}, not reported yet", n.name);
                        }));
                    }
                }
            }
            for p in &s.pending {
                out.push(view(&p.workload, p.replica, "", |v| {
                    v.state = "pending".into();
                    v.message = p.reason.clone();
                }));
            }
            out
        })
    }
}

fn view(
    workload: &str,
    replica: u32,
    node: &str,
    fill: impl FnOnce(&mut ReplicaView),
) -> ReplicaView {
    let (deployment, service) = workload.split_once('/').unwrap_or((workload, ""));
    let mut v = ReplicaView {
        deployment: deployment.into(),
        service: service.into(),
        replica,
        node: node.into(),
        state: String::new(),
        health: "none".into(),
        restarts: 0,
        ip: String::new(),
        age_secs: 0,
        container_id: String::new(),
        message: String::new(),
        revision: String::new(),
        surge: false,
    };
    fill(&mut v);
    v
}

//! What the node's agent reads and writes through its control plane: the
//! committed specs, the slots assigned here, replicas and rollouts
//! elsewhere, and its own report.

use std::collections::{BTreeMap, BTreeSet};

use zlayer_model::{ClusterReplica, NodeRollout, NodeState, ReplicaReport, RolloutReport};
use zlayer_state::{Command, DeploymentRecord, Response};

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
        Ok(self.commit_deployment(name, file, text, env).await?.0)
    }

    /// [`Self::put_deployment`], also returning the revision the commit
    /// made current. That answer comes from the commit itself: on a member
    /// that forwarded the write, the local state may not have applied it yet.
    pub async fn commit_deployment(
        &self,
        name: &str,
        file: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(bool, u64), ControlError> {
        self.put_deployment_if(name, file, text, env, None).await
    }

    /// [`Self::put_deployment`], applied only while the deployment is at
    /// `if_revision` (when given).
    async fn put_deployment_if(
        &self,
        name: &str,
        file: &str,
        text: &str,
        env: &BTreeMap<String, String>,
        if_revision: Option<u64>,
    ) -> Result<(bool, u64), ControlError> {
        crate::reserve::ensure_room(self.files.dir()).map_err(ControlError::Refused)?;
        let parsed = zlayer_spec::parse(file, text).ok();
        if let Some(clash) = parsed
            .as_ref()
            .and_then(|spec| self.route_clash(name, file, spec))
        {
            return Err(ControlError::Refused(clash));
        }
        let before = self.read(|s| s.deployments.get(name).map(|d| d.current.revision));
        let cmd = Command::PutDeployment {
            name: name.to_string(),
            file: file.to_string(),
            text: text.to_string(),
            env: env.clone(),
            at_ms: zlayer_state::now_ms(),
            counts: parsed
                .as_ref()
                .map(zlayer_state::service_counts)
                .unwrap_or_default(),
            if_revision,
        };
        match self.write(cmd).await? {
            Response::Revision(r) => Ok((before != Some(r), r)),
            Response::Refused(why) => Err(ControlError::Refused(why)),
            other => Err(ControlError::Refused(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// An ingress route or host port of the spec that another deployment
    /// already takes: routes are unique on (scheme, host, path) across the
    /// cluster, and published ports (per transport) too, since every node
    /// serves both.
    fn route_clash(&self, name: &str, file: &str, spec: &zlayer_spec::Spec) -> Option<String> {
        let mine = zlayer_spec::claims(spec);
        for other in self.specs() {
            let Ok(theirs) = &other.parsed else { continue };
            if other.name == name {
                continue;
            }
            for (claim, their_ep) in zlayer_spec::claims(theirs) {
                if let Some((_, ours)) = mine.iter().find(|(c, _)| *c == claim) {
                    let fix = match claim {
                        zlayer_spec::Claim::Route(..) => "give it another `host` or `path`",
                        zlayer_spec::Claim::Port { .. } => "give it another `host_port`",
                    };
                    return Some(format!(
                        "{file}: endpoint {ours} takes {claim}, which deployment `{}` already has ({their_ep}); {fix}, or change `{}` first",
                        other.name, other.name
                    ));
                }
            }
        }
        None
    }

    /// A deployment's kept revisions, oldest first, the current one last.
    pub fn history(&self, name: &str) -> Result<Vec<zlayer_state::SpecRevision>, ControlError> {
        self.read(|s| {
            s.deployments.get(name).map(|d| {
                let mut all = d.history.clone();
                all.push(d.current.clone());
                all
            })
        })
        .ok_or_else(|| ControlError::Refused(format!("no deployment `{name}`")))
    }

    /// Commits an earlier revision's spec and env again, as a new revision:
    /// `to`, or the one before the current one. Returns the new revision.
    /// `update.failure_action: rollback`: the revision before `from`
    /// applied again, only while `from` is still the current one (so the
    /// nodes that each saw the failure roll back once, and never over a
    /// newer apply). Returns the revision now current.
    pub async fn roll_back(&self, name: &str, from: u64) -> Result<u64, ControlError> {
        let all = self.history(name)?;
        let pos = all.iter().position(|r| r.revision == from);
        let Some(target) = pos.and_then(|p| p.checked_sub(1)).map(|p| &all[p]) else {
            return Err(ControlError::Refused(format!(
                "`{name}` keeps no revision before {from} to roll back to"
            )));
        };
        let (file, text, env) = (target.file.clone(), target.text.clone(), target.env.clone());
        let put = self
            .put_deployment_if(name, &file, &text, &env, Some(from))
            .await;
        let now = self.read(|s| s.deployments.get(name).map_or(0, |d| d.current.revision));
        match put {
            Ok((_, revision)) => Ok(revision),
            // Another node saw the failure too and rolled back first, or a
            // newer apply came: either way `from` is no longer current.
            Err(_) if now != from => Ok(now),
            Err(e) => Err(e),
        }
    }

    pub async fn undo(&self, name: &str, to: Option<u64>) -> Result<u64, ControlError> {
        let all = self.history(name)?;
        let current = all.last().map_or(0, |r| r.revision);
        let target = match to {
            Some(n) if n == current => {
                return Err(ControlError::Refused(format!(
                    "revision {n} of `{name}` is the current one"
                )))
            }
            Some(n) => all.iter().find(|r| r.revision == n).ok_or_else(|| {
                let kept: Vec<String> = all.iter().map(|r| r.revision.to_string()).collect();
                ControlError::Refused(format!(
                    "`{name}` keeps no revision {n} (kept: {}); `zlayer rollout history {name}` lists them",
                    kept.join(", ")
                ))
            })?,
            None => all.iter().rev().nth(1).ok_or_else(|| {
                ControlError::Refused(format!("`{name}` has no revision before the current one"))
            })?,
        };
        let (file, text, env) = (target.file.clone(), target.text.clone(), target.env.clone());
        Ok(self.commit_deployment(name, &file, &text, &env).await?.1)
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
    pub fn report_local(&self, replicas: Vec<ReplicaReport>, rollouts: Vec<RolloutReport>) {
        let volumes = self.report.borrow().volumes.clone();
        self.report(Report {
            replicas,
            rollouts,
            volumes,
        });
    }

    /// Sends the use of this node's volumes with the next heartbeat.
    pub fn report_volumes(&self, volumes: Vec<zlayer_model::VolumeUsage>) {
        let mut r = self.report.borrow().clone();
        r.volumes = volumes;
        self.report(r);
    }

    /// Where the cluster keeps volume `deployment/name`, from this node.
    pub fn volume_hold(&self, deployment: &str, name: &str) -> zlayer_model::VolumeHold {
        let k = zlayer_state::volumes::key(deployment, name);
        self.read(|s| match s.volumes.records.get(&k) {
            Some(r) if r.node == self.node.name => zlayer_model::VolumeHold::Here { id: r.id },
            Some(r) => zlayer_model::VolumeHold::Elsewhere {
                node: r.node.clone(),
            },
            None => zlayer_model::VolumeHold::Unclaimed,
        })
    }

    /// The other nodes' rollouts as they last reported them; a down node's
    /// are left out, as nothing vouches for them.
    pub fn rollouts_elsewhere(&self) -> Vec<NodeRollout> {
        self.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != self.node.id && n.state != NodeState::Down)
                .flat_map(|n| {
                    n.rollout_reports.iter().map(|r| NodeRollout {
                        node: n.name.clone(),
                        report: r.clone(),
                    })
                })
                .collect()
        })
    }

    /// The replicas the other live nodes last reported, for decisions that
    /// count replicas across the cluster (`depends`, rollout turns). A down
    /// node's reports count for nothing.
    pub fn reported_elsewhere(&self) -> Vec<ReplicaReport> {
        self.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != self.node.id && n.state != NodeState::Down)
                .flat_map(|n| n.replica_reports.iter().cloned())
                .collect()
        })
    }

    /// This node's own report, as committed.
    pub fn committed_here(&self) -> Vec<ReplicaReport> {
        self.read(|s| {
            s.nodes
                .get(&self.node.id)
                .map(|n| n.replica_reports.clone())
                .unwrap_or_default()
        })
    }

    /// Other nodes that are not down.
    pub fn other_live_nodes(&self) -> usize {
        self.read(|s| {
            s.nodes
                .values()
                .filter(|n| n.id != self.node.id && n.state != NodeState::Down)
                .count()
        })
    }

    /// Replicas on other nodes as they last reported them, slots placed on
    /// a node that has not reported them yet, and slots no node could take.
    pub fn elsewhere(&self) -> Vec<ClusterReplica> {
        self.read(|s| {
            let mut out = Vec::new();
            for n in s.nodes.values().filter(|n| n.id != self.node.id) {
                let reported: BTreeSet<(&str, u32)> = n
                    .replica_reports
                    .iter()
                    .map(|r| (r.workload.as_str(), r.replica))
                    .collect();
                let node_down = n.state == NodeState::Down;
                out.extend(n.replica_reports.iter().map(|r| ClusterReplica::Reported {
                    node: n.name.clone(),
                    node_down,
                    report: r.clone(),
                }));
                for a in s.assignments_on(&n.name) {
                    if !reported.contains(&(a.workload.as_str(), a.replica)) {
                        out.push(ClusterReplica::Assigned {
                            node: n.name.clone(),
                            workload: a.workload.clone(),
                            replica: a.replica,
                        });
                    }
                }
            }
            out.extend(s.pending.iter().flat_map(|p| {
                p.replicas().map(|replica| ClusterReplica::Pending {
                    workload: p.workload.clone(),
                    replica,
                    reason: p.reason.clone(),
                })
            }));
            out
        })
    }
}

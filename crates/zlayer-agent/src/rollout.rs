//! Rolling a service to a new revision, a few slots at a time (the
//! `update:` block): a replacement (a "surge" replica) starts beside the old
//! replica of its slot, and the old one stops only once the new one serves.
//! A replacement that exits, fails its checks or is not healthy within
//! `update.timeout` stops the rollout: it is removed, the old replicas keep
//! running, and the rollout record says why until a new revision is applied.
//! Each node replaces only its own slots; `rollout_turn` makes the
//! parallelism hold across the cluster.

use std::collections::{BTreeMap, HashSet};

use zlayer_model::ReplicaReport;
use zlayer_spec::{DeploymentRevision, FailureAction, ResourceType, Service};

use crate::agent::Agent;
use crate::clock::now_ms;
use crate::rollout_turn::{slots_to_start, Local};
use crate::state::{surge_key, Health, Replica, ReplicaState, Rollout, RolloutState};
use crate::template::Template;

/// What became of a slot's replacement this round.
enum SurgeOutcome {
    Waiting,
    Serving,
    Failed(String),
}

impl Agent {
    fn save_rollout(&self, r: &Rollout) {
        if let Err(e) = self.store.put_rollout(r) {
            self.store_failed(&format!("rollout {}/{}", r.deployment, r.service), &e);
        }
    }

    /// The rollout record for the service's current revision; a new revision
    /// starts a new rollout.
    pub(crate) fn rollout_for(&self, t: &Template) -> Rollout {
        match self.store.rollout(&t.deployment, &t.service_name) {
            Some(r) if r.revision == t.revision => r,
            _ => {
                let r = Rollout {
                    deployment: t.deployment.clone(),
                    service: t.service_name.clone(),
                    revision: t.revision.clone(),
                    state: RolloutState::Rolling,
                    message: String::new(),
                    started_ms: now_ms(),
                };
                if let Err(e) = self.store.put_rollout(&r) {
                    self.store_failed(&format!("rollout {}/{}", r.deployment, r.service), &e);
                }
                r
            }
        }
    }

    /// One step of the rollout; returns the replacements to start now.
    pub(crate) async fn roll(
        &self,
        t: &Template,
        d: &DeploymentRevision,
        slots: &[u32],
        mut rollout: Rollout,
        replicas: &mut BTreeMap<String, Replica>,
        wanted: &mut HashSet<String>,
    ) -> Vec<Replica> {
        let (dep, name) = (t.deployment.as_str(), t.service_name.as_str());
        let Some(svc) = d.parsed.as_ref().ok().and_then(|s| s.services.get(name)) else {
            return Vec::new();
        };
        for &idx in slots {
            let sk = surge_key(dep, name, idx);
            let Some(s) = replicas.get(&sk).cloned() else {
                continue;
            };
            if s.revision != t.revision {
                // Started for a revision that has since been replaced.
                self.retire(&s).await;
                replicas.remove(&sk);
                continue;
            }
            wanted.insert(sk.clone());
            match self.surge_outcome(svc, &s) {
                SurgeOutcome::Waiting => {}
                SurgeOutcome::Serving => self.promote(s, replicas).await,
                SurgeOutcome::Failed(why) => {
                    self.retire(&s).await;
                    replicas.remove(&sk);
                    rollout.state = RolloutState::Failed;
                    rollout.message = format!(
                        "stopped: the new replica {name}/{idx} (revision {}) {why}; \
                         the old replicas keep running. See `zlayer logs {name}/{idx}`, \
                         fix the spec and apply it again",
                        t.revision
                    );
                    if svc.update.failure_action == FailureAction::Rollback {
                        rollout.message += &self.roll_back(dep, d.revision).await;
                    }
                    self.event(&s, "rollout-failed", rollout.message.clone());
                    self.save_rollout(&rollout);
                }
            }
        }
        let stale: Vec<u32> = slots
            .iter()
            .copied()
            .filter(|&idx| {
                replicas
                    .get(&crate::state::key(dep, name, idx))
                    .is_some_and(|r| r.state == ReplicaState::Running && r.revision != t.revision)
            })
            .collect();
        let surging = slots
            .iter()
            .filter(|&&idx| replicas.contains_key(&surge_key(dep, name, idx)))
            .count();
        if rollout.state == RolloutState::Rolling && stale.is_empty() && surging == 0 {
            rollout.state = RolloutState::Done;
            self.save_rollout(&rollout);
            tracing::info!(deployment = dep, service = name, revision = %t.revision, "rollout complete");
        }
        if rollout.state == RolloutState::Failed {
            return Vec::new();
        }
        if t.service.rtype != ResourceType::Service {
            // Jobs and cron runs are not kept serving: the old run simply makes way.
            for idx in stale {
                if let Some(old) = replicas.remove(&crate::state::key(dep, name, idx)) {
                    self.retire(&old).await;
                }
            }
            return Vec::new();
        }
        let mut starts = Vec::new();
        let waiting: Vec<u32> = stale
            .into_iter()
            .filter(|&idx| !replicas.contains_key(&surge_key(dep, name, idx)))
            .collect();
        if waiting.is_empty() {
            return starts;
        }
        let workload = format!("{dep}/{name}");
        let reported: Vec<ReplicaReport> = self
            .cluster
            .reported_elsewhere()
            .into_iter()
            .filter(|v| v.workload == workload)
            .collect();
        let local = Local {
            stale: &waiting,
            surging,
        };
        let next = slots_to_start(svc.update.parallelism, &t.revision, local, &reported);
        for idx in next {
            let mut s = self.new_surge(t, idx);
            if self.reserve_gpus(&s, svc, replicas).is_err() {
                // No spare GPU for a replacement beside the old replica: the
                // old one makes way, and its slot starts afresh on the new
                // revision in the next round (with the GPU it freed).
                if let Some(old) = replicas.remove(&crate::state::key(dep, name, idx)) {
                    self.event(
                        &old,
                        "rollout",
                        format!("no spare GPU for a replacement beside replica {idx}; replacing it in place"),
                    );
                    self.retire(&old).await;
                }
                continue;
            }
            match self.reserve(&mut s, svc, replicas) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(deployment = dep, service = name, "rollout waits: {e}");
                    break;
                }
            }
            self.event(
                &s,
                "rollout",
                format!("starting revision {} beside replica {idx}", t.revision),
            );
            wanted.insert(s.key());
            replicas.insert(s.key(), s.clone());
            starts.push(s);
        }
        starts
    }

    /// What `failure_action: rollback` did, for the rollout's message.
    async fn roll_back(&self, deployment: &str, from: u64) -> String {
        match self.cluster.roll_back(deployment, from).await {
            Ok(now) => format!(" Rolled back (`update.failure_action: rollback`): `{deployment}` is at revision {now}, past {from} (`zlayer rollout history {deployment}`)."),
            Err(e) => format!(" Rollback not done: {e}."),
        }
    }

    fn surge_outcome(&self, svc: &Service, s: &Replica) -> SurgeOutcome {
        let timeout = svc.update.timeout;
        let monitored =
            now_ms().saturating_sub(s.started_ms) >= svc.update.monitor.0.as_millis() as u64;
        match (s.state, s.health) {
            (ReplicaState::Running, Health::Healthy | Health::None) if monitored => {
                SurgeOutcome::Serving
            }
            (ReplicaState::Running, Health::Healthy | Health::None) => SurgeOutcome::Waiting,
            (ReplicaState::Running, Health::Unhealthy) => {
                SurgeOutcome::Failed(format!("failed its health check: {}", s.message))
            }
            (ReplicaState::Running, Health::Starting)
                if now_ms().saturating_sub(s.started_ms) > timeout.0.as_millis() as u64 =>
            {
                let last = if s.message.is_empty() {
                    "no probe has passed".to_string()
                } else {
                    s.message.clone()
                };
                SurgeOutcome::Failed(format!("was not healthy within {timeout} ({last})"))
            }
            (ReplicaState::Running, Health::Starting) => SurgeOutcome::Waiting,
            (ReplicaState::Pending, _) => SurgeOutcome::Waiting,
            (ReplicaState::Exited | ReplicaState::Failed, _) => {
                SurgeOutcome::Failed(format!("exited before it was healthy: {}", s.message))
            }
        }
    }

    /// The replacement serves: the old replica of its slot stops, and the
    /// replacement takes the slot.
    async fn promote(&self, surge: Replica, replicas: &mut BTreeMap<String, Replica>) {
        let slot = crate::state::key(&surge.deployment, &surge.service, surge.index);
        if let Some(old) = replicas.remove(&slot) {
            self.retire(&old).await;
        }
        let from = surge.key();
        replicas.remove(&from);
        let mut r = surge;
        r.surge = false;
        self.event(
            &r,
            "rollout",
            format!("replica {} now runs revision {}", r.index, r.revision),
        );
        self.persist(self.store.move_replica(&from, &r), &r);
        replicas.insert(slot, r);
    }

    fn new_surge(&self, t: &Template, idx: u32) -> Replica {
        let mut r = Replica::new(&t.deployment, &t.service_name, idx, &t.revision);
        r.surge = true;
        r
    }
}

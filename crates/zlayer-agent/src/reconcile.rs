//! One reconcile round: observe exits, plan every wanted slot against its
//! replica, start what the plan says (a service's replicas together,
//! services in `depends` order), roll outdated replicas, stop what no spec
//! wants, then probe and publish.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use zlayer_runtime::Status;
use zlayer_spec::{DeploymentRevision, ResourceType, Spec};

use crate::agent::{Agent, SpecError};
use crate::clock::{backoff_ms, now_ms};
use crate::planning::Plan;
use crate::state::{Health, Replica, ReplicaState, RolloutState};

/// The committed specs this node can run: each parsed once per revision.
pub(crate) type Specs = Vec<(Arc<DeploymentRevision>, Arc<Spec>)>;

/// A run shorter than this counts towards a crash loop.
pub(crate) const QUICK_EXIT_MS: u64 = 60_000;
/// Quick exits in a row that make a crash loop.
pub(crate) const CRASH_LOOP_EXITS: u32 = 3;

impl Agent {
    /// The committed specs that parse here. A revision this node's parser
    /// refuses is reported once (log, event) and shown by `ps`; its
    /// deployment's replicas are left as they are, neither started nor
    /// stopped, until a revision that parses arrives.
    fn specs(&self) -> (Specs, Vec<SpecError>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for d in self.cluster.deployments() {
            match &d.parsed {
                Ok(spec) => good.push((d.clone(), spec.clone())),
                Err(e) => bad.push(SpecError {
                    deployment: d.name.clone(),
                    revision: d.revision,
                    message: e.clone(),
                }),
            }
        }
        if let Ok(mut known) = self.spec_errors.lock() {
            known.retain(|name, _| bad.iter().any(|b| &b.deployment == name));
            for b in &bad {
                if known.get(&b.deployment) != Some(b) {
                    tracing::error!(deployment = %b.deployment, revision = b.revision, "the committed spec does not parse on this node; its replicas here stay as they are: {}", b.message);
                    self.event_for(
                        &b.deployment,
                        "",
                        0,
                        "spec-invalid",
                        format!(
                            "revision {} does not parse on this node: {}",
                            b.revision, b.message
                        ),
                    );
                    known.insert(b.deployment.clone(), b.clone());
                }
            }
        }
        (good, bad)
    }

    pub(crate) async fn reconcile(self: &Arc<Self>) {
        let (specs, refused) = self.specs();
        let mut replicas: BTreeMap<String, Replica> = self
            .store
            .replicas()
            .into_iter()
            .map(|r| (r.key(), r))
            .collect();
        self.observe_exits(&mut replicas).await;
        self.enforce_deadlines(&mut replicas).await;
        let fenced = self.cluster.fenced();
        let was = self
            .fenced
            .swap(fenced, std::sync::atomic::Ordering::Relaxed);
        if fenced && !was {
            self.note_fenced(&replicas);
        }
        let assigned = if fenced {
            Default::default()
        } else {
            self.cluster.assigned()
        };
        // Desired against actual, service by service in dependency order.
        let mut wanted = HashSet::new();
        let mut current = HashSet::new();
        for (d, spec) in &specs {
            for name in zlayer_spec::start_order(spec) {
                let Some(t) = self.current_template(spec, d, &name) else {
                    continue;
                };
                current.insert(t.key());
                let rollout = self.rollout_for(&t);
                let rollout_failed = rollout.state == RolloutState::Failed;
                let slots: Vec<u32> = assigned
                    .get(&format!("{}/{name}", spec.deployment))
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                let mut starts = Vec::new();
                for &idx in &slots {
                    let key = crate::state::key(&spec.deployment, &name, idx);
                    wanted.insert(key.clone());
                    let mut existing = replicas.get(&key).cloned();
                    if let Some(svc) = spec.services.get(&name) {
                        if svc.rtype == ResourceType::Cron {
                            existing = self
                                .make_way_for_next_run(svc, existing, &mut replicas)
                                .await;
                        }
                    }
                    match self.plan(spec, &t, idx, existing, &replicas, rollout_failed) {
                        Plan::Keep => {}
                        Plan::Record(r) => {
                            // Pending replicas are stored too, so `ps` shows them and why they wait.
                            let known = replicas.get(&key).map(|o| (o.state, o.message.clone()));
                            if known != Some((r.state, r.message.clone())) {
                                self.persist(self.store.put_replica(&r), &r);
                            }
                            replicas.insert(key, r);
                        }
                        Plan::Start(r) => {
                            // Inserted now so the next slot's IP allocation sees this one.
                            replicas.insert(key, r.clone());
                            starts.push(r);
                        }
                    }
                }
                starts.extend(
                    self.roll(&t, d, &slots, rollout, &mut replicas, &mut wanted)
                        .await,
                );
                // Replicas of one service start together; services start in dependency order.
                let launched =
                    futures::future::join_all(starts.into_iter().map(|r| self.launch(r))).await;
                for r in launched {
                    replicas.insert(r.key(), r);
                }
            }
        }
        self.overlapping_runs_wanted(&replicas, &mut wanted);
        // What runs of a spec this node cannot parse is neither planned nor stopped.
        wanted.extend(
            replicas
                .values()
                .filter(|r| refused.iter().any(|b| b.deployment == r.deployment))
                .map(|r| r.key()),
        );
        self.remove_unwanted(&mut replicas, &wanted).await;
        let recorded: HashSet<String> = replicas.values().map(|r| r.container_id.clone()).collect();
        for cid in self.launcher.unrecorded(&recorded) {
            tracing::warn!(container = %cid, "no replica record names this container; removing it");
            self.launcher.cleanup(&cid).await;
        }
        self.forget_templates(&specs, &replicas, current);
        self.check_health(&mut replicas).await;
        self.publish(&specs, &replicas).await;
        self.tend_volumes(&replicas).await;
        self.flush_usage().await;
    }

    /// Exits of running replicas, also those that exited while no agent ran.
    async fn observe_exits(&self, replicas: &mut BTreeMap<String, Replica>) {
        for r in replicas.values_mut() {
            if r.state != ReplicaState::Running {
                continue;
            }
            match self.launcher.status(&r.container_id) {
                Status::Running { .. } => {}
                Status::Exited(info) => {
                    self.meter(r, &info);
                    let kind = if info.oom_killed { "oom" } else { "exit" };
                    self.event(r, kind, format!("{} {}", r.container_id, info.describe()));
                    r.message = if r.health == Health::Unhealthy {
                        format!("{} as unhealthy ({})", info.describe(), r.message)
                    } else {
                        info.describe()
                    };
                    r.last_exit = Some(info);
                    self.finish(r).await;
                }
                Status::Lost => {
                    self.event(
                        r,
                        "lost",
                        format!("{} vanished (no shim, no exit record)", r.container_id),
                    );
                    r.message = "container lost".into();
                    self.finish(r).await;
                }
            }
        }
    }

    /// Stops (all at once) and forgets replicas no spec wants any more.
    async fn remove_unwanted(
        &self,
        replicas: &mut BTreeMap<String, Replica>,
        wanted: &HashSet<String>,
    ) {
        let unwanted: Vec<Replica> = replicas
            .values()
            .filter(|r| !wanted.contains(&r.key()))
            .cloned()
            .collect();
        futures::future::join_all(unwanted.iter().map(|r| self.retire(r))).await;
        for r in unwanted {
            self.event(&r, "removed", format!("replica {} removed", r.index));
            replicas.remove(&r.key());
        }
    }

    /// Takes a replica out of service discovery, lets the connections the
    /// node forwards to it finish (up to its stop grace), stops it with its
    /// own stop sequence, releases what it held and drops its record.
    pub(crate) async fn retire(&self, r: &Replica) {
        if r.state == ReplicaState::Running {
            let (sig, grace) = r.stop_params();
            self.unpublish(r, grace).await;
            self.launcher.stop(&r.container_id, sig, grace).await;
            self.meter_stopped(r);
            self.done_draining(&r.key());
        }
        self.launcher.cleanup(&r.container_id).await;
        self.persist(self.store.remove_replica(&r.key()), r);
    }

    /// Cleans up after an exit and schedules the restart (a cron run's next
    /// run is left for `plan_cron` to find).
    async fn finish(&self, r: &mut Replica) {
        self.launcher.cleanup(&r.container_id).await;
        r.state = ReplicaState::Exited;
        r.health = Health::None;
        let template = self.template_of(r);
        let rtype = template.as_ref().map(|t| t.service.rtype);
        let cron = rtype == Some(ResourceType::Cron);
        if let Some(t) = template.filter(|t| t.service.rtype == ResourceType::Job) {
            self.job_exited(r, &t.service);
        }
        let now = now_ms();
        r.restart_at_ms = if cron {
            0
        } else {
            now + backoff_ms(r.restarts)
        };
        let quick = r.started_ms > 0 && now.saturating_sub(r.started_ms) < QUICK_EXIT_MS;
        // Cron runs and job tasks end by design: only a service crash-loops.
        let service = !matches!(rtype, Some(ResourceType::Cron | ResourceType::Job));
        r.quick_exits = if quick && service {
            r.quick_exits + 1
        } else {
            0
        };
        if r.quick_exits == CRASH_LOOP_EXITS {
            self.event(
                r,
                "crash-loop",
                format!(
                    "exited {CRASH_LOOP_EXITS} times in a row within {} s of starting ({}); restarts back off, next in {} s",
                    QUICK_EXIT_MS / 1000,
                    r.message,
                    r.restart_at_ms.saturating_sub(now).div_ceil(1000)
                ),
            );
        }
        self.persist(self.store.put_replica(r), r);
    }

    /// Says why this node stops its replicas, when fencing begins.
    fn note_fenced(&self, replicas: &BTreeMap<String, Replica>) {
        tracing::warn!(
            "fenced: no quorum reached within the down timeout; stopping every replica here"
        );
        for r in replicas.values() {
            self.event(
                r,
                "fenced",
                "this node cannot reach a quorum of the cluster, so the leader runs this replica elsewhere; it stops here".into(),
            );
        }
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;

//! What one replica slot needs this round: keep it, record a state change
//! (waiting, and why), or start it with what it reserved. Restarts follow
//! the backoff, cron runs their schedule, `depends` its conditions.

use std::collections::BTreeMap;

use zlayer_spec::{Concurrency, OnTimeout, ResourceType, Service, Spec};

use crate::agent::Agent;
use crate::clock::now_ms;
use crate::state::{Replica, ReplicaState};
use crate::template::Template;

impl Agent {
    /// Decides what one replica slot needs this round. A slot whose replica
    /// still runs an older revision is left to the rollout (`roll`); one whose
    /// replica is not running simply starts afresh on the current revision,
    /// unless that revision's rollout failed, in which case it restarts on its
    /// own.
    pub(crate) fn plan(
        &self,
        spec: &Spec,
        t: &Template,
        idx: u32,
        existing: Option<Replica>,
        all: &BTreeMap<String, Replica>,
        rollout_failed: bool,
    ) -> Plan {
        let (name, svc) = (t.service_name.as_str(), &spec.services[&t.service_name]);
        if svc.rtype == ResourceType::Cron {
            return self.plan_cron(spec, t, idx, existing, all);
        }
        let now = now_ms();
        let job = svc.rtype == ResourceType::Job;
        if job {
            let workload = format!("{}/{name}", spec.deployment);
            if let Some(plan) = self.plan_ended_task(&workload, &t.revision, &existing) {
                return plan;
            }
        }
        let mut r = match existing {
            Some(r) if r.state == ReplicaState::Running => return Plan::Keep,
            // A replica that gave up or waits out a restart backoff is of no
            // use to anyone: a new revision replaces it at once.
            Some(r)
                if r.state != ReplicaState::Pending
                    && r.revision != t.revision
                    && !rollout_failed =>
            {
                if let Ok(mut since) = self.depends_since.lock() {
                    since.remove(&r.key());
                }
                Replica::new(&spec.deployment, name, idx, &t.revision)
            }
            Some(r) if r.state == ReplicaState::Failed => return Plan::Keep,
            Some(r) if r.state == ReplicaState::Exited => {
                if now < r.restart_at_ms {
                    return Plan::Keep;
                }
                let mut r = r;
                r.restarts += 1;
                r
            }
            // A retry waits out its backoff first (see `number_attempt`).
            Some(r) if r.state == ReplicaState::Pending && now < r.restart_at_ms => {
                return Plan::Keep;
            }
            Some(mut r) => {
                r.revision = t.revision.clone();
                r
            }
            // The slot's replacement is about to take it over (see `roll`).
            None if all.contains_key(&crate::state::surge_key(&spec.deployment, name, idx)) => {
                return Plan::Keep;
            }
            None => Replica::new(&spec.deployment, name, idx, &t.revision),
        };
        if job {
            if let Some(plan) = self.number_attempt(&mut r, &t.revision) {
                return plan;
            }
        }
        if let Some(why) = self.still_runs_elsewhere(&spec.deployment, name, idx) {
            r.message = why;
            return Plan::Record(r);
        }
        if let Err(why) =
            crate::depends::check(spec, name, all, || self.cluster.reported_elsewhere())
        {
            let since = match self.depends_since.lock() {
                Ok(mut m) => *m.entry(r.key()).or_insert(now),
                Err(_) => now,
            };
            let dep = svc.depends.iter().find(|d| why.contains(&d.service));
            match dep {
                Some(d)
                    if now - since > d.timeout.0.as_millis() as u64
                        && d.on_timeout == OnTimeout::Fail =>
                {
                    r.state = ReplicaState::Failed;
                    r.message = format!("gave up: {why}");
                    self.event(&r, "failed", r.message.clone());
                    self.persist(self.store.put_replica(&r), &r);
                    return Plan::Record(r);
                }
                Some(d) if now - since > d.timeout.0.as_millis() as u64 => {}
                _ => {
                    r.message = why;
                    return Plan::Record(r);
                }
            }
        }
        self.start_with_ip(r, svc, all)
    }

    /// Why a slot moved here must not start yet: a live node still reports
    /// it running, because it was placed there before (the scheduler moved
    /// it while that node was marked down, or drained it) and is stopping it
    /// now. A slot runs on one live node at a time; a node marked down is
    /// not waited for, since it fenced itself.
    fn still_runs_elsewhere(&self, deployment: &str, service: &str, idx: u32) -> Option<String> {
        let workload = format!("{deployment}/{service}");
        self.cluster
            .reported_elsewhere()
            .iter()
            .any(|o| {
                o.workload == workload
                    && o.replica == idx
                    && !o.surge
                    && o.state == ReplicaState::Running
            })
            .then(|| {
                format!(
                    "waiting for replica {idx} to stop on the node it ran on before it moved here"
                )
            })
    }

    /// A cron service has one slot. Its run starts at each fire time of the
    /// schedule; a fire time that passes while the previous run still runs
    /// is skipped (`concurrency: forbid`, the default; see `cron_overlap`
    /// for the others), and a failed run is not retried before the next
    /// fire time.
    fn plan_cron(
        &self,
        spec: &Spec,
        t: &Template,
        idx: u32,
        existing: Option<Replica>,
        all: &BTreeMap<String, Replica>,
    ) -> Plan {
        let now = now_ms();
        let mut r = match existing {
            Some(r) if r.state == ReplicaState::Running => return Plan::Keep,
            Some(r) => r,
            None => Replica::new(&spec.deployment, &t.service_name, idx, &t.revision),
        };
        r.revision = t.revision.clone();
        if r.restart_at_ms == 0 {
            let schedule = spec.services[&t.service_name]
                .schedule
                .clone()
                .unwrap_or_default();
            let last = r
                .last_exit
                .as_ref()
                .map(|e| format!("last run {}; ", e.describe()))
                .unwrap_or_default();
            match zlayer_spec::next_fire_ms(&schedule, now) {
                Some(next) => {
                    r.restart_at_ms = next;
                    r.message = format!("{last}next run at {}", zlayer_spec::format_utc(next));
                }
                None => r.message = format!("{last}the schedule `{schedule}` has no future run"),
            }
            return Plan::Record(r);
        }
        if now < r.restart_at_ms {
            return Plan::Keep;
        }
        r.due_ms = std::mem::take(&mut r.restart_at_ms);
        let svc = &spec.services[&t.service_name];
        // Under `allow` and `replace` the run remembers the next fire time:
        // if it still runs then, the next run starts anyway (`cron_overlap`).
        if svc.concurrency.unwrap_or_default() != Concurrency::Forbid {
            let schedule = svc.schedule.clone().unwrap_or_default();
            r.restart_at_ms = zlayer_spec::next_fire_ms(&schedule, now).unwrap_or(0);
        }
        self.start_with_ip(r, svc, all)
    }

    /// Starts the replica once it has an address and the GPUs it asks for;
    /// without them it waits, saying why.
    fn start_with_ip(
        &self,
        mut r: Replica,
        svc: &Service,
        all: &BTreeMap<String, Replica>,
    ) -> Plan {
        match self.reserve(&mut r, svc, all) {
            Ok(()) => Plan::Start(r),
            Err(e) => {
                r.message = e;
                Plan::Record(r)
            }
        }
    }
}

/// What one replica slot needs this round.
pub(crate) enum Plan {
    Keep,
    Record(Replica),
    Start(Replica),
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

//! A cron run still going when the schedule's next fire time comes, under
//! `concurrency: allow` (the run is moved aside, under a key of its own, and
//! the slot starts the new run beside it) or `replace` (the run is stopped
//! with its stop sequence, and the slot starts the new run). `forbid`, the
//! default, skips the fire time (`plan_cron`).

use std::collections::{BTreeMap, HashSet};

use zlayer_runtime::Status;
use zlayer_spec::{Concurrency, Service};

use crate::agent::Agent;
use crate::clock::now_ms;
use crate::state::{Health, Replica, ReplicaState};

impl Agent {
    /// The slot's record once an overdue run made way for the next one:
    /// `existing` unchanged unless a fire time came while it ran.
    pub(crate) async fn make_way_for_next_run(
        &self,
        svc: &Service,
        existing: Option<Replica>,
        replicas: &mut BTreeMap<String, Replica>,
    ) -> Option<Replica> {
        let r = existing?;
        let concurrency = svc.concurrency.unwrap_or_default();
        let due = r.restart_at_ms;
        if r.state != ReplicaState::Running
            || concurrency == Concurrency::Forbid
            || due == 0
            || now_ms() < due
        {
            return Some(r);
        }
        let at = zlayer_spec::format_utc(due);
        match concurrency {
            Concurrency::Allow => {
                let mut aside = r.clone();
                aside.overlap = r.due_ms.max(r.started_ms).max(1);
                aside.restart_at_ms = 0;
                aside.message = format!("still running; the run due at {at} started beside it");
                // Re-filed under its own key in one write: a crash leaves the
                // run either in its slot or aside, never in both or neither.
                self.persist(self.store.move_replica(&r.key(), &aside), &aside);
                self.event(
                    &aside,
                    "overlap",
                    format!("still running when the run due at {at} starts beside it"),
                );
                replicas.insert(aside.key(), aside);
                let mut next = Replica::new(&r.deployment, &r.service, r.index, &r.revision);
                next.restart_at_ms = due;
                Some(next)
            }
            Concurrency::Replace => {
                let mut r = r;
                let (sig, grace) = r.stop_params();
                self.unpublish(&r, grace).await;
                self.launcher.stop(&r.container_id, sig, grace).await;
                if let Status::Exited(info) = self.launcher.status(&r.container_id) {
                    self.meter(&r, &info);
                    r.last_exit = Some(info);
                }
                self.launcher.cleanup(&r.container_id).await;
                r.state = ReplicaState::Exited;
                r.health = Health::None;
                r.message = format!("replaced by the run due at {at}");
                self.event(&r, "replaced", r.message.clone());
                self.persist(self.store.put_replica(&r), &r);
                Some(r)
            }
            Concurrency::Forbid => Some(r),
        }
    }

    /// Runs moved aside stay wanted while they run and their slot is wanted here.
    pub(crate) fn overlapping_runs_wanted(
        &self,
        replicas: &BTreeMap<String, Replica>,
        wanted: &mut HashSet<String>,
    ) {
        let keep: Vec<String> = replicas
            .values()
            .filter(|r| r.overlap != 0 && r.state == ReplicaState::Running)
            .filter(|r| wanted.contains(&crate::state::key(&r.deployment, &r.service, r.index)))
            .map(|r| r.key())
            .collect();
        wanted.extend(keep);
    }
}

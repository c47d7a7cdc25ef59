//! Job tasks: a failed attempt with retries left waits for the leader to
//! place the next one (preferring another node), the last one allowed
//! gives up, and a task past its `deadline` is killed and fails for good.

use std::collections::BTreeMap;
use std::time::Duration;

use zlayer_model::FailedAttempt;
use zlayer_spec::{ResourceType, Service};

use crate::agent::Agent;
use crate::clock::{backoff_ms, now_ms};
use crate::planning::Plan;
use crate::state::{Health, Replica, ReplicaState};

impl Agent {
    /// After a job task's exit: success stays done; a failure either waits
    /// for its retry or, with none left, gives up.
    pub(crate) fn job_exited(&self, r: &mut Replica, svc: &Service) {
        let now = now_ms();
        let (ok, what, ran_ms) = match &r.last_exit {
            Some(e) => (
                e.status() == 0,
                e.describe(),
                e.finished_at_ms.saturating_sub(r.started_ms),
            ),
            None => (
                false,
                "container lost".to_string(),
                now.saturating_sub(r.started_ms),
            ),
        };
        r.failed_attempt = None;
        if ok {
            r.release_reservations();
            return;
        }
        let attempt = r.attempt.max(1);
        let allowed = svc.job_retries().saturating_add(1);
        if attempt >= allowed {
            r.state = ReplicaState::Failed;
            r.release_reservations();
            r.message = format!("gave up after {attempt} attempt(s): {what}");
            self.event(r, "failed", r.message.clone());
        } else {
            r.failed_attempt = Some(FailedAttempt { attempt, ran_ms });
            r.message = format!(
                "attempt {attempt} of {allowed} failed ({what}); the leader places attempt {}, on another node where one fits",
                attempt + 1
            );
        }
    }

    /// A job task whose last attempt ended: done when it succeeded, and
    /// waiting while the leader has not yet given it its next attempt.
    /// `None` lets the usual planning go on (the next attempt starts).
    pub(crate) fn plan_ended_task(
        &self,
        workload: &str,
        t_revision: &str,
        existing: &Option<Replica>,
    ) -> Option<Plan> {
        let r = existing.as_ref()?;
        if r.state != ReplicaState::Exited || r.revision != t_revision {
            return None;
        }
        let Some(failed) = &r.failed_attempt else {
            // Done; or a start that failed, which ran no attempt: the usual
            // planning starts it again after its backoff, as any replica's.
            return r.succeeded().then_some(Plan::Keep);
        };
        let given = self
            .cluster
            .task_attempt(workload, r.index, t_revision)
            .number;
        (given <= failed.attempt).then_some(Plan::Keep)
    }

    /// Numbers the attempt a job task's record is about to run, as the
    /// cluster gave it. A fresh record of a retry first waits out the
    /// backoff of the attempts before it (a task retried on the node it
    /// failed on already waited after its exit).
    pub(crate) fn number_attempt(&self, r: &mut Replica, revision: &str) -> Option<Plan> {
        let workload = format!("{}/{}", r.deployment, r.service);
        let given = self
            .cluster
            .task_attempt(&workload, r.index, revision)
            .number
            .max(1);
        let fresh = r.attempt == 0;
        r.attempt = given;
        r.failed_attempt = None;
        if !fresh || given == 1 {
            return None;
        }
        let wait = backoff_ms(given - 2);
        r.restarts = given - 1;
        r.restart_at_ms = now_ms() + wait;
        r.message = format!(
            "attempt {given}, after {} failed; starts in {wait} ms",
            given - 1
        );
        Some(Plan::Record(r.clone()))
    }

    /// Kills the job tasks that ran past their `deadline`, counted over
    /// all their attempts; they fail for good.
    pub(crate) async fn enforce_deadlines(&self, replicas: &mut BTreeMap<String, Replica>) {
        let now = now_ms();
        for r in replicas.values_mut() {
            if r.state != ReplicaState::Running {
                continue;
            }
            let Some(t) = self.template_of(r) else {
                continue;
            };
            let (ResourceType::Job, Some(deadline)) = (t.service.rtype, t.service.deadline) else {
                continue;
            };
            let workload = format!("{}/{}", r.deployment, r.service);
            let used = self
                .cluster
                .task_attempt(&workload, r.index, &r.revision)
                .used_ms;
            let ran = used + now.saturating_sub(r.started_ms);
            if ran <= deadline.0.as_millis() as u64 {
                continue;
            }
            self.launcher
                .stop(&r.container_id, libc::SIGKILL, Duration::ZERO)
                .await;
            self.meter_stopped(r);
            self.launcher.cleanup(&r.container_id).await;
            r.state = ReplicaState::Failed;
            r.health = Health::None;
            r.failed_attempt = None;
            r.release_reservations();
            r.message = format!(
                "gave up: the job's deadline of {deadline} passed (attempt {} killed after {} s in all)",
                r.attempt.max(1),
                ran / 1000
            );
            self.event(r, "deadline", r.message.clone());
            self.persist(self.store.put_replica(r), r);
        }
    }
}

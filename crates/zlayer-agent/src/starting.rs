//! Starting a planned replica through the launcher and recording how it
//! went: running with its stop sequence, or exited with a backoff.

use crate::agent::Agent;
use crate::clock::{backoff_ms, now_ms};
use crate::launcher::StartRequest;
use crate::state::{Health, Replica, ReplicaState};

impl Agent {
    /// Starts a planned replica (its IP already reserved) from its revision's
    /// template and records the outcome.
    pub(crate) async fn launch(&self, mut r: Replica) -> Replica {
        let Some(t) = self.template_of(&r) else {
            r.state = ReplicaState::Exited;
            r.ip = None;
            r.message = format!("revision {} is no longer known", r.revision);
            r.restart_at_ms = now_ms() + backoff_ms(r.restarts);
            self.persist(self.store.put_replica(&r), &r);
            return r;
        };
        let ip = r.ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        let req = StartRequest {
            template: t.clone(),
            index: r.index,
            ip,
            gpus: r.gpus.clone(),
        };
        match self.launcher.start(req).await {
            Ok(container_id) => {
                let svc = &t.service;
                r.container_id = container_id;
                r.ip = Some(ip);
                r.state = ReplicaState::Running;
                r.health = if svc.health.is_some() {
                    Health::Starting
                } else {
                    Health::None
                };
                r.started_ms = now_ms();
                r.failed_checks = 0;
                r.stop_signal = svc
                    .stop
                    .signal
                    .as_deref()
                    .and_then(zlayer_runtime::signal_number);
                r.stop_grace_ms = svc.stop.grace.0.as_millis() as u64;
                r.message.clear();
                let due = match std::mem::take(&mut r.due_ms) {
                    0 => String::new(),
                    ms => format!(" (the run due at {})", zlayer_spec::format_utc(ms)),
                };
                self.event(
                    &r,
                    "started",
                    format!("{} started at {ip}{due}", r.container_id),
                );
            }
            Err(e) => {
                r.state = ReplicaState::Exited;
                r.ip = None;
                r.message = format!("start failed: {e}");
                r.restart_at_ms = now_ms() + backoff_ms(r.restarts);
                self.event(&r, "start-failed", e);
            }
        }
        self.persist(self.store.put_replica(&r), &r);
        r
    }
}

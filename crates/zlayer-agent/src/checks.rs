//! Running due probes and acting on their results. A service's `health` is
//! both probes at once: `retries` failures in a row mark the replica
//! unhealthy and kill it, so the restart path (or a rollout) takes over.
//! Split, `readiness` only moves the replica in and out of traffic
//! (unhealthy after `retries` failures, healthy again on a pass, never
//! killed), and `liveness` only kills it after `retries` failures. As with
//! Docker's `start_period`, probes run during `start_grace` and failures
//! inside it are not counted; a readiness pass makes the replica healthy
//! at once.

use std::collections::BTreeMap;

use zlayer_spec::{Health as Probe, Service};

use crate::agent::Agent;
use crate::clock::now_ms;
use crate::state::{Health, Replica, ReplicaState};

const FAILED: &str = "health check failed";
const NOT_READY: &str = "readiness check failed";
const NOT_LIVE: &str = "liveness check failed";

/// What a probe decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// `health`: traffic and restarts.
    Both,
    Readiness,
    Liveness,
}

impl Role {
    fn tag(self) -> &'static str {
        match self {
            Role::Both => "health",
            Role::Readiness => "readiness",
            Role::Liveness => "liveness",
        }
    }
}

/// The probes a service runs, each with what it decides.
fn probes(svc: &Service) -> Vec<(Role, &Probe)> {
    if svc.readiness.is_none() && svc.liveness.is_none() {
        return svc.health.iter().map(|h| (Role::Both, h)).collect();
    }
    let mut out = Vec::new();
    out.extend(svc.readiness_probe().map(|h| (Role::Readiness, h)));
    out.extend(svc.liveness_probe().map(|h| (Role::Liveness, h)));
    out
}

impl Agent {
    pub(crate) async fn check_health(&self, replicas: &mut BTreeMap<String, Replica>) {
        let now = now_ms();
        let mut running = Vec::new();
        for r in replicas.values() {
            let Some(t) = self.template_of(r) else {
                continue;
            };
            let (Some(ip), ReplicaState::Running) = (r.ip, r.state) else {
                continue;
            };
            for (role, h) in probes(&t.service) {
                let interval = match (r.health, h.start_interval) {
                    (Health::Starting, Some(start)) => start.0.as_millis() as u64,
                    _ => h.interval.0.as_millis() as u64,
                };
                let due_key = format!("{}#{}", r.key(), role.tag());
                if now.saturating_sub(self.last_probe(&due_key)) < interval {
                    continue;
                }
                self.set_last_probe(&due_key, now);
                let (check, timeout, exe, data, cid, key) = (
                    h.check.clone(),
                    h.timeout.0,
                    self.paths.exe.clone(),
                    self.paths.data_dir.clone(),
                    r.container_id.clone(),
                    r.key(),
                );
                let (grace, retries) = (h.start_grace.0.as_millis() as u64, h.retries);
                running.push(tokio::spawn(async move {
                    let result = crate::health::probe(&check, ip, timeout, &exe, &data, &cid).await;
                    (key, role, grace, retries, result)
                }));
            }
        }
        for probe in running {
            let Ok((key, role, grace, retries, result)) = probe.await else {
                continue;
            };
            let Some(r) = replicas.get_mut(&key) else {
                continue;
            };
            // A replica killed by an earlier result of this round waits for its exit.
            if r.state != ReplicaState::Running {
                continue;
            }
            let in_grace = now_ms().saturating_sub(r.started_ms) < grace;
            let counted = match role {
                Role::Both | Role::Readiness if r.health == Health::Starting && in_grace => None,
                Role::Liveness if in_grace => None,
                _ => Some(retries),
            };
            self.record_probe(r, role, result, counted);
        }
    }

    /// `retries` is `None` inside the start grace, where failures do not count.
    fn record_probe(
        &self,
        r: &mut Replica,
        role: Role,
        result: Result<(), String>,
        retries: Option<i64>,
    ) {
        let before = r.health;
        let failed = match role {
            Role::Both => FAILED,
            Role::Readiness => NOT_READY,
            Role::Liveness => NOT_LIVE,
        };
        let mut kill = false;
        match (result, retries) {
            (Ok(()), _) => {
                if role == Role::Liveness {
                    r.live_failures = 0;
                } else {
                    r.failed_checks = 0;
                    r.health = Health::Healthy;
                }
                if r.message.starts_with(failed) {
                    r.message.clear();
                }
            }
            (Err(e), None) => r.message = format!("{failed}: {e} (in start grace)"),
            (Err(e), Some(retries)) => {
                r.message = format!("{failed}: {e}");
                if role == Role::Liveness {
                    r.live_failures += 1;
                    kill = r.live_failures as i64 >= retries;
                } else {
                    r.failed_checks += 1;
                    if r.failed_checks as i64 >= retries {
                        r.health = Health::Unhealthy;
                        kill = role == Role::Both;
                    }
                }
            }
        }
        if before != r.health {
            self.event(
                r,
                "health",
                format!("{} -> {}", before.as_str(), r.health.as_str()),
            );
        }
        if kill {
            let why = match role {
                Role::Liveness => "liveness check failed",
                _ => "unhealthy",
            };
            self.event(r, "restart", format!("{why}: restarting"));
            self.launcher.signal(&r.container_id, libc::SIGKILL);
        }
        self.persist(self.store.put_replica(r), r);
    }

    fn last_probe(&self, key: &str) -> u64 {
        self.last_probe
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .unwrap_or(0)
    }

    fn set_last_probe(&self, key: &str, t: u64) {
        if let Ok(mut m) = self.last_probe.lock() {
            m.insert(key.to_string(), t);
        }
    }
}

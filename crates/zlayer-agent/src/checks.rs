//! Running due health probes and acting on their results: a replica that
//! fails `retries` probes in a row is marked unhealthy and killed, so the
//! restart path (or a rollout) takes over. As with Docker's `start_period`,
//! probes run during `start_grace` and a pass makes the replica healthy at
//! once, but failures inside the grace are not counted.

use std::collections::BTreeMap;

use crate::agent::Agent;
use crate::clock::now_ms;
use crate::state::{Health, Replica, ReplicaState};

const FAILED: &str = "health check failed";

impl Agent {
    pub(crate) async fn check_health(&self, replicas: &mut BTreeMap<String, Replica>) {
        let now = now_ms();
        let mut probes = Vec::new();
        for r in replicas.values() {
            let Some(t) = self.template_of(r) else {
                continue;
            };
            let (Some(h), Some(ip), ReplicaState::Running) = (&t.service.health, r.ip, r.state)
            else {
                continue;
            };
            let interval = match (r.health, h.start_interval) {
                (Health::Starting, Some(start)) => start.0.as_millis() as u64,
                _ => h.interval.0.as_millis() as u64,
            };
            if now.saturating_sub(self.last_probe(&r.key())) < interval {
                continue;
            }
            self.set_last_probe(&r.key(), now);
            let (check, timeout, exe, data, cid, key) = (
                h.check.clone(),
                h.timeout.0,
                self.paths.exe.clone(),
                self.paths.data_dir.clone(),
                r.container_id.clone(),
                r.key(),
            );
            probes.push(tokio::spawn(async move {
                let result = crate::health::probe(&check, ip, timeout, &exe, &data, &cid).await;
                (key, result)
            }));
        }
        for probe in probes {
            let Ok((key, result)) = probe.await else {
                continue;
            };
            let Some(r) = replicas.get_mut(&key) else {
                continue;
            };
            let Some(h) = self.template_of(r).and_then(|t| t.service.health.clone()) else {
                continue;
            };
            let in_grace = r.health == Health::Starting
                && now_ms().saturating_sub(r.started_ms) < h.start_grace.0.as_millis() as u64;
            self.record_probe(r, result, if in_grace { None } else { Some(h.retries) });
        }
    }

    /// `retries` is `None` inside the start grace, where failures do not count.
    fn record_probe(&self, r: &mut Replica, result: Result<(), String>, retries: Option<i64>) {
        let before = r.health;
        match (result, retries) {
            (Ok(()), _) => {
                r.failed_checks = 0;
                r.health = Health::Healthy;
                if r.message.starts_with(FAILED) {
                    r.message.clear();
                }
            }
            (Err(e), None) => r.message = format!("{FAILED}: {e} (in start grace)"),
            (Err(e), Some(retries)) => {
                r.failed_checks += 1;
                r.message = format!("{FAILED}: {e}");
                if r.failed_checks as i64 >= retries {
                    r.health = Health::Unhealthy;
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
        if r.health == Health::Unhealthy {
            self.event(r, "restart", "unhealthy: restarting".into());
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

//! What this node reports about itself: its replicas and rollouts as typed
//! reports, its events, and where a replica's files are for `exec`/`logs`.

use zlayer_api::{Event, ReplicaLocation};
use zlayer_model::{ReplicaReport, RolloutReport};

use crate::agent::{Agent, SpecError};
use crate::state::ReplicaState;

impl Agent {
    /// This node's replicas as they are now.
    pub fn local_reports(&self) -> Vec<ReplicaReport> {
        self.store
            .replicas()
            .into_iter()
            .map(|r| (self.is_draining(&r.key()), r))
            .map(|(draining, r)| (draining, r.succeeded(), r))
            .map(|(draining, succeeded, r)| ReplicaReport {
                workload: format!("{}/{}", r.deployment, r.service),
                replica: r.index,
                surge: r.surge,
                state: r.state,
                health: r.health,
                oom_killed: r.last_exit.as_ref().is_some_and(|e| e.oom_killed),
                crash_loop: r.in_crash_loop(),
                restarts: r.restarts,
                ip: r.ip,
                revision: r.revision,
                message: r.message,
                created_ms: r.created_ms,
                started_ms: r.started_ms,
                draining,
                container_id: r.container_id,
                succeeded,
                failed_attempt: r.failed_attempt,
            })
            .collect()
    }

    /// This node's rollouts, one per service.
    pub fn local_rollout_reports(&self) -> Vec<RolloutReport> {
        self.store
            .rollouts()
            .into_iter()
            .map(|r| RolloutReport {
                workload: format!("{}/{}", r.deployment, r.service),
                revision: r.revision,
                state: r.state,
                message: r.message,
                started_ms: r.started_ms,
            })
            .collect()
    }

    /// Committed specs this node's parser refuses, for `ps` to show.
    pub fn spec_errors(&self) -> Vec<SpecError> {
        self.spec_errors
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The node's name in the cluster.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// State-store writes that failed since the agent started.
    pub fn store_errors(&self) -> u64 {
        self.store_errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A command run in one of this node's containers, as a child process.
    pub fn exec_child(&self, container_id: &str, args: &[String]) -> tokio::process::Command {
        crate::health::exec_child(&self.paths.exe, &self.paths.data_dir, container_id, args)
    }

    pub fn locate(&self, target: &str) -> Result<Vec<ReplicaLocation>, String> {
        let (svc, idx) = match target.split_once('/') {
            Some((s, i)) => (
                s,
                Some(
                    i.parse::<u32>()
                        .map_err(|_| format!("`{target}`: write SERVICE or SERVICE/N"))?,
                ),
            ),
            None => (target, None),
        };
        let out: Vec<ReplicaLocation> = self
            .store
            .replicas()
            .into_iter()
            .filter(|r| r.service == svc && idx.is_none_or(|i| i == r.index))
            .map(|r| ReplicaLocation {
                service: r.service.clone(),
                replica: r.index,
                runtime_root: self.paths.data_dir.join("runtime").display().to_string(),
                log_path: self
                    .paths
                    .log_path(&r.deployment, &r.service, r.index)
                    .display()
                    .to_string(),
                container_id: if r.state == ReplicaState::Running {
                    r.container_id
                } else {
                    String::new()
                },
            })
            .collect();
        if out.is_empty() {
            return Err(format!("no replica matches `{target}` (see `zlayer ps`)"));
        }
        Ok(out)
    }
}

//! A replica's lifecycle state and health, and the report its node sends.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Where a replica is in its lifecycle on its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Not started yet: waiting for an address, GPUs, a dependency or a turn.
    Pending,
    Running,
    /// Exited; restarts after its backoff unless its policy says otherwise.
    Exited,
    /// Gave up: its restart policy allows no more starts.
    Failed,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Pending => "pending",
            ReplicaState::Running => "running",
            ReplicaState::Exited => "exited",
            ReplicaState::Failed => "failed",
        }
    }
}

/// What the replica's health check last said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// The service has no health check.
    None,
    /// Checked, but not passed yet since the start.
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::None => "none",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One replica as its node observed it. Heartbeats carry these only when
/// one changed, so nothing in here may move on its own: times are the
/// instants things happened, never ages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// `deployment/service`.
    pub workload: String,
    pub replica: u32,
    /// A replacement started by a rollout beside the old replica of its slot.
    #[serde(default)]
    pub surge: bool,
    pub state: ReplicaState,
    pub health: Health,
    /// Its last exit was the kernel's OOM killer.
    #[serde(default)]
    pub oom_killed: bool,
    /// Exited soon after starting, again and again: waiting out a backoff.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crash_loop: bool,
    pub restarts: u32,
    pub ip: Option<Ipv4Addr>,
    /// The revision (template hash) it runs.
    pub revision: String,
    pub message: String,
    /// When its record was made (the node's clock).
    pub created_ms: u64,
    /// When its current container started; 0 before the first start.
    pub started_ms: u64,
    #[serde(default)]
    pub container_id: String,
    /// Being stopped: out of every route and port, finishing what it serves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// Its last run exited 0 and it waits to run no more: a job task done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub succeeded: bool,
    /// A job task whose attempt failed with retries left: the leader places
    /// the next attempt, preferring another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempt: Option<FailedAttempt>,
}

/// A job task's failed attempt, as its node reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAttempt {
    pub attempt: u32,
    /// How long it ran, on the node's clock (a duration, so clocks never meet).
    pub ran_ms: u64,
}

impl ReplicaReport {
    /// A report with nothing to say beyond its slot, state, health and
    /// revision: no restarts, address, message or container yet.
    pub fn new(
        workload: &str,
        replica: u32,
        state: ReplicaState,
        health: Health,
        revision: &str,
    ) -> ReplicaReport {
        ReplicaReport {
            workload: workload.to_string(),
            replica,
            surge: false,
            state,
            health,
            oom_killed: false,
            crash_loop: false,
            restarts: 0,
            ip: None,
            revision: revision.to_string(),
            message: String::new(),
            created_ms: 0,
            started_ms: 0,
            container_id: String::new(),
            draining: false,
            succeeded: false,
            failed_attempt: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.state == ReplicaState::Running
    }

    /// A job task's last attempt ended for good: it succeeded, or it gave up.
    pub fn task_done(&self) -> bool {
        self.state == ReplicaState::Failed || self.succeeded
    }

    /// Running, not failing a check and not draining: a service without a
    /// check serves as soon as it runs.
    pub fn is_serving(&self) -> bool {
        self.is_running() && !self.draining && matches!(self.health, Health::Healthy | Health::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_keep_the_names_stored_records_use() {
        // Agents' sled records and earlier Raft entries hold these spellings.
        assert_eq!(
            serde_json::to_string(&ReplicaState::Running).unwrap(),
            "\"Running\""
        );
        assert_eq!(serde_json::to_string(&Health::None).unwrap(), "\"None\"");
    }

    #[test]
    fn serving_needs_running_and_no_failing_check() {
        let mut r = ReplicaReport::new("d/s", 0, ReplicaState::Running, Health::Starting, "r");
        assert!(!r.is_serving());
        r.health = Health::None;
        assert!(r.is_serving());
        r.state = ReplicaState::Exited;
        assert!(!r.is_serving());
    }
}

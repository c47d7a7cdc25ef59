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

    /// What names the report among its node's: (workload, replica, surge).
    pub fn slot(&self) -> (&str, u32, bool) {
        (self.workload.as_str(), self.replica, self.surge)
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

/// What changed in a node's replica reports since its last committed
/// heartbeat: a heartbeat carries these instead of the whole list, so a
/// node with thousands of finished job tasks writes only what moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportChanges {
    /// Reports new or changed.
    pub set: Vec<ReplicaReport>,
    /// Slots reported no more: (workload, replica, surge).
    pub gone: Vec<(String, u32, bool)>,
}

fn slot_of(r: &ReplicaReport) -> (&str, u32, bool) {
    r.slot()
}

impl ReportChanges {
    /// From `before` to `after`.
    pub fn between(before: &[ReplicaReport], after: &[ReplicaReport]) -> ReportChanges {
        let old: std::collections::HashMap<_, _> = before.iter().map(|r| (slot_of(r), r)).collect();
        let new: std::collections::HashSet<_> = after.iter().map(slot_of).collect();
        ReportChanges {
            set: after
                .iter()
                .filter(|r| old.get(&slot_of(r)) != Some(r))
                .cloned()
                .collect(),
            gone: before
                .iter()
                .filter(|r| !new.contains(&slot_of(r)))
                .map(|r| (r.workload.clone(), r.replica, r.surge))
                .collect(),
        }
    }

    /// Every slot they set or remove.
    pub fn slots(&self) -> impl Iterator<Item = (&str, u32, bool)> {
        self.set
            .iter()
            .map(slot_of)
            .chain(self.gone.iter().map(|(w, i, s)| (w.as_str(), *i, *s)))
    }

    pub fn len(&self) -> usize {
        self.set.len() + self.gone.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies them to `list`; true if it changed.
    pub fn apply_to(&self, list: &mut Vec<ReplicaReport>) -> bool {
        let before = list.len();
        list.retain(|r| {
            !self
                .gone
                .iter()
                .any(|(w, i, s)| (w.as_str(), *i, *s) == slot_of(r))
        });
        let mut changed = list.len() != before;
        for r in &self.set {
            match list.iter_mut().find(|x| slot_of(x) == slot_of(r)) {
                Some(x) if x == r => {}
                Some(x) => {
                    *x = r.clone();
                    changed = true;
                }
                None => {
                    list.push(r.clone());
                    changed = true;
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod changes_tests {
    use super::*;

    fn rep(w: &str, i: u32, state: ReplicaState) -> ReplicaReport {
        ReplicaReport::new(w, i, state, Health::None, "r1")
    }

    #[test]
    fn changes_carry_only_what_moved_and_rebuild_the_list() {
        let before = vec![
            rep("d/a", 1, ReplicaState::Running),
            rep("d/a", 2, ReplicaState::Running),
            rep("d/b", 1, ReplicaState::Exited),
        ];
        let after = vec![
            rep("d/a", 1, ReplicaState::Running),
            rep("d/a", 2, ReplicaState::Exited),
            rep("d/c", 1, ReplicaState::Pending),
        ];
        let ch = ReportChanges::between(&before, &after);
        assert_eq!(ch.set.len(), 2);
        assert_eq!(ch.gone, [("d/b".to_string(), 1, false)]);
        let mut list = before.clone();
        assert!(ch.apply_to(&mut list));
        let key = |l: &[ReplicaReport]| {
            let mut k: Vec<_> = l
                .iter()
                .map(|r| (r.workload.clone(), r.replica, r.state))
                .collect();
            k.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            k
        };
        assert_eq!(key(&list), key(&after));
        assert!(!ch.apply_to(&mut list), "applied twice changes nothing");
    }
}

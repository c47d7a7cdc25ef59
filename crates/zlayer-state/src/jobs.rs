//! Job tasks' failed attempts in the cluster state. A task (one slot of an
//! `rtype: job` service) that fails with retries left reports it; the
//! leader records the failure here, and its next scheduling pass moves the
//! task to a new assignment running the next attempt, preferring a node it
//! has not failed on. Records belong to one revision of the job: a new
//! revision starts its tasks from attempt 1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One task's attempts so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAttempts {
    /// The job's revision (template hash) the attempts ran.
    pub revision: String,
    /// The attempt due next, from 2 up.
    pub attempt: u32,
    /// The nodes the failed attempts ran on, oldest first.
    pub failed_on: Vec<String>,
    /// The generation of the assignment the last failure happened on: while
    /// it is still the task's assignment, the leader moves the task.
    pub failed_generation: u64,
    /// How long the failed attempts ran, together (for `deadline`).
    pub used_ms: u64,
}

/// A failed attempt the leader records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// `deployment/service`.
    pub workload: String,
    pub replica: u32,
    pub revision: String,
    pub attempt: u32,
    pub node: String,
    pub generation: u64,
    pub ran_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsState {
    /// By [`task_key`].
    pub tasks: BTreeMap<String, TaskAttempts>,
}

pub fn task_key(workload: &str, replica: u32) -> String {
    format!("{workload}#{replica}")
}

impl JobsState {
    /// The attempts recorded for a task of `revision`.
    pub fn task(&self, workload: &str, replica: u32, revision: &str) -> Option<&TaskAttempts> {
        self.tasks
            .get(&task_key(workload, replica))
            .filter(|t| t.revision == revision)
    }

    /// Whether `f` is news: the failure of the attempt the record expects.
    pub fn is_new(&self, f: &TaskFailure) -> bool {
        match self.task(&f.workload, f.replica, &f.revision) {
            Some(t) => t.attempt == f.attempt,
            None => f.attempt == 1,
        }
    }

    /// Records a failure; one already recorded, or of an attempt the
    /// record has moved past, changes nothing. Returns whether it changed.
    pub fn record(&mut self, f: TaskFailure) -> bool {
        if !self.is_new(&f) {
            return false;
        }
        let key = task_key(&f.workload, f.replica);
        let t = self.tasks.entry(key).or_insert_with(|| TaskAttempts {
            revision: f.revision.clone(),
            attempt: 1,
            failed_on: Vec::new(),
            failed_generation: 0,
            used_ms: 0,
        });
        if t.revision != f.revision {
            *t = TaskAttempts {
                revision: f.revision.clone(),
                attempt: 1,
                failed_on: Vec::new(),
                failed_generation: 0,
                used_ms: 0,
            };
        }
        t.attempt = f.attempt + 1;
        t.failed_on.push(f.node);
        t.failed_generation = f.generation;
        t.used_ms = t.used_ms.saturating_add(f.ran_ms);
        true
    }

    /// Forgets the tasks of a removed deployment. Returns whether any went.
    pub fn forget_deployment(&mut self, deployment: &str) -> bool {
        let prefix = format!("{deployment}/");
        let before = self.tasks.len();
        self.tasks.retain(|k, _| !k.starts_with(&prefix));
        self.tasks.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(attempt: u32, node: &str, generation: u64, revision: &str) -> TaskFailure {
        TaskFailure {
            workload: "batch/crunch".into(),
            replica: 1,
            revision: revision.into(),
            attempt,
            node: node.into(),
            generation,
            ran_ms: 100,
        }
    }

    #[test]
    fn each_failure_counts_once_and_in_order() {
        let mut jobs = JobsState::default();
        assert!(
            !jobs.record(failure(2, "n1", 5, "r1")),
            "attempt 2 before 1"
        );
        assert!(jobs.record(failure(1, "n1", 5, "r1")));
        assert!(
            !jobs.record(failure(1, "n1", 5, "r1")),
            "the same report twice"
        );
        assert!(jobs.record(failure(2, "n2", 9, "r1")));
        let t = jobs.task("batch/crunch", 1, "r1").expect("recorded");
        assert_eq!(
            (
                t.attempt,
                t.failed_on.clone(),
                t.failed_generation,
                t.used_ms
            ),
            (3, vec!["n1".to_string(), "n2".to_string()], 9, 200)
        );
    }

    #[test]
    fn a_new_revision_starts_from_attempt_one() {
        let mut jobs = JobsState::default();
        assert!(jobs.record(failure(1, "n1", 5, "r1")));
        assert!(jobs.record(failure(2, "n2", 6, "r1")));
        assert!(jobs.task("batch/crunch", 1, "r2").is_none());
        assert!(!jobs.record(failure(3, "n1", 7, "r2")));
        assert!(jobs.record(failure(1, "n1", 7, "r2")));
        let t = jobs.task("batch/crunch", 1, "r2").expect("recorded");
        assert_eq!((t.attempt, t.failed_on.len(), t.used_ms), (2, 1, 100));
        assert!(jobs.forget_deployment("batch"));
        assert!(jobs.tasks.is_empty());
    }
}

//! The leader's side of job retries: which reported failures are news, and
//! the retries placement owes each job's tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use zlayer_model::NodeState;
use zlayer_scheduler::TaskRetry;
use zlayer_state::jobs::TaskFailure;
use zlayer_state::ClusterState;

/// Failed attempts that live nodes report for the tasks assigned to them
/// and that the cluster has not recorded yet.
pub(crate) fn new_failures(s: &ClusterState) -> Vec<TaskFailure> {
    let assigned: HashMap<(&str, u32), &zlayer_model::Assignment> = s
        .assignments
        .values()
        .map(|a| ((a.workload.as_str(), a.replica), a))
        .collect();
    let mut out = Vec::new();
    for n in s.nodes.values().filter(|n| n.state != NodeState::Down) {
        for r in &n.replica_reports {
            let Some(f) = &r.failed_attempt else {
                continue;
            };
            // Only the node the task is assigned to speaks for it.
            let Some(a) = assigned
                .get(&(r.workload.as_str(), r.replica))
                .filter(|a| a.node == n.name)
            else {
                continue;
            };
            let failure = TaskFailure {
                workload: r.workload.clone(),
                replica: r.replica,
                revision: r.revision.clone(),
                attempt: f.attempt,
                node: n.name.clone(),
                generation: a.generation,
                ran_ms: f.ran_ms,
            };
            if s.jobs.is_new(&failure) {
                out.push(failure);
            }
        }
    }
    out
}

/// The retries of `workload`'s tasks, by replica.
pub(crate) fn retries_of(s: &ClusterState, workload: &str) -> BTreeMap<u32, TaskRetry> {
    let prefix = format!("{workload}#");
    s.jobs
        .tasks
        .iter()
        .filter_map(|(k, t)| {
            let replica = k.strip_prefix(&prefix)?.parse().ok()?;
            Some((
                replica,
                TaskRetry {
                    attempt: t.attempt,
                    avoid: t.failed_on.clone(),
                    failed_generation: t.failed_generation,
                },
            ))
        })
        .collect()
}

/// The tasks of `workload` a node reports done: succeeded, or failed for
/// good. A down node's last report counts, so its finished tasks are not
/// run again elsewhere.
pub(crate) fn finished_tasks(s: &ClusterState, workload: &str) -> BTreeSet<u32> {
    s.nodes
        .values()
        .flat_map(|n| &n.replica_reports)
        .filter(|r| r.workload == workload && !r.surge && r.task_done())
        .map(|r| r.replica)
        .collect()
}

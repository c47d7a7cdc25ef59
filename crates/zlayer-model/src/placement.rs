//! Which node runs which replica slot.

use serde::{Deserialize, Serialize};

/// Replica `replica` of `workload` runs on `node`. The generation grows with
/// every new assignment; an agent stops a container whose generation is no
/// longer the assignment's (fencing after a partition).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// `deployment/service`.
    pub workload: String,
    pub replica: u32,
    pub node: String,
    pub generation: u64,
    /// A job task's attempt this assignment runs (1 for the first); 0 in
    /// records from before retries were placed, meaning 1.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Assignment {
    /// The attempt it runs, counting from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt.max(1)
    }
}

/// `deployment/service` split in two; a name without `/` is a deployment.
pub fn split_workload(workload: &str) -> (&str, &str) {
    workload.split_once('/').unwrap_or((workload, ""))
}

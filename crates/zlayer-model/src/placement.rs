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
}

/// `deployment/service` split in two; a name without `/` is a deployment.
pub fn split_workload(workload: &str) -> (&str, &str) {
    workload.split_once('/').unwrap_or((workload, ""))
}

//! Replicas and rollouts across the cluster, as any member knows them.

use serde::{Deserialize, Serialize};

use crate::{ReplicaReport, RolloutReport};

/// A replica slot somewhere in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterReplica {
    /// As `node` last reported it. `node_down`: the node missed its
    /// heartbeats, so nothing vouches for the report now.
    Reported {
        node: String,
        node_down: bool,
        report: ReplicaReport,
    },
    /// Placed on `node`, which has not reported it yet.
    Assigned {
        node: String,
        workload: String,
        replica: u32,
    },
    /// No node can take it, and why.
    Pending {
        workload: String,
        replica: u32,
        reason: String,
    },
}

/// A rollout on another node, as that node last reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRollout {
    pub node: String,
    pub report: RolloutReport,
}

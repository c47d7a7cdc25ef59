//! What `node ls` and `token ls` list, as the control plane knows it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{NodeHealth, NodeState, Resources};

/// A node's place in Raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRole {
    Leader,
    Voter,
    Learner,
    /// Recorded, but not (yet) a Raft member.
    Outside,
}

/// What a node may do in the cluster, fixed by the token it joined with.
/// A manager can become a voter, holds the CA key, and may commit any
/// write; a worker runs work and speaks only for itself (its heartbeats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRole {
    /// Records from before roles existed were all managers.
    #[default]
    Manager,
    Worker,
}

impl ClusterRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterRole::Manager => "manager",
            ClusterRole::Worker => "worker",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub id: u64,
    pub name: String,
    /// `ip:port` of its mTLS endpoint.
    pub addr: String,
    pub role: NodeRole,
    #[serde(default)]
    pub cluster_role: ClusterRole,
    pub state: NodeState,
    pub capacity: Resources,
    /// Capacity less what its assigned replicas request.
    pub free: Resources,
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since it was last heard.
    pub since_heard_ms: u64,
    /// Replica slots assigned to it.
    pub replicas: usize,
    pub health: NodeHealth,
    /// Its container subnet and WireGuard identity.
    #[serde(default)]
    pub network: crate::NodeNetwork,
}

/// Whether a token would be accepted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenStatus {
    Valid,
    Expired,
    Revoked,
    UsedUp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSummary {
    pub id: String,
    pub expires_ms: u64,
    /// Joins it allows; `None` is unlimited until it expires.
    pub uses: Option<u32>,
    pub used: u32,
    /// An API token for a remote CLI, not a join token.
    pub api: bool,
    /// The role a join token admits (managers for API tokens: unused).
    #[serde(default)]
    pub role: ClusterRole,
    pub status: TokenStatus,
}

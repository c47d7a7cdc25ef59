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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub id: u64,
    pub name: String,
    /// `ip:port` of its mTLS endpoint.
    pub addr: String,
    pub role: NodeRole,
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
    pub status: TokenStatus,
}

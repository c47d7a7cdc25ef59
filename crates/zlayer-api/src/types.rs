//! Wire types shared by the node and the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// File name, for error messages.
    pub file: String,
    /// The spec text as written.
    pub text: String,
    /// Values for `$E:` references, from the caller's environment.
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub deployment: String,
    pub services: Vec<String>,
    pub changed: bool,
    /// Each service's current revision: `up -d` waits for these rollouts.
    #[serde(default)]
    pub revisions: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaView {
    pub deployment: String,
    pub service: String,
    pub replica: u32,
    pub node: String,
    pub state: String,
    pub health: String,
    pub restarts: u32,
    pub ip: String,
    pub age_secs: u64,
    pub container_id: String,
    pub message: String,
    /// The revision (template hash) the replica runs.
    #[serde(default)]
    pub revision: String,
    /// A replacement started by a rollout beside the old replica of its slot.
    #[serde(default)]
    pub surge: bool,
}

/// A service's progress towards its current revision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutView {
    pub deployment: String,
    pub service: String,
    pub revision: String,
    /// `rolling`, `done` or `failed`.
    pub state: String,
    pub message: String,
    pub age_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub time_ms: u64,
    pub deployment: String,
    pub service: String,
    pub replica: u32,
    pub kind: String,
    pub message: String,
}

/// Where a replica lives on disk, for exec and logs done by the CLI itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaLocation {
    pub service: String,
    pub replica: u32,
    pub container_id: String,
    pub runtime_root: String,
    pub log_path: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Every request the node understands, after parsing.
#[derive(Debug)]
pub enum Request {
    Apply(ApplyRequest),
    Down(String),
    Ps,
    Events,
    Rollouts,
    /// Long poll: answers once the node's state generation passes the given one (or after a while).
    Watch(u64),
    Locate(String),
    Metrics,
    Shutdown,
}

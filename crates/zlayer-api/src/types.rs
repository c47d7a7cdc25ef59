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
    Locate(String),
    Metrics,
    Shutdown,
}

//! A node's progress in replacing its replicas of one service.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutState {
    Rolling,
    Done,
    /// A replacement failed; no further replacements start for the revision.
    Failed,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Rolling => "rolling",
            RolloutState::Done => "done",
            RolloutState::Failed => "failed",
        }
    }
}

/// A node's rollout of one service, carried by heartbeats so `up -d` on any
/// member sees a rollout stop anywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutReport {
    /// `deployment/service`.
    pub workload: String,
    pub revision: String,
    pub state: RolloutState,
    pub message: String,
    pub started_ms: u64,
}

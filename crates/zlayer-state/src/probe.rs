//! Link probes between members (`/cluster/probe`): a member posts a payload
//! of known size and times the answer, which says how many bytes arrived.
//! Only members with a live record may probe; the payload is capped.

use serde::{Deserialize, Serialize};

pub const PROBE: &str = "/cluster/probe";
/// The largest probe payload a member accepts.
pub const MAX_PROBE: usize = 4 << 20;

/// The payload: filler bytes, sent as one JSON string.
#[derive(Serialize, Deserialize)]
pub struct ProbeRequest {
    pub fill: String,
}

#[derive(Serialize, Deserialize)]
pub struct ProbeReply {
    pub received: u64,
}

//! Liveness without the Raft log. A node tells the leader it is alive
//! over mTLS; the leader answers only after `ensure_linearizable` has shown
//! that a quorum still follows it, and notes the time on its own monotonic
//! clock. An answered call therefore proves what a committed write would
//! (a quorum counts the node in) while writing nothing to disk, so an idle
//! cluster's Raft store does not grow. The caller's node id comes from its
//! certificate, never from the request, so no node can speak for another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use serde::{Deserialize, Serialize};

use crate::Raft;

pub const ALIVE: &str = "/cluster/alive";

/// When the leader last heard each node, by member id.
#[derive(Clone, Default)]
pub struct Heard(Arc<Mutex<HashMap<u64, Instant>>>);

impl Heard {
    pub fn note(&self, id: u64) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id, Instant::now());
        }
    }

    pub fn get(&self, id: u64) -> Option<Instant> {
        self.0.lock().ok()?.get(&id).copied()
    }
}

/// What a caller asks for; an older caller sends no body (`null`) and gets
/// a bare `Heard`, which it understands.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AliveAsk {
    /// Answer with the index the leader has applied (`HeardAt`).
    #[serde(default)]
    pub applied_index: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum AliveReply {
    Heard,
    /// Heard, and the leader had applied the log up to this index: the caller
    /// holds the cluster's state only once it has applied as far.
    HeardAt(u64),
    NotLeader,
    /// No current node record holds the caller's certificate.
    UnknownNode,
    /// This member could not confirm a quorum in time.
    NoQuorum,
}

/// The leader's side: `id` is the caller's member id.
pub(crate) async fn answer(
    raft: &Raft,
    heard: &Heard,
    id: u64,
    ask: &AliveAsk,
    patience: Duration,
) -> AliveReply {
    match tokio::time::timeout(patience, raft.ensure_linearizable()).await {
        Ok(Ok(read)) => {
            heard.note(id);
            if ask.applied_index {
                AliveReply::HeardAt(read.map_or(0, |l| l.index))
            } else {
                AliveReply::Heard
            }
        }
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => {
            AliveReply::NotLeader
        }
        Ok(Err(_)) | Err(_) => AliveReply::NoQuorum,
    }
}

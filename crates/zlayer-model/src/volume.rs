//! What a node says about the named volumes it holds.

use serde::{Deserialize, Serialize};

/// One volume's use on the node that holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUsage {
    /// `deployment/name`.
    pub volume: String,
    /// The claim it belongs to.
    pub id: u64,
    pub used_bytes: u64,
    /// The filesystem's size for a sized volume, else `None`.
    pub capacity_bytes: Option<u64>,
}

/// Where the cluster keeps a named volume, as one node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeHold {
    /// Claimed on this node, as claim `id`.
    Here { id: u64 },
    /// Claimed on another node.
    Elsewhere { node: String },
    /// Not claimed yet (the claim commits before any placement needs it).
    Unclaimed,
}

//! zlayer-model owns the typed vocabulary that crosses crate boundaries:
//! replica state, health and the report a node sends about each replica;
//! rollout state and reports; resources, node state, health and network
//! facts; named volumes' use; assignments (which node runs which replica slot); and the node
//! and token summaries the control plane answers with.
//!
//! Every crate that decides something from these values compares these
//! types, never display strings; `zlayer-api` turns them into views only at
//! its edge. It must not do I/O or hold logic beyond plain accessors: it
//! depends on serde alone.

mod cluster;
mod node;
mod placement;
mod replica;
mod rollout;
mod summary;
mod usage;
mod volume;

pub use cluster::{ClusterReplica, NodeRollout};
pub use node::{ClusterNetwork, NodeHealth, NodeNetwork, NodeState, Resources, StockPeer};
pub use placement::{split_workload, Assignment};
pub use replica::{FailedAttempt, Health, ReplicaReport, ReplicaState, ReportChanges};
pub use rollout::{RolloutReport, RolloutState};
pub use summary::{ClusterRole, NodeRole, NodeSummary, TokenStatus, TokenSummary};
pub use usage::{UsageQuery, UsageRecord, UsageTotals};
pub use volume::{VolumeHold, VolumeUsage};

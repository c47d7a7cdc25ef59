//! zlayer-control owns a node's place in the cluster: its identity on disk
//! (`files`), its Raft member, founding a one-voter cluster on first start
//! or joining one with a token, heartbeats that carry the node's replica
//! status, renewing its certificate, and self-fencing when the node cannot reach a quorum. On the
//! leader it runs the liveness loop (nodes that stop heartbeating are marked
//! down) and the scheduling loop (`zlayer-scheduler`'s `plan`, committed as
//! `Placements`).
//!
//! It answers in `zlayer-model` types (reports, summaries of nodes and
//! tokens); `zlayer-node` turns them into API views.
//!
//! It must not run containers or touch the node's network (the agent does,
//! from what this crate's state says), know the node API, or make a
//! placement decision of its own: it only feeds the scheduler and commits
//! its answer.

mod configs;
mod control;
mod desired;
mod files;
mod health;
mod heartbeat;
mod job_retries;
mod leader;
mod links;
mod renewal;
mod reserve;
mod secrets;
mod specs;
mod views;
mod volume_claims;
mod volumes;

pub use configs::ConfigSummary;
pub use control::{Control, ControlConfig, ControlError, Liveness};
pub use files::{ClusterFiles, NodeFile};
pub use links::{LinkStats, Links, PROBE_BYTES};
pub use renewal::DEFAULT_RENEW_BEFORE;
pub use reserve::{free_bytes, STORE_RESERVE};
pub use secrets::SecretSummary;
pub use volumes::VolumeSummary;
pub use zlayer_state::{ClusterState, PendingRecord, Timing};

/// The port of a node's mTLS endpoint unless `--port` says otherwise.
pub const DEFAULT_PORT: u16 = 7443;

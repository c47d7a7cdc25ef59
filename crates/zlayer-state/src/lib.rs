//! zlayer-state owns the cluster's replicated state: the openraft type
//! configuration, the Raft log and the state machine, both kept in sled and
//! flushed before they are acknowledged, snapshots, and the data model they
//! replicate (nodes, deployment specs and their revisions, assignments with
//! generation numbers, the cluster CA's certificate, join and API tokens and
//! their revocations, heartbeats with replica reports, job tasks' failed
//! attempts, metering records). The CA key is not
//! replicated: voters hold it (`ca_key`).
//!
//! Every change to the model is a [`Command`] applied by
//! [`ClusterState::apply`], a pure function of the state and the command:
//! commands carry the leader's clock, so every member computes the same
//! result. It must not schedule (the leader runs `zlayer-scheduler` and
//! commits the result as a command), run containers or touch the network
//! beyond the Raft transport.

pub mod acme;
pub mod alive;
pub mod authz;
pub mod ca_key;
pub mod configs;
mod endpoints;
pub mod ingress_ca;
pub mod ingress_tls;
pub mod jobs;
pub mod join;
pub mod keeper;
mod member;
pub mod mesh_fields;
mod model;
pub mod pki;
pub mod probe;
pub mod renew;
pub mod seal;
pub mod secrets;
// openraft's storage traits fix the error type, `StorageError`, which is large.
#[allow(clippy::result_large_err)]
mod store;
pub mod subnets;
pub mod token;
pub mod transport;
mod types;
pub mod usage;
pub mod volumes;

pub use endpoints::{RemoteApi, API};
pub use join::{NatSeed, SeedPeer};
pub use member::{Member, MemberConfig, MemberError, Timing, WriteError, WriteReply, WRITE};
pub use model::service_counts;
pub use model::{
    AssignmentKey, CaRecord, ClusterState, Command, DeploymentRecord, Liveness, NodeRecord,
    PendingRecord, Response, ScaledTo, ServiceCounts, SpecRevision, TokenKind, TokenRecord,
    TokenUse,
};
pub use store::{open, LogStore, StateMachine, StoreError};
pub use types::{Raft, TypeConfig};

/// Milliseconds since the Unix epoch: the clock commands carry.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

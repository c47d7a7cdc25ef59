//! zlayer-agent owns the node side of the data flow: it turns the desired
//! replicas of applied specs into running containers and keeps them so —
//! images to snapshots, networks, shims, health checks, restarts with
//! backoff, `depends` ordering, re-adoption after a restart, and metering.
//!
//! What should run comes through [`desired::Cluster`]: the committed specs
//! and the replica slots the scheduler assigned to this node.
//!
//! It must not place replicas (the scheduler does, on the leader) or know
//! Raft, and does no container, netlink or image work itself: it calls
//! zlayer-runtime, zlayer-net and zlayer-image.

pub mod agent;
mod apply;
mod checks;
mod clock;
mod cron_overlap;
mod depends;
pub mod desired;
pub mod facts;
pub mod health;
pub mod host_paths;
pub mod ids;
mod images;
mod ingress;
mod jobs;
pub mod launch;
pub mod launcher;
mod metering;
pub mod metrics;
pub mod oneoff;
mod planning;
mod policy;
mod reconcile;
pub mod replica;
mod reservations;
mod revisions;
mod rollout;
mod rollout_turn;
mod serve;
mod starting;
pub mod state;
pub mod template;
mod views;
mod volumes;

pub use agent::{Agent, AgentConfig, SpecError};
pub use launcher::{Launcher, StartRequest};

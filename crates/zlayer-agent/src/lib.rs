//! zlayer-agent owns the node side of the data flow: it turns the desired
//! replicas of applied specs into running containers and keeps them so —
//! images to snapshots, networks, shims, health checks, restarts with
//! backoff, `depends` ordering, re-adoption after a restart, and metering.
//!
//! It must not place replicas (that is the scheduler's job once a cluster
//! exists) and does no container, netlink or image work itself: it calls
//! zlayer-runtime, zlayer-net and zlayer-image.

mod api;
mod checks;
pub mod health;
pub mod ids;
mod images;
pub mod launch;
pub mod metrics;
pub mod node;
pub mod oneoff;
pub mod replica;
mod rollout;
mod serve;
pub mod state;
pub mod template;

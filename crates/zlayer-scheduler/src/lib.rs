//! zlayer-scheduler owns placement: which node runs each replica. It is a
//! set of pure functions over a snapshot of the cluster (nodes, their
//! capacity, labels, state and reported health; the assignments already
//! made) and the desired workloads. Feasibility filters run first (state,
//! labels, a volume's node, free CPU, memory and GPUs, the mode), then the
//! feasible candidates are ranked (bin-pack or spread, anti-affinity between
//! replicas of one service, preferred labels, node health). A replica that
//! fits nowhere stays pending with the reason; nothing is ever over-committed.
//! A job's retry moves its task to a node it has not failed on where one
//! fits, and a job's `parallelism` caps its unfinished tasks placed at once.
//!
//! It must not do I/O: no Raft, no clock, no network, no containers. The
//! leader commits what [`plan`] returns; agents carry it out.

mod feasibility;
mod model;
mod placer;
mod plan;
mod reason;
mod score;

pub use feasibility::Exclusion;
pub use model::{Node, TaskRetry, Workload};
pub use placer::{Placer, SAMPLE};
pub use plan::{plan, PendingReplica, Plan, StopReason, WaitingTask};
pub use reason::Unplaceable;
pub use score::{Strategy, Weights};
pub use zlayer_spec::NodeMode;

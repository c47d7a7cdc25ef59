//! The agent's one view of the cluster: what it wants of this node and
//! where specs are written. The agent reads specs and this node's replica
//! slots through [`Cluster`], never placement itself; the binary wires it to
//! the Raft state (`zlayer-control`), so the agent knows nothing of Raft.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use zlayer_api::{ClusterReply, ClusterRequest, ReplicaView, RolloutView};

use crate::state::Deployment;

/// Replica slots by `deployment/service`.
pub type Slots = BTreeMap<String, BTreeSet<u32>>;

pub trait Cluster: Send + Sync + 'static {
    /// The committed deployments.
    fn deployments(&self) -> Vec<Deployment>;
    /// The slots the scheduler assigned to this node.
    fn assigned(&self) -> Slots;
    /// True while this node must run nothing: it cannot reach a quorum, so
    /// its replicas are being run elsewhere.
    fn fenced(&self) -> bool;
    /// Changes whenever the committed state does.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Commits a deployment; true if it changed what was committed.
    fn put_deployment(&self, d: Deployment) -> BoxFuture<'_, Result<bool, String>>;
    /// Removes a deployment; false if there was none by that name.
    fn remove_deployment(&self, name: String) -> BoxFuture<'_, Result<bool, String>>;
    /// This node's replicas and rollouts, for the other nodes' `ps`,
    /// `rollouts` and `up -d`.
    fn report(&self, replicas: &[ReplicaView], rollouts: &[RolloutView]);
    /// Replicas on other nodes, and the slots no node could take (pending).
    fn elsewhere(&self) -> Vec<ReplicaView>;
    /// Rollouts on the other nodes that are up.
    fn rollouts_elsewhere(&self) -> Vec<RolloutView>;
    /// The operator's requests about nodes and tokens, passed through.
    fn admin(&self, req: ClusterRequest) -> BoxFuture<'_, Result<ClusterReply, String>>;
}

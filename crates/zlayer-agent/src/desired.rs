//! The agent's one view of the cluster: what it wants of this node, and
//! where the node's own report goes. The agent reads the committed specs
//! and this node's replica slots through [`Cluster`], never placement
//! itself; the node composition point serves it from the Raft state
//! (`zlayer-control`), so the agent knows nothing of Raft.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use zlayer_model::{ReplicaReport, RolloutReport};
use zlayer_spec::DeploymentRevision;

/// Replica slots by `deployment/service`.
pub type Slots = BTreeMap<String, BTreeSet<u32>>;

/// Where a job task stands, as the cluster recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskAttempt {
    /// The attempt this node's assignment of the task runs, from 1.
    pub number: u32,
    /// How long its earlier, failed attempts ran together.
    pub used_ms: u64,
}

impl TaskAttempt {
    pub const FIRST: TaskAttempt = TaskAttempt {
        number: 1,
        used_ms: 0,
    };
}

pub trait Cluster: Send + Sync + 'static {
    /// The committed deployments, each revision validated once.
    fn deployments(&self) -> Vec<Arc<DeploymentRevision>>;
    /// The slots the scheduler assigned to this node.
    fn assigned(&self) -> Slots;
    /// True while this node must run nothing: it cannot reach a quorum, so
    /// its replicas are being run elsewhere.
    fn fenced(&self) -> bool;
    /// Changes whenever the committed state does.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// This node's replicas and rollouts, for the other nodes.
    fn report(&self, replicas: Vec<ReplicaReport>, rollouts: Vec<RolloutReport>);
    /// The replicas the other live nodes last reported: what `depends` and
    /// rollout turns count beside this node's own.
    fn reported_elsewhere(&self) -> Vec<ReplicaReport>;
    /// This node's replicas as the cluster last committed its report.
    fn committed_here(&self) -> Vec<ReplicaReport> {
        Vec::new()
    }
    /// Other live nodes, whose ingress and ports may send to this node's replicas.
    fn other_nodes(&self) -> usize {
        0
    }
    /// The attempt of job task `replica` of `workload` (at `revision`) that
    /// this node runs: the leader moves a task to its next attempt only
    /// after its node reported the failure.
    fn task_attempt(&self, workload: &str, replica: u32, revision: &str) -> TaskAttempt {
        let _ = (workload, replica, revision);
        TaskAttempt::FIRST
    }
    /// This node's metering totals per service, as the cluster committed them.
    fn usage_totals(&self) -> Vec<zlayer_model::UsageTotals> {
        Vec::new()
    }
    /// Commits metering records of containers that finished on this node.
    fn record_usage(
        &self,
        records: Vec<zlayer_model::UsageRecord>,
    ) -> futures::future::BoxFuture<'static, Result<(), String>> {
        let _ = records;
        Box::pin(async { Err("this cluster keeps no usage".to_string()) })
    }
    /// How many times `zlayer restart` asked for `deployment/service`.
    fn restarts(&self, deployment: &str, service: &str) -> u64 {
        let _ = (deployment, service);
        0
    }
    /// The current version of each named secret the cluster holds (a
    /// missing name has none). Cheap: read every round.
    fn secret_versions(&self, names: &BTreeSet<String>) -> BTreeMap<String, u64> {
        let _ = names;
        BTreeMap::new()
    }
    /// The current version of each named config the cluster holds.
    fn config_versions(&self, names: &BTreeSet<String>) -> BTreeMap<String, u64> {
        let _ = names;
        BTreeMap::new()
    }
    /// A config's content, if the cluster holds it.
    fn config_value(&self, name: &str) -> Option<Vec<u8>> {
        let _ = name;
        None
    }
    /// The values of `names` for this node's replicas of
    /// `deployment/service`; the cluster refuses a node that runs none.
    fn secret_values(
        &self,
        deployment: &str,
        service: &str,
        names: Vec<String>,
    ) -> futures::future::BoxFuture<'static, Result<BTreeMap<String, Vec<u8>>, String>> {
        let _ = (deployment, service, names);
        Box::pin(async { Err("this cluster holds no secrets".to_string()) })
    }
    /// Where the cluster keeps volume `deployment/name`.
    fn volume_hold(&self, deployment: &str, name: &str) -> zlayer_model::VolumeHold {
        let _ = (deployment, name);
        zlayer_model::VolumeHold::Unclaimed
    }
    /// Whether claim `id` of `volume` was removed: only then may its data go.
    fn volume_removed(&self, volume: &str, id: u64) -> bool {
        let _ = (volume, id);
        false
    }
    /// The use of the volumes this node holds, for `zlayer volume ls`.
    fn report_volumes(&self, usage: Vec<zlayer_model::VolumeUsage>) {
        let _ = usage;
    }
    /// `update.failure_action: rollback`: apply the revision before `from`
    /// again, unless the deployment has moved past `from` already.
    fn roll_back(
        &self,
        deployment: &str,
        from: u64,
    ) -> futures::future::BoxFuture<'static, Result<u64, String>> {
        let _ = (deployment, from);
        Box::pin(async { Err("this cluster keeps no revisions to roll back to".to_string()) })
    }
    /// When the ACME certificate the cluster holds for `host` was issued
    /// (Unix ms); `None` until there is one. Cheap: read every round.
    fn acme_issued(&self, host: &str) -> Option<u64> {
        let _ = host;
        None
    }
    /// That certificate, opened: (PEM chain, PEM key, issued in Unix ms).
    /// It may ask another node, so it is fetched only when it changed.
    fn acme_certificate(
        &self,
        host: &str,
    ) -> futures::future::BoxFuture<'static, Result<(String, String, u64), String>> {
        let host = host.to_string();
        Box::pin(async move { Err(format!("the cluster holds no ACME certificate for {host}")) })
    }
    /// A certificate (PEM chain, PEM key) for `hosts` from the cluster's
    /// ingress CA, for `https` routes that name none of their own.
    fn ingress_certificate(
        &self,
        hosts: Vec<String>,
    ) -> futures::future::BoxFuture<'static, Result<(String, String), String>> {
        let _ = hosts;
        Box::pin(async { Err("this cluster issues no ingress certificates".to_string()) })
    }
}

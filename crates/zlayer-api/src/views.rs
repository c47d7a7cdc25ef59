//! The one place typed replica and rollout facts become the rows `ps` and
//! `rollouts` print.

use zlayer_model::{
    split_workload, ClusterReplica, Health, NodeRole, NodeRollout, NodeSummary, ReplicaReport,
    ReplicaState, RolloutReport, RolloutState, TokenStatus, TokenSummary,
};

use crate::types::{
    Amount, HealthView, NodeView, ReplicaPhase, ReplicaView, RolloutPhase, RolloutView, TokenView,
};

impl From<Health> for HealthView {
    fn from(h: Health) -> HealthView {
        match h {
            Health::None => HealthView::None,
            Health::Starting => HealthView::Starting,
            Health::Healthy => HealthView::Healthy,
            Health::Unhealthy => HealthView::Unhealthy,
        }
    }
}

impl From<RolloutState> for RolloutPhase {
    fn from(s: RolloutState) -> RolloutPhase {
        match s {
            RolloutState::Rolling => RolloutPhase::Rolling,
            RolloutState::Done => RolloutPhase::Done,
            RolloutState::Failed => RolloutPhase::Failed,
        }
    }
}

fn phase(r: &ReplicaReport) -> ReplicaPhase {
    match r.state {
        ReplicaState::Running => ReplicaPhase::Running,
        ReplicaState::Exited if r.crash_loop => ReplicaPhase::CrashLoop,
        _ if r.oom_killed => ReplicaPhase::OomKilled,
        ReplicaState::Pending => ReplicaPhase::Pending,
        ReplicaState::Exited => ReplicaPhase::Exited,
        ReplicaState::Failed => ReplicaPhase::Failed,
    }
}

impl ReplicaView {
    /// Running and passing its check (or having none): it may serve.
    pub fn is_ready(&self) -> bool {
        self.state == ReplicaPhase::Running
            && matches!(self.health, HealthView::Healthy | HealthView::None)
    }
}

fn age_secs(now_ms: u64, since_ms: u64) -> u64 {
    now_ms.saturating_sub(since_ms) / 1000
}

impl ReplicaView {
    /// `r` as `node` reports it.
    pub fn reported(node: &str, r: &ReplicaReport, now_ms: u64) -> ReplicaView {
        let (deployment, service) = split_workload(&r.workload);
        ReplicaView {
            deployment: deployment.into(),
            service: service.into(),
            replica: r.replica,
            node: node.into(),
            state: phase(r),
            health: r.health.into(),
            restarts: r.restarts,
            ip: r.ip.map(|i| i.to_string()).unwrap_or_default(),
            age_secs: age_secs(now_ms, r.created_ms),
            container_id: r.container_id.clone(),
            message: r.message.clone(),
            revision: r.revision.clone(),
            surge: r.surge,
            kind: String::new(),
            retrying: r.failed_attempt.is_some(),
            succeeded: r.succeeded,
        }
    }

    pub fn of(c: &ClusterReplica, now_ms: u64) -> ReplicaView {
        match c {
            ClusterReplica::Reported {
                node,
                node_down: false,
                report,
            } => ReplicaView::reported(node, report, now_ms),
            ClusterReplica::Reported {
                node,
                node_down: true,
                report,
            } => {
                let mut v = ReplicaView::reported(node, report, now_ms);
                v.message = format!("node {node} is down; it last reported {}", v.state);
                v.state = ReplicaPhase::Unknown;
                v.health = HealthView::Unknown;
                v
            }
            ClusterReplica::Assigned {
                node,
                workload,
                replica,
            } => ReplicaView::slot(
                workload,
                *replica,
                node,
                ReplicaPhase::Assigned,
                format!("placed on {node}, not reported yet"),
            ),
            ClusterReplica::Pending {
                workload,
                replica,
                reason,
            } => ReplicaView::slot(
                workload,
                *replica,
                "",
                ReplicaPhase::Pending,
                reason.clone(),
            ),
        }
    }

    /// A deployment whose committed revision this node cannot parse.
    pub fn spec_refused(deployment: &str, node: &str, message: String) -> ReplicaView {
        ReplicaView::slot(
            &format!("{deployment}/"),
            0,
            node,
            ReplicaPhase::Invalid,
            message,
        )
    }

    fn slot(
        workload: &str,
        replica: u32,
        node: &str,
        state: ReplicaPhase,
        message: String,
    ) -> Self {
        let (deployment, service) = split_workload(workload);
        ReplicaView {
            deployment: deployment.into(),
            service: service.into(),
            replica,
            node: node.into(),
            state,
            health: HealthView::None,
            restarts: 0,
            ip: String::new(),
            age_secs: 0,
            container_id: String::new(),
            message,
            revision: String::new(),
            surge: false,
            kind: String::new(),
            retrying: false,
            succeeded: false,
        }
    }
}

impl RolloutView {
    pub fn reported(node: &str, r: &RolloutReport, now_ms: u64) -> RolloutView {
        let (deployment, service) = split_workload(&r.workload);
        RolloutView {
            deployment: deployment.into(),
            service: service.into(),
            node: node.into(),
            revision: r.revision.clone(),
            state: r.state.into(),
            message: r.message.clone(),
            age_secs: age_secs(now_ms, r.started_ms),
        }
    }

    pub fn of(r: &NodeRollout, now_ms: u64) -> RolloutView {
        RolloutView::reported(&r.node, &r.report, now_ms)
    }
}

impl NodeView {
    pub fn of(n: &NodeSummary) -> NodeView {
        let amount = |free: u64, total: u64| Amount { free, total };
        NodeView {
            id: n.id,
            name: n.name.clone(),
            addr: n.addr.clone(),
            role: match n.role {
                NodeRole::Leader => "leader",
                NodeRole::Voter => "voter",
                NodeRole::Learner => "learner",
                NodeRole::Outside => "-",
            }
            .into(),
            kind: n.cluster_role.as_str().into(),
            state: n.state.as_str().into(),
            cpu_milli: amount(n.free.cpu_milli, n.capacity.cpu_milli),
            memory_bytes: amount(n.free.memory_bytes, n.capacity.memory_bytes),
            gpus: amount(u64::from(n.free.gpus), u64::from(n.capacity.gpus)),
            labels: n.labels.clone(),
            last_heartbeat_ms: n.since_heard_ms,
            replicas: n.replicas,
            health: [
                ("bandwidth", n.health.bandwidth),
                ("latency", n.health.latency),
                ("efficiency", n.health.efficiency),
                ("reputation", n.health.reputation),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            subnet: n.network.subnet.clone().unwrap_or_default(),
            overlay: n.network.wg_device.clone().unwrap_or_else(|| "-".into()),
            behind_nat: n.network.behind_nat,
        }
    }
}

impl TokenView {
    pub fn of(t: &TokenSummary) -> TokenView {
        TokenView {
            id: t.id.clone(),
            expires_ms: t.expires_ms,
            uses: t.uses,
            used: t.used,
            kind: if t.api {
                "api".to_string()
            } else {
                format!("join {}", t.role.as_str())
            },
            status: match t.status {
                TokenStatus::Valid => "valid",
                TokenStatus::Expired => "expired",
                TokenStatus::Revoked => "revoked",
                TokenStatus::UsedUp => "used up",
            }
            .into(),
        }
    }
}

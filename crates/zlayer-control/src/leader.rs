//! What only the leader does, a pass every 250 ms or whenever the state
//! changes: mark nodes down that stopped heartbeating (and ready again when
//! they resume), then run the scheduler over the committed state and commit
//! its placements and stops in one batch, and the pending list when it
//! changed. Job tasks' failed attempts are recorded first; the pass after
//! moves each to its next attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zlayer_model::NodeState;
use zlayer_scheduler::{Weights, Workload};
use zlayer_spec::DeploymentRevision;
use zlayer_state::{ClusterState, Command, PendingRecord};

use crate::Control;

pub(crate) async fn run(c: Arc<Control>) {
    let mut changes = c.subscribe();
    let mut seen = Seen::default();
    loop {
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if c.member.leader().map(|l| l.0) != Some(c.node.id) {
            seen.clear();
            continue;
        }
        for cmd in seen.liveness(&c) {
            if let Err(e) = c.write_as_leader(cmd).await {
                tracing::warn!("node state: {e}");
            }
        }
        let specs = c.specs();
        for cmd in c.read(|s| schedule(s, &specs, c.strategy)) {
            if let Err(e) = c.write_as_leader(cmd).await {
                tracing::warn!("committing placements: {e}");
            }
        }
    }
}

/// When the leader last heard each node, on its own clock: its committed
/// heartbeat count moved, or it answered a liveness call. Nodes' clocks are
/// never compared.
#[derive(Default)]
struct Seen {
    by_node: HashMap<u64, (u64, Instant)>,
}

impl Seen {
    fn clear(&mut self) {
        self.by_node.clear();
    }

    /// State changes due now. A new leader counts every node as just seen,
    /// so none is declared down before it had a full timeout to be heard.
    fn liveness(&mut self, c: &Control) -> Vec<Command> {
        let down_after = c.liveness.down_after;
        let now = Instant::now();
        let nodes: Vec<(u64, u64, NodeState)> = c.read(|s| {
            s.nodes
                .values()
                .map(|n| (n.id, n.heartbeats, n.state))
                .collect()
        });
        self.by_node
            .retain(|id, _| nodes.iter().any(|n| n.0 == *id));
        let heard = &c.member.heard;
        // A lone voter never fences itself, so declaring itself down would
        // run its replicas twice; with other voters it fences, and then its
        // replicas must move, as any node's would.
        let may_mark_self = c.has_other_voters();
        let mut out = Vec::new();
        for (id, beats, state) in nodes {
            let entry = self.by_node.entry(id).or_insert((beats, now));
            if entry.0 != beats {
                *entry = (beats, now);
            }
            // A liveness call answered since counts as much as a committed heartbeat.
            if let Some(at) = heard.get(id).filter(|at| *at > entry.1) {
                entry.1 = at;
            }
            let silent =
                (id != c.node.id || may_mark_self) && now.duration_since(entry.1) > down_after;
            let next = match state {
                NodeState::Ready if silent => Some(NodeState::Down),
                NodeState::Down if !silent => Some(NodeState::Ready),
                _ => None,
            };
            if let Some(state) = next {
                tracing::info!(node = id, ?state, "node state");
                out.push(Command::SetNodeState {
                    id,
                    state,
                    at_ms: zlayer_state::now_ms(),
                });
            }
        }
        out
    }
}

/// The scheduler's pass over the committed state, as commands to commit:
/// the volume claims its placements need first, then the placements.
pub(crate) fn schedule(
    s: &ClusterState,
    specs: &[Arc<DeploymentRevision>],
    strategy: zlayer_scheduler::Strategy,
) -> Vec<Command> {
    let nodes: Vec<zlayer_scheduler::Node> = s
        .nodes
        .values()
        .map(|n| zlayer_scheduler::Node {
            id: n.name.clone(),
            capacity: n.capacity,
            labels: n.labels.clone(),
            state: n.state,
            health: n.health,
        })
        .collect();
    let workloads = workloads(s, specs);
    let existing: Vec<_> = s.assignments.values().cloned().collect();
    let mut plan = zlayer_scheduler::plan(
        &nodes,
        &workloads,
        &existing,
        s.next_generation,
        strategy,
        Weights::default(),
    );
    let mut out = Vec::new();
    let failures = crate::job_retries::new_failures(s);
    if !failures.is_empty() {
        out.push(Command::RecordTaskFailures(failures));
    }
    let claims = crate::volume_claims::claims(s, specs, &mut plan.place);
    if !claims.is_empty() {
        out.push(Command::ClaimVolumes(claims));
    }
    if !plan.place.is_empty() || !plan.stop.is_empty() {
        out.push(Command::Placements {
            place: plan.place,
            stop: plan.stop.into_iter().map(|(a, _)| a).collect(),
        });
    }
    let waiting = plan.waiting.into_iter().map(|w| PendingRecord {
        workload: w.workload,
        replica: w.replica,
        through: None,
        reason: format!(
            "waiting: {} of the job's tasks run at once (parallelism), this one after them",
            w.parallelism
        ),
    });
    let pending = plan
        .pending
        .into_iter()
        .map(|p| PendingRecord {
            workload: p.workload,
            replica: p.replica,
            through: None,
            reason: format!("pending: {}", p.reason),
        })
        .chain(waiting);
    let pending = PendingRecord::runs(pending);
    if pending != s.pending {
        out.push(Command::SetPending(pending));
    }
    out
}

/// Every service of every committed deployment, as placement sees it. A
/// service stays on the node that holds one of its named volumes. A spec
/// this node cannot parse places nothing (`SpecCache` logged why).
pub(crate) fn workloads(s: &ClusterState, specs: &[Arc<DeploymentRevision>]) -> Vec<Workload> {
    let mut out = Vec::new();
    for spec in specs.iter().filter_map(|d| d.parsed.as_ref().ok()) {
        let scaled = s.deployments.get(&spec.deployment).map(|d| &d.scaled);
        for (name, svc) in &spec.services {
            let mut w = Workload::from_service(&spec.deployment, name, svc);
            if let Some(to) = scaled.and_then(|m| m.get(name)) {
                w.replicas = to.replicas;
            }
            w.pinned_node = Workload::named_volumes(svc).iter().find_map(|(v, _)| {
                s.volumes
                    .records
                    .get(&zlayer_state::volumes::key(&spec.deployment, v))
                    .map(|r| r.node.clone())
            });
            if svc.rtype == zlayer_spec::ResourceType::Job {
                w.retries = crate::job_retries::retries_of(s, &w.id);
                w.finished = crate::job_retries::finished_tasks(s, &w.id);
            }
            out.push(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::specs::SpecCache;
    use std::collections::BTreeMap;
    use zlayer_model::Resources;
    use zlayer_state::NodeRecord;

    fn node(id: u64, name: &str, state: NodeState) -> NodeRecord {
        NodeRecord {
            id,
            name: name.into(),
            capacity: Resources {
                cpu_milli: 4000,
                memory_bytes: 8 << 30,
                gpus: 0,
            },
            state,
            ..NodeRecord::default()
        }
    }

    fn state_with(spec: &str) -> ClusterState {
        let mut s = ClusterState::default();
        let mut t = Vec::new();
        for n in [
            node(1, "a", NodeState::Ready),
            node(2, "b", NodeState::Ready),
        ] {
            s.apply(Command::AddNode(n), &mut t);
        }
        s.apply(
            Command::PutDeployment {
                name: "d".into(),
                file: "d.yaml".into(),
                text: spec.into(),
                env: BTreeMap::new(),
                at_ms: 0,
                counts: Default::default(),
                if_revision: None,
            },
            &mut t,
        );
        s
    }

    fn commit(s: &mut ClusterState) {
        for cmd in schedule(
            s,
            &SpecCache::default().current(s),
            zlayer_scheduler::Strategy::Spread,
        ) {
            s.apply(cmd, &mut Vec::new());
        }
    }

    const SPEC: &str = "version: v1\ndeployment: d\nservices:\n  web:\n    image: { name: demo }\n    scale: { mode: fixed, replicas: 4 }\n";

    #[test]
    fn places_every_replica_once_and_then_is_quiet() {
        let mut s = state_with(SPEC);
        commit(&mut s);
        assert_eq!(s.assignments.len(), 4);
        assert_eq!(s.assignments_on("a").count(), 2, "spread over two nodes");
        assert!(schedule(
            &s,
            &SpecCache::default().current(&s),
            zlayer_scheduler::Strategy::Spread
        )
        .is_empty());
    }

    #[test]
    fn a_down_node_loses_its_replicas_to_the_others() {
        let mut s = state_with(SPEC);
        commit(&mut s);
        s.apply(
            Command::SetNodeState {
                id: 2,
                state: NodeState::Down,
                at_ms: 1,
            },
            &mut Vec::new(),
        );
        commit(&mut s);
        assert_eq!(s.assignments_on("a").count(), 4);
        assert_eq!(s.assignments_on("b").count(), 0);
    }

    #[test]
    fn what_cannot_be_placed_is_pending_with_the_reason() {
        let spec = SPEC
            .replace("replicas: 4", "replicas: 3")
            .replace("scale:", "node_mode: dedicated\n    scale:");
        let mut s = state_with(&spec);
        commit(&mut s);
        assert_eq!(s.assignments.len(), 2);
        assert_eq!(s.pending.len(), 1);
        assert!(
            s.pending[0].reason.starts_with("pending: "),
            "{:?}",
            s.pending
        );
    }

    const VOLUME_SPEC: &str = "version: v1\ndeployment: d\nservices:\n  db:\n    image: { name: demo }\n    storage: [{ type: named, name: data, target: /data }]\n    scale: { mode: fixed, replicas: 4 }\n";

    /// Spread would put two replicas on each node; the volume keeps all
    /// four with it, through `down` and a node going down.
    #[test]
    fn a_named_volume_is_claimed_once_and_pins_every_replica_to_its_node() {
        let mut s = state_with(VOLUME_SPEC);
        let first = schedule(
            &s,
            &SpecCache::default().current(&s),
            zlayer_scheduler::Strategy::Spread,
        );
        assert!(
            matches!(&first[0], Command::ClaimVolumes(c) if c.len() == 1),
            "the claim commits before the placements: {first:?}"
        );
        for _ in 0..3 {
            commit(&mut s);
        }
        let node = s.volumes.records["d/data"].node.clone();
        assert_eq!(s.assignments.len(), 4);
        assert_eq!(s.assignments_on(&node).count(), 4, "all with the volume");

        s.apply(
            Command::RemoveDeployment { name: "d".into() },
            &mut Vec::new(),
        );
        assert_eq!(
            s.volumes.records["d/data"].node, node,
            "down keeps the claim"
        );
        let mut again = state_with(VOLUME_SPEC);
        again.volumes = s.volumes.clone();
        let id = if node == "a" { 1 } else { 2 };
        again.apply(
            Command::SetNodeState {
                id,
                state: NodeState::Down,
                at_ms: 1,
            },
            &mut Vec::new(),
        );
        commit(&mut again);
        assert!(
            again.assignments.is_empty(),
            "nothing starts without its data"
        );
        let pending: usize = again.pending.iter().map(|p| p.replicas().count()).sum();
        assert_eq!(pending, 4);
        assert!(
            again.pending[0].reason.contains("volume"),
            "{:?}",
            again.pending
        );
    }
}

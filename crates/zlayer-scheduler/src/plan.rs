//! One scheduling pass: desired workloads against the assignments already
//! committed. Replicas on nodes that are down, draining or gone are moved;
//! replicas no workload wants are stopped; every missing replica is placed
//! or reported pending with the reason. Replicas that run where they may
//! stay where they are.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::{Node, Workload};
use crate::placer::Placer;
use crate::reason::Unplaceable;
use crate::score::{Strategy, Weights};
use crate::NodeMode;
use zlayer_model::{Assignment, NodeState};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// No workload wants this replica (service removed or scaled in).
    Unwanted,
    /// Another assignment of the same replica has a newer generation.
    Superseded,
    /// Its node missed its heartbeats or left the cluster.
    NodeLost,
    /// Its node is being drained.
    NodeDraining,
    /// A job task's attempt failed there: the next attempt is placed anew.
    Retry,
}

#[derive(Clone, Debug)]
pub struct PendingReplica {
    pub workload: String,
    pub replica: u32,
    pub reason: Unplaceable,
}

/// A job task left unplaced because as many of its job's tasks as its
/// `parallelism` allows are placed and unfinished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingTask {
    pub workload: String,
    pub replica: u32,
    pub parallelism: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub keep: Vec<Assignment>,
    pub place: Vec<Assignment>,
    pub stop: Vec<(Assignment, StopReason)>,
    pub pending: Vec<PendingReplica>,
    pub waiting: Vec<WaitingTask>,
}

/// Exclusive work first (it needs empty nodes), then dedicated, then shared;
/// within each, the largest requests first, so small ones fill the gaps.
fn placement_order(workloads: &[Workload]) -> Vec<&Workload> {
    let mut order: Vec<&Workload> = workloads.iter().collect();
    let rank = |m: NodeMode| match m {
        NodeMode::Exclusive => 0,
        NodeMode::Dedicated => 1,
        NodeMode::Shared => 2,
    };
    order.sort_by(|a, b| {
        (
            rank(a.mode),
            b.request.gpus,
            b.request.cpu_milli,
            b.request.memory_bytes,
            &a.id,
        )
            .cmp(&(
                rank(b.mode),
                a.request.gpus,
                a.request.cpu_milli,
                a.request.memory_bytes,
                &b.id,
            ))
    });
    order
}

/// Decides one pass. New assignments get generations from `next_generation` up.
pub fn plan(
    nodes: &[Node],
    workloads: &[Workload],
    existing: &[Assignment],
    next_generation: u64,
    strategy: Strategy,
    weights: Weights,
) -> Plan {
    let mut out = Plan::default();
    let by_id: HashMap<&str, &Workload> = workloads.iter().map(|w| (w.id.as_str(), w)).collect();
    let node_state: HashMap<&str, NodeState> =
        nodes.iter().map(|n| (n.id.as_str(), n.state)).collect();
    let mut placer = Placer::new(nodes, strategy, weights);

    // The newest assignment of each replica is the one that counts.
    let mut newest: HashMap<(&str, u32), &Assignment> = HashMap::new();
    for a in existing {
        let slot = newest.entry((a.workload.as_str(), a.replica)).or_insert(a);
        if a.generation > slot.generation {
            *slot = a;
        }
    }
    let mut held: HashMap<(&str, u32), ()> = HashMap::new();
    for a in existing {
        let current = newest[&(a.workload.as_str(), a.replica)];
        if !std::ptr::eq(current, a) {
            out.stop.push((a.clone(), StopReason::Superseded));
            continue;
        }
        let Some(w) = by_id
            .get(a.workload.as_str())
            .filter(|w| a.replica <= w.replicas)
        else {
            out.stop.push((a.clone(), StopReason::Unwanted));
            continue;
        };
        if w.retries
            .get(&a.replica)
            .is_some_and(|r| r.failed_generation == a.generation)
        {
            out.stop.push((a.clone(), StopReason::Retry));
            continue;
        }
        match node_state.get(a.node.as_str()) {
            None | Some(NodeState::Down) => out.stop.push((a.clone(), StopReason::NodeLost)),
            Some(NodeState::Draining) => out.stop.push((a.clone(), StopReason::NodeDraining)),
            Some(NodeState::Ready) => {
                placer.account(w, &a.node);
                held.insert((a.workload.as_str(), a.replica), ());
                out.keep.push(a.clone());
            }
        }
    }

    let mut generation = next_generation;
    for w in placement_order(workloads) {
        let mut running = (1..=w.replicas)
            .filter(|r| held.contains_key(&(w.id.as_str(), *r)) && !w.finished.contains(r))
            .count() as u32;
        for replica in 1..=w.replicas {
            if held.contains_key(&(w.id.as_str(), replica)) || w.finished.contains(&replica) {
                continue;
            }
            if let Some(max) = w.max_running.filter(|max| running >= *max) {
                out.waiting.push(WaitingTask {
                    workload: w.id.clone(),
                    replica,
                    parallelism: max,
                });
                continue;
            }
            let retry = w.retries.get(&replica);
            let avoid = retry.map(|r| r.avoid.as_slice()).unwrap_or_default();
            match placer.place_avoiding(w, avoid) {
                Ok(node) => {
                    out.place.push(Assignment {
                        workload: w.id.clone(),
                        replica,
                        node: node.to_string(),
                        generation,
                        attempt: retry.map(|r| r.attempt).unwrap_or(0),
                    });
                    generation += 1;
                    running += 1;
                }
                Err(reason) => out.pending.push(PendingReplica {
                    workload: w.id.clone(),
                    replica,
                    reason,
                }),
            }
        }
    }
    out
}

//! Ranking of feasible nodes. Each term is in `0.0..=1.0`; the score is their
//! weighted sum, and the highest wins.

use serde::{Deserialize, Serialize};

use crate::feasibility::NodeLoad;
use crate::model::{Node, Workload};
use zlayer_model::NodeHealth;

/// How replicas are packed: onto the fullest nodes that fit (fewer nodes
/// busy, whole nodes left for big or exclusive work), or onto the emptiest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    BinPack,
    Spread,
}

/// Weights of the score's terms, and of the health terms within health.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Weights {
    pub fit: f64,
    /// Penalty for each replica of the same service already on the node.
    pub anti_affinity: f64,
    pub prefer_labels: f64,
    pub health: f64,
    pub bandwidth: f64,
    pub latency: f64,
    pub efficiency: f64,
    pub reputation: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            fit: 1.0,
            anti_affinity: 1.0,
            prefer_labels: 0.5,
            health: 0.5,
            bandwidth: 1.0,
            latency: 1.0,
            efficiency: 1.0,
            reputation: 1.0,
        }
    }
}

/// A node's health in `0.0..=1.0`, the weighted mean of what it reports.
pub fn health(h: &NodeHealth, w: &Weights) -> f64 {
    let total = w.bandwidth + w.latency + w.efficiency + w.reputation;
    if total <= 0.0 {
        return 1.0;
    }
    let sum = w.bandwidth * h.bandwidth.clamp(0.0, 1.0)
        + w.latency * h.latency.clamp(0.0, 1.0)
        + w.efficiency * h.efficiency.clamp(0.0, 1.0)
        + w.reputation * h.reputation.clamp(0.0, 1.0);
    sum / total
}

/// How full the node would be with the replica, averaged over the resources
/// it has (CPU, memory, and GPUs where it has any).
fn utilisation_after(node: &Node, load: &NodeLoad, w: &Workload) -> f64 {
    let frac = |cap: u64, free: u64, req: u64| {
        if cap == 0 {
            None
        } else {
            Some((cap - free.min(cap) + req) as f64 / cap as f64)
        }
    };
    let c = &node.capacity;
    let parts = [
        frac(c.cpu_milli, load.free.cpu_milli, w.request.cpu_milli),
        frac(
            c.memory_bytes,
            load.free.memory_bytes,
            w.request.memory_bytes,
        ),
        frac(c.gpus as u64, load.free.gpus as u64, w.request.gpus as u64),
    ];
    let (sum, n) = parts
        .iter()
        .flatten()
        .fold((0.0, 0), |(s, n), f| (s + f.min(1.0), n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// The score of placing one more replica of `w` on `node`, which already
/// runs `same` of them. `node_health` is [`health`] of the node.
pub fn score(
    node: &Node,
    load: &NodeLoad,
    w: &Workload,
    same: u32,
    node_health: f64,
    strategy: Strategy,
    weights: &Weights,
) -> f64 {
    let used = utilisation_after(node, load, w);
    let fit = match strategy {
        Strategy::BinPack => used,
        Strategy::Spread => 1.0 - used,
    };
    let anti = same as f64 / (same as f64 + 1.0);
    let preferred = if w.prefer_labels.is_empty() {
        0.0
    } else {
        let hits = w
            .prefer_labels
            .iter()
            .filter(|(k, v)| node.labels.get(*k) == Some(*v))
            .count();
        hits as f64 / w.prefer_labels.len() as f64
    };
    weights.fit * fit - weights.anti_affinity * anti
        + weights.prefer_labels * preferred
        + weights.health * node_health
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use zlayer_model::Resources;

    fn node(labels: &[(&str, &str)]) -> Node {
        let capacity = Resources {
            cpu_milli: 4000,
            memory_bytes: 4 << 30,
            gpus: 0,
        };
        Node::ready("n", capacity, labels)
    }

    fn load(free_cpu: u64) -> NodeLoad {
        NodeLoad {
            free: Resources {
                cpu_milli: free_cpu,
                memory_bytes: 4 << 30,
                gpus: 0,
            },
            replicas: 0,
            exclusive_owner: None,
        }
    }

    fn w(prefer: &[(&str, &str)]) -> Workload {
        Workload {
            id: "d/s".into(),
            replicas: 1,
            request: Resources {
                cpu_milli: 1000,
                memory_bytes: 0,
                gpus: 0,
            },
            mode: crate::NodeMode::Shared,
            labels: BTreeMap::new(),
            prefer_labels: prefer
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pinned_node: None,
            retries: BTreeMap::new(),
            max_running: None,
            finished: Default::default(),
        }
    }

    #[test]
    fn bin_pack_prefers_the_fuller_node_and_spread_the_emptier() {
        let (n, wk, wt) = (node(&[]), w(&[]), Weights::default());
        let fuller = score(&n, &load(1000), &wk, 0, 1.0, Strategy::BinPack, &wt);
        let emptier = score(&n, &load(4000), &wk, 0, 1.0, Strategy::BinPack, &wt);
        assert!(fuller > emptier);
        let fuller = score(&n, &load(1000), &wk, 0, 1.0, Strategy::Spread, &wt);
        let emptier = score(&n, &load(4000), &wk, 0, 1.0, Strategy::Spread, &wt);
        assert!(emptier > fuller);
    }

    #[test]
    fn replicas_of_one_service_repel_and_preferred_labels_attract() {
        let wt = Weights::default();
        let wk = w(&[("zone", "a")]);
        let a = node(&[("zone", "a")]);
        let b = node(&[("zone", "b")]);
        let l = load(4000);
        assert!(
            score(&a, &l, &wk, 0, 1.0, Strategy::BinPack, &wt)
                > score(&b, &l, &wk, 0, 1.0, Strategy::BinPack, &wt)
        );
        assert!(
            score(&a, &l, &wk, 0, 1.0, Strategy::BinPack, &wt)
                > score(&a, &l, &wk, 1, 1.0, Strategy::BinPack, &wt)
        );
    }

    #[test]
    fn health_is_a_weighted_mean_of_the_reports() {
        let wt = Weights {
            bandwidth: 1.0,
            latency: 0.0,
            efficiency: 0.0,
            reputation: 1.0,
            ..Weights::default()
        };
        let h = NodeHealth {
            bandwidth: 0.5,
            latency: 0.0,
            efficiency: 0.0,
            reputation: 1.0,
        };
        assert!((health(&h, &wt) - 0.75).abs() < 1e-9);
        let n = node(&[]);
        let l = load(4000);
        let wk = w(&[]);
        assert!(
            score(&n, &l, &wk, 0, 1.0, Strategy::BinPack, &wt)
                > score(&n, &l, &wk, 0, 0.2, Strategy::BinPack, &wt)
        );
    }
}

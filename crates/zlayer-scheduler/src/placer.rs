//! Placement of one replica at a time over a snapshot of the cluster. Each
//! workload gets the list of nodes its static checks allow, computed once;
//! a placement walks that list from a cursor, keeps the first [`SAMPLE`]
//! nodes that pass the dynamic checks, and takes the best scored of them
//! (Nomad's approach: bounded work per placement, at the price of a best
//! among a sample rather than among all). Only when no node passes is the
//! whole list walked, which also yields the reason.

use std::collections::{BTreeMap, HashMap};

use crate::feasibility::{dynamic_check, static_check, Exclusion, NodeLoad};
use crate::model::{Node, Workload};
use crate::reason::Unplaceable;
use crate::score::{health, score, Strategy, Weights};
use crate::NodeMode;

/// Feasible nodes ranked per placement.
pub const SAMPLE: usize = 8;

/// Taken off the score of a node to avoid: more than any score's range, so
/// such a node wins only where no other fits.
const AVOIDED: f64 = 1.0e9;

struct Eligible {
    nodes: Vec<u32>,
    cursor: usize,
    excluded: BTreeMap<Exclusion, usize>,
}

pub struct Placer<'a> {
    nodes: &'a [Node],
    by_id: HashMap<&'a str, u32>,
    loads: Vec<NodeLoad>,
    health: Vec<f64>,
    workloads: HashMap<String, u32>,
    /// Replicas per (workload, node).
    same: HashMap<(u32, u32), u32>,
    eligible: HashMap<u32, Eligible>,
    strategy: Strategy,
    weights: Weights,
}

impl<'a> Placer<'a> {
    pub fn new(nodes: &'a [Node], strategy: Strategy, weights: Weights) -> Placer<'a> {
        Placer {
            nodes,
            by_id: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.id.as_str(), i as u32))
                .collect(),
            loads: nodes
                .iter()
                .map(|n| NodeLoad {
                    free: n.capacity,
                    replicas: 0,
                    exclusive_owner: None,
                })
                .collect(),
            health: nodes.iter().map(|n| health(&n.health, &weights)).collect(),
            workloads: HashMap::new(),
            same: HashMap::new(),
            eligible: HashMap::new(),
            strategy,
            weights,
        }
    }

    fn intern(&mut self, id: &str) -> u32 {
        let next = self.workloads.len() as u32;
        *self.workloads.entry(id.to_string()).or_insert(next)
    }

    /// Counts a replica that already runs on `node` against its resources.
    /// Returns false when no such node is known.
    pub fn account(&mut self, w: &Workload, node: &str) -> bool {
        let Some(&n) = self.by_id.get(node) else {
            return false;
        };
        let wid = self.intern(&w.id);
        self.commit(w, wid, n);
        true
    }

    fn commit(&mut self, w: &Workload, wid: u32, n: u32) {
        let load = &mut self.loads[n as usize];
        load.free.take(&w.request);
        load.replicas += 1;
        if w.mode == NodeMode::Exclusive {
            load.exclusive_owner = Some(wid);
        }
        *self.same.entry((wid, n)).or_insert(0) += 1;
    }

    fn eligible_for(&self, w: &Workload) -> Eligible {
        let mut nodes = Vec::new();
        let mut excluded = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match static_check(node, w) {
                Ok(()) => nodes.push(i as u32),
                Err(e) => *excluded.entry(e).or_insert(0) += 1,
            }
        }
        Eligible {
            nodes,
            cursor: 0,
            excluded,
        }
    }

    /// Places one more replica of `w`: the chosen node's id, or why none fits.
    pub fn place(&mut self, w: &Workload) -> Result<&'a str, Unplaceable> {
        self.place_avoiding(w, &[])
    }

    /// Like [`Placer::place`], preferring any other fitting node to those
    /// in `avoid` (a job task's retry shuns the nodes it failed on).
    pub fn place_avoiding(
        &mut self,
        w: &Workload,
        avoid: &[String],
    ) -> Result<&'a str, Unplaceable> {
        let wid = self.intern(&w.id);
        let mut el = match self.eligible.remove(&wid) {
            Some(el) => el,
            None => self.eligible_for(w),
        };
        let result = self.choose(w, wid, &mut el, avoid);
        self.eligible.insert(wid, el);
        let n = result?;
        self.commit(w, wid, n);
        Ok(self.nodes[n as usize].id.as_str())
    }

    fn choose(
        &self,
        w: &Workload,
        wid: u32,
        el: &mut Eligible,
        avoid: &[String],
    ) -> Result<u32, Unplaceable> {
        let len = el.nodes.len();
        let mut best: Option<(f64, usize)> = None;
        let (mut found, mut checked) = (0, 0);
        let mut dynamic: BTreeMap<Exclusion, usize> = BTreeMap::new();
        while checked < len && found < SAMPLE {
            let pos = (el.cursor + checked) % len;
            let n = el.nodes[pos];
            checked += 1;
            let same = self.same.get(&(wid, n)).copied().unwrap_or(0);
            let load = &self.loads[n as usize];
            match dynamic_check(load, w, wid, same) {
                Ok(()) => {
                    found += 1;
                    let node = &self.nodes[n as usize];
                    let shunned = if avoid.contains(&node.id) {
                        AVOIDED
                    } else {
                        0.0
                    };
                    let s = score(
                        node,
                        load,
                        w,
                        same,
                        self.health[n as usize],
                        self.strategy,
                        &self.weights,
                    ) - shunned;
                    if best.is_none_or(|(b, _)| s > b) {
                        best = Some((s, pos));
                    }
                }
                Err(e) => *dynamic.entry(e).or_insert(0) += 1,
            }
        }
        match best {
            Some((_, pos)) => {
                // Bin-packing keeps filling the chosen node; spreading moves on.
                el.cursor = match self.strategy {
                    Strategy::BinPack => pos,
                    Strategy::Spread => (el.cursor + checked) % len,
                };
                Ok(el.nodes[pos])
            }
            None => {
                let mut excluded = el.excluded.clone();
                for (e, n) in dynamic {
                    *excluded.entry(e).or_insert(0) += n;
                }
                Err(Unplaceable {
                    request: w.request,
                    mode: w.mode,
                    nodes: self.nodes.len(),
                    excluded: excluded.into_iter().collect(),
                })
            }
        }
    }
}

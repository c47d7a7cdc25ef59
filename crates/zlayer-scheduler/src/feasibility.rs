//! Feasibility: whether a node may take one more replica of a workload, and
//! if not, why. Static checks (state, labels, a volume's node) hold for the
//! whole scheduling pass; dynamic ones (free resources, the mode) change as
//! replicas are placed.

use crate::model::{Node, Workload};
use crate::NodeMode;
use zlayer_model::{NodeState, Resources};

/// Why a node cannot take a replica. Ordered as the checks run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exclusion {
    Down,
    Draining,
    MissingLabel(String, String),
    NotPinnedNode(String),
    Cpu,
    Memory,
    Gpu,
    /// Dedicated: the node already runs a replica of this service.
    AlreadyRunsOne,
    /// Exclusive: the node runs other work.
    NotEmpty,
    /// The node is held by an exclusive service.
    HeldExclusively,
}

/// The checks that do not depend on what this pass has placed.
pub fn static_check(node: &Node, w: &Workload) -> Result<(), Exclusion> {
    match node.state {
        NodeState::Down => return Err(Exclusion::Down),
        NodeState::Draining => return Err(Exclusion::Draining),
        NodeState::Ready => {}
    }
    for (k, v) in &w.labels {
        if node.labels.get(k) != Some(v) {
            return Err(Exclusion::MissingLabel(k.clone(), v.clone()));
        }
    }
    match &w.pinned_node {
        Some(p) if *p != node.id => Err(Exclusion::NotPinnedNode(p.clone())),
        _ => Ok(()),
    }
}

/// What the placer knows about one node at this point of the pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeLoad {
    pub free: Resources,
    /// Replicas of every workload on the node.
    pub replicas: u32,
    /// The workload (interned id) that holds the node exclusively.
    pub exclusive_owner: Option<u32>,
}

/// The checks that depend on placements made so far. `same` counts the
/// node's replicas of this workload.
pub fn dynamic_check(load: &NodeLoad, w: &Workload, wid: u32, same: u32) -> Result<(), Exclusion> {
    if load.exclusive_owner.is_some_and(|o| o != wid) {
        return Err(Exclusion::HeldExclusively);
    }
    match w.mode {
        NodeMode::Shared => {}
        NodeMode::Dedicated if same > 0 => return Err(Exclusion::AlreadyRunsOne),
        NodeMode::Dedicated => {}
        NodeMode::Exclusive if load.replicas > 0 => {
            return Err(if same > 0 {
                Exclusion::AlreadyRunsOne
            } else {
                Exclusion::NotEmpty
            })
        }
        NodeMode::Exclusive => {}
    }
    let (req, free) = (&w.request, &load.free);
    if req.cpu_milli > free.cpu_milli {
        return Err(Exclusion::Cpu);
    }
    if req.memory_bytes > free.memory_bytes {
        return Err(Exclusion::Memory);
    }
    if req.gpus > free.gpus {
        return Err(Exclusion::Gpu);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node(state: NodeState, labels: &[(&str, &str)]) -> Node {
        let capacity = Resources {
            cpu_milli: 4000,
            memory_bytes: 8 << 30,
            gpus: 1,
        };
        Node {
            state,
            ..Node::ready("n1", capacity, labels)
        }
    }

    fn workload(mode: NodeMode, gpus: u32) -> Workload {
        Workload {
            id: "d/s".into(),
            replicas: 1,
            request: Resources {
                cpu_milli: 1000,
                memory_bytes: 1 << 30,
                gpus,
            },
            mode,
            labels: BTreeMap::from([("gpu".into(), "true".into())]),
            prefer_labels: BTreeMap::new(),
            pinned_node: None,
            retries: BTreeMap::new(),
            max_running: None,
            finished: Default::default(),
        }
    }

    #[test]
    fn static_checks_state_labels_and_pinning() {
        let w = workload(NodeMode::Shared, 0);
        assert_eq!(
            static_check(&node(NodeState::Down, &[("gpu", "true")]), &w),
            Err(Exclusion::Down)
        );
        assert_eq!(
            static_check(&node(NodeState::Draining, &[("gpu", "true")]), &w),
            Err(Exclusion::Draining)
        );
        assert_eq!(
            static_check(&node(NodeState::Ready, &[("gpu", "false")]), &w),
            Err(Exclusion::MissingLabel("gpu".into(), "true".into()))
        );
        assert_eq!(
            static_check(&node(NodeState::Ready, &[("gpu", "true")]), &w),
            Ok(())
        );
        let mut pinned = w.clone();
        pinned.pinned_node = Some("n2".into());
        assert_eq!(
            static_check(&node(NodeState::Ready, &[("gpu", "true")]), &pinned),
            Err(Exclusion::NotPinnedNode("n2".into()))
        );
    }

    #[test]
    fn dynamic_checks_resources_and_modes() {
        let load = NodeLoad {
            free: Resources {
                cpu_milli: 1000,
                memory_bytes: 1 << 30,
                gpus: 0,
            },
            replicas: 1,
            exclusive_owner: None,
        };
        assert_eq!(
            dynamic_check(&load, &workload(NodeMode::Shared, 0), 0, 1),
            Ok(())
        );
        assert_eq!(
            dynamic_check(&load, &workload(NodeMode::Shared, 1), 0, 0),
            Err(Exclusion::Gpu)
        );
        assert_eq!(
            dynamic_check(&load, &workload(NodeMode::Dedicated, 0), 0, 1),
            Err(Exclusion::AlreadyRunsOne)
        );
        assert_eq!(
            dynamic_check(&load, &workload(NodeMode::Dedicated, 0), 0, 0),
            Ok(())
        );
        assert_eq!(
            dynamic_check(&load, &workload(NodeMode::Exclusive, 0), 0, 0),
            Err(Exclusion::NotEmpty)
        );
        let held = NodeLoad {
            exclusive_owner: Some(7),
            ..load
        };
        assert_eq!(
            dynamic_check(&held, &workload(NodeMode::Shared, 0), 0, 0),
            Err(Exclusion::HeldExclusively)
        );
        let mut big = workload(NodeMode::Shared, 0);
        big.request.cpu_milli = 1001;
        assert_eq!(dynamic_check(&load, &big, 0, 0), Err(Exclusion::Cpu));
        big.request.cpu_milli = 1;
        big.request.memory_bytes = (1 << 30) + 1;
        assert_eq!(dynamic_check(&load, &big, 0, 0), Err(Exclusion::Memory));
    }
}

//! The scheduler's view of the cluster and of what should run.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use zlayer_model::{NodeHealth, NodeState, Resources};
use zlayer_spec::{NodeMode, Service, StorageType};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub capacity: Resources,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    pub health: NodeHealth,
}

impl Node {
    /// A ready node with neutral health.
    pub fn ready(id: &str, capacity: Resources, labels: &[(&str, &str)]) -> Node {
        Node {
            id: id.to_string(),
            capacity,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state: NodeState::Ready,
            health: NodeHealth::default(),
        }
    }
}

/// One service's replicas as placement sees them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Workload {
    /// `deployment/service`.
    pub id: String,
    pub replicas: u32,
    pub request: Resources,
    pub mode: NodeMode,
    /// Labels a node must have.
    pub labels: BTreeMap<String, String>,
    /// Labels that make a node more attractive.
    pub prefer_labels: BTreeMap<String, String>,
    /// The node holding the service's named volume, once it has one.
    pub pinned_node: Option<String>,
    /// Job tasks (by replica) whose attempt failed: each moves to its next
    /// attempt on a node it has not failed on, where one fits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retries: BTreeMap<u32, TaskRetry>,
    /// A job's `parallelism`: the most of its unfinished tasks placed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// A job's tasks that are done (succeeded, or failed for good): they
    /// keep their assignment, count against no parallelism, and are never
    /// placed again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub finished: BTreeSet<u32>,
}

/// A job task's next attempt, as placement sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskRetry {
    /// The attempt its next assignment runs.
    pub attempt: u32,
    /// The nodes its failed attempts ran on: placed elsewhere when any other fits.
    pub avoid: Vec<String>,
    /// While the task's assignment has this generation, it is the failed
    /// one, and the task moves.
    pub failed_generation: u64,
}

impl Workload {
    /// The placement view of a spec's service.
    pub fn from_service(deployment: &str, name: &str, svc: &Service) -> Workload {
        let selector = svc.node_selector.clone().unwrap_or_default();
        Workload {
            id: format!("{deployment}/{name}"),
            replicas: svc.replica_count(),
            request: Resources {
                cpu_milli: svc
                    .resources
                    .requested_cpu()
                    .map(|c| (c * 1000.0).round() as u64)
                    .unwrap_or(0),
                memory_bytes: svc.resources.requested_memory().map(|m| m.0).unwrap_or(0),
                gpus: svc.resources.gpu.as_ref().map(|g| g.count).unwrap_or(0),
            },
            mode: svc.node_mode,
            labels: selector.labels,
            prefer_labels: selector.prefer_labels,
            pinned_node: None,
            retries: BTreeMap::new(),
            max_running: svc.parallelism,
            finished: BTreeSet::new(),
        }
    }

    /// The service's named volumes, with the size each asks for: they
    /// keep data on a node, so they pin the service there.
    pub fn named_volumes(svc: &Service) -> Vec<(String, Option<u64>)> {
        svc.storage
            .iter()
            .filter(|s| s.kind == StorageType::Named)
            .filter_map(|s| Some((s.name.clone()?, s.size.map(|b| b.0))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(resources: &str) -> Service {
        let text = format!(
            "version: v1\ndeployment: d\nservices:\n  web:\n    image: {{ name: demo }}\n    resources: {resources}\n"
        );
        let spec = zlayer_spec::parse("d.yaml", &text).expect("valid spec");
        spec.services["web"].clone()
    }

    /// The scheduler reserves what a service requests; a limit it does not
    /// request below is reserved whole (Kubernetes' default).
    #[test]
    fn a_workload_reserves_its_requests_else_its_limits() {
        for (resources, reserved) in [
            (
                "{ cpu: 4, memory: 1Gi, requests: { cpu: 0.5 } }",
                (500, 1 << 30),
            ),
            ("{ cpu: 4, memory: 1Gi }", (4000, 1 << 30)),
            ("{ requests: { cpu: 0.25, memory: 64Mi } }", (250, 64 << 20)),
        ] {
            let w = Workload::from_service("d", "web", &service(resources));
            assert_eq!(
                (w.request.cpu_milli, w.request.memory_bytes),
                reserved,
                "{resources}"
            );
        }
    }
}

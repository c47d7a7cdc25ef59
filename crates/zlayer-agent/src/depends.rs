//! `depends` conditions, counted across the cluster: this node's replicas as
//! it sees them now, the other nodes' as they last reported them. A down
//! node's report counts for nothing (`zlayer-control` shows it as `unknown`).
//!
//! `started`: every replica of the dependency runs; `healthy`: at least one
//! runs healthy; `ready`: every one runs healthy. A replica without a health
//! check counts as healthy while it runs.

use std::collections::BTreeMap;

use zlayer_model::ReplicaReport;
use zlayer_spec::{DependsCondition, Spec};

use crate::state::{key, Health, Replica, ReplicaState};

#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    healthy: bool,
    running: bool,
}

impl Slot {
    fn local(r: &Replica) -> Self {
        let running = r.state == ReplicaState::Running;
        Self {
            running,
            healthy: running && matches!(r.health, Health::Healthy | Health::None),
        }
    }

    fn reported(v: &ReplicaReport) -> Self {
        Self {
            running: v.is_running(),
            healthy: v.is_serving(),
        }
    }
}

/// `Err` names the dependency `name` still waits for. `elsewhere` (the other
/// nodes' replicas) is asked only when this node's replicas do not suffice.
pub(crate) fn check(
    spec: &Spec,
    name: &str,
    local: &BTreeMap<String, Replica>,
    elsewhere: impl FnOnce() -> Vec<ReplicaReport>,
) -> Result<(), String> {
    let mut elsewhere = Some(elsewhere);
    let mut reported: Vec<ReplicaReport> = Vec::new();
    for d in &spec.services[name].depends {
        let n = spec
            .services
            .get(&d.service)
            .map(|s| s.replica_count())
            .unwrap_or(0);
        if met(d.condition, n, &slots(spec, &d.service, n, local, &[])) {
            continue;
        }
        if let Some(ask) = elsewhere.take() {
            reported = ask();
        }
        if !met(
            d.condition,
            n,
            &slots(spec, &d.service, n, local, &reported),
        ) {
            return Err(
                format!("waiting for `{}` to be {:?}", d.service, d.condition).to_lowercase(),
            );
        }
    }
    Ok(())
}

/// The dependency's slots `1..=n`: this node's replica where it has one,
/// else the best report from another node (a stale one may linger briefly).
fn slots(
    spec: &Spec,
    service: &str,
    n: u32,
    local: &BTreeMap<String, Replica>,
    reported: &[ReplicaReport],
) -> Vec<Slot> {
    let workload = format!("{}/{service}", spec.deployment);
    (1..=n)
        .map(|i| match local.get(&key(&spec.deployment, service, i)) {
            Some(r) => Slot::local(r),
            None => reported
                .iter()
                .filter(|v| !v.surge && v.replica == i && v.workload == workload)
                .map(Slot::reported)
                .max()
                .unwrap_or_default(),
        })
        .collect()
}

fn met(condition: DependsCondition, n: u32, slots: &[Slot]) -> bool {
    let running = slots.iter().filter(|s| s.running).count() as u32;
    let healthy = slots.iter().filter(|s| s.healthy).count() as u32;
    match condition {
        DependsCondition::Started => running >= n.max(1),
        DependsCondition::Healthy => healthy >= 1,
        DependsCondition::Ready => healthy >= n,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn spec(condition: &str) -> Spec {
        let text = format!(
            "version: v1\ndeployment: d\nservices:\n  db:\n    image: {{ name: demo }}\n    scale: {{ mode: fixed, replicas: 2 }}\n  web:\n    image: {{ name: demo }}\n    depends: [{{ service: db, condition: {condition} }}]\n"
        );
        zlayer_spec::parse("t.yaml", &text).expect("valid spec")
    }

    fn here(idx: u32, state: ReplicaState, health: Health) -> (String, Replica) {
        let mut r = Replica::new("d", "db", idx, "rev");
        r.state = state;
        r.health = health;
        (r.key(), r)
    }

    fn there(idx: u32, state: ReplicaState, health: Health) -> ReplicaReport {
        ReplicaReport::new("d/db", idx, state, health, "rev")
    }

    #[test]
    fn a_healthy_replica_on_another_node_meets_healthy() {
        let local = BTreeMap::from([here(1, ReplicaState::Running, Health::Starting)]);
        let remote = || vec![there(2, ReplicaState::Running, Health::Healthy)];
        assert_eq!(check(&spec("healthy"), "web", &local, remote), Ok(()));
    }

    #[test]
    fn ready_needs_every_slot_healthy_wherever_it_runs() {
        let local = BTreeMap::from([here(1, ReplicaState::Running, Health::Healthy)]);
        let waiting = check(&spec("ready"), "web", &local, || {
            vec![there(2, ReplicaState::Running, Health::Starting)]
        });
        assert_eq!(waiting, Err("waiting for `db` to be ready".into()));
        let met = check(&spec("ready"), "web", &local, || {
            vec![there(2, ReplicaState::Running, Health::Healthy)]
        });
        assert_eq!(met, Ok(()));
    }

    #[test]
    fn exited_replicas_elsewhere_are_not_started() {
        let remote = || {
            vec![
                there(1, ReplicaState::Exited, Health::None),
                there(2, ReplicaState::Pending, Health::None),
            ]
        };
        let got = check(&spec("started"), "web", &BTreeMap::new(), remote);
        assert_eq!(got, Err("waiting for `db` to be started".into()));
    }

    #[test]
    fn other_nodes_are_not_asked_when_this_node_suffices() {
        let local = BTreeMap::from([
            here(1, ReplicaState::Running, Health::Healthy),
            here(2, ReplicaState::Running, Health::None),
        ]);
        let asked = Cell::new(false);
        let got = check(&spec("ready"), "web", &local, || {
            asked.set(true);
            Vec::new()
        });
        assert_eq!(got, Ok(()));
        assert!(!asked.get());
    }

    #[test]
    fn a_replacement_beside_its_slot_is_not_counted() {
        let mut surge = there(1, ReplicaState::Running, Health::Healthy);
        surge.surge = true;
        let got = check(&spec("healthy"), "web", &BTreeMap::new(), || vec![surge]);
        assert_eq!(got, Err("waiting for `db` to be healthy".into()));
    }
}

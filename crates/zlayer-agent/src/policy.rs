//! Network policy on this node: each local replica of a service with a
//! `network_policy` takes connections only from the replicas (on any node)
//! of the services it lists. Addresses come from this node's replicas and
//! the other nodes' reports; the rules are applied only when they change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use zlayer_model::ReplicaReport;
use zlayer_net::IngressRule;

use crate::agent::Agent;
use crate::reconcile::Specs;
use crate::state::Replica;

impl Agent {
    pub(crate) fn enforce_policy(
        &self,
        specs: &Specs,
        replicas: &BTreeMap<String, Replica>,
        elsewhere: &[ReplicaReport],
    ) {
        let rules = ingress_rules(specs, replicas, elsewhere);
        let mut applied = self
            .applied_policy
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if applied.as_ref() == Some(&rules) {
            return;
        }
        let table = format!("zlayer_policy_{}", self.paths.bridge);
        match zlayer_net::ensure_policy(&table, &rules) {
            Ok(()) => *applied = Some(rules),
            Err(e) => {
                tracing::warn!("network policy not applied: {e}");
                *applied = None;
            }
        }
    }
}

/// Every address a replica of `deployment/service` has, here or elsewhere.
fn addresses(
    replicas: &BTreeMap<String, Replica>,
    elsewhere: &[ReplicaReport],
) -> BTreeMap<(String, String), BTreeSet<Ipv4Addr>> {
    let mut by_service: BTreeMap<(String, String), BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for r in replicas.values() {
        if let Some(ip) = r.ip {
            by_service
                .entry((r.deployment.clone(), r.service.clone()))
                .or_default()
                .insert(ip);
        }
    }
    for r in elsewhere {
        let (Some(ip), Some((dep, svc))) = (r.ip, r.workload.split_once('/')) else {
            continue;
        };
        by_service
            .entry((dep.to_string(), svc.to_string()))
            .or_default()
            .insert(ip);
    }
    by_service
}

fn ingress_rules(
    specs: &Specs,
    replicas: &BTreeMap<String, Replica>,
    elsewhere: &[ReplicaReport],
) -> Vec<IngressRule> {
    let by_service = addresses(replicas, elsewhere);
    let mut rules = Vec::new();
    for (_, spec) in specs {
        for (name, svc) in &spec.services {
            let Some(policy) = &svc.network_policy else {
                continue;
            };
            let from: BTreeSet<Ipv4Addr> = policy
                .ingress_from
                .iter()
                .map(|f| match f.split_once('/') {
                    Some((d, s)) => (d.to_string(), s.to_string()),
                    None => (spec.deployment.clone(), f.clone()),
                })
                .filter_map(|k| by_service.get(&k))
                .flatten()
                .copied()
                .collect();
            for r in replicas
                .values()
                .filter(|r| r.deployment == spec.deployment && &r.service == name)
            {
                if let Some(to) = r.ip {
                    rules.push(IngressRule {
                        to,
                        from: from.iter().copied().collect(),
                    });
                }
            }
        }
    }
    rules.sort_by_key(|r| r.to);
    rules
}

//! The volume claims a scheduler pass needs. A placement of a service that
//! mounts a named volume nobody holds yet claims it on the placement's
//! node; the first such placement of a pass wins, and a placement that
//! would put a volume on another node in the same pass waits for the next
//! pass, which pins it. A service running with a volume that no record
//! holds (placed before volumes were records) claims it where it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use zlayer_model::Assignment;
use zlayer_scheduler::Workload;
use zlayer_spec::DeploymentRevision;
use zlayer_state::volumes::{key, VolumeClaim};
use zlayer_state::ClusterState;

/// For each service with named volumes: its deployment and its volumes.
type Needs = BTreeMap<String, (String, Vec<(String, Option<u64>)>)>;

fn needs(specs: &[Arc<DeploymentRevision>]) -> Needs {
    let mut out = Needs::new();
    for spec in specs.iter().filter_map(|d| d.parsed.as_ref().ok()) {
        for (name, svc) in &spec.services {
            let volumes = Workload::named_volumes(svc);
            if !volumes.is_empty() {
                out.insert(
                    format!("{}/{name}", spec.deployment),
                    (spec.deployment.clone(), volumes),
                );
            }
        }
    }
    out
}

/// The claims `place` needs; placements that must wait are taken out.
pub(crate) fn claims(
    s: &ClusterState,
    specs: &[Arc<DeploymentRevision>],
    place: &mut Vec<Assignment>,
) -> Vec<VolumeClaim> {
    let needs = needs(specs);
    if needs.is_empty() {
        return Vec::new();
    }
    let at_ms = zlayer_state::now_ms();
    let mut pass = Pass {
        s,
        held_now: BTreeMap::new(),
        users_now: BTreeSet::new(),
        out: Vec::new(),
        at_ms,
    };
    for a in s.assignments.values() {
        if let Some((deployment, volumes)) = needs.get(&a.workload) {
            pass.claim_all(deployment, volumes, a);
        }
    }
    place.retain(|a| {
        let Some((deployment, volumes)) = needs.get(&a.workload) else {
            return true;
        };
        let elsewhere = volumes
            .iter()
            .any(|(v, _)| pass.holder(deployment, v).is_some_and(|n| n != a.node));
        if !elsewhere {
            pass.claim_all(deployment, volumes, a);
        }
        !elsewhere
    });
    pass.out
}

struct Pass<'a> {
    s: &'a ClusterState,
    /// Volumes claimed in this pass, with their node.
    held_now: BTreeMap<String, String>,
    /// `(volume, user)` added in this pass.
    users_now: BTreeSet<(String, String)>,
    out: Vec<VolumeClaim>,
    at_ms: u64,
}

impl Pass<'_> {
    fn holder(&self, deployment: &str, volume: &str) -> Option<String> {
        let k = key(deployment, volume);
        self.s
            .volumes
            .records
            .get(&k)
            .map(|r| r.node.clone())
            .or_else(|| self.held_now.get(&k).cloned())
    }

    /// Claims each volume `a` mounts that is not held yet, on `a`'s node,
    /// and records `a`'s service as a user of the others.
    fn claim_all(&mut self, deployment: &str, volumes: &[(String, Option<u64>)], a: &Assignment) {
        for (v, size) in volumes {
            let k = key(deployment, v);
            let known_user = self
                .s
                .volumes
                .records
                .get(&k)
                .is_some_and(|r| r.users.contains(&a.workload));
            let held = self.holder(deployment, v).is_some();
            if (held && known_user) || self.users_now.contains(&(k.clone(), a.workload.clone())) {
                continue;
            }
            if !held {
                self.held_now.insert(k.clone(), a.node.clone());
            }
            self.users_now.insert((k, a.workload.clone()));
            self.out.push(VolumeClaim {
                deployment: deployment.to_string(),
                name: v.clone(),
                node: a.node.clone(),
                size_bytes: *size,
                user: a.workload.clone(),
                at_ms: self.at_ms,
            });
        }
    }
}

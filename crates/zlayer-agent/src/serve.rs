//! Service discovery on the node: DNS names and published ports follow the
//! replicas that may serve (running, and healthy or without a check).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use zlayer_net::PortPublisher;
use zlayer_spec::Expose;

use crate::agent::Agent;
use crate::reconcile::Specs;
use crate::state::{Health, Replica, ReplicaState};

fn serving(r: &Replica) -> bool {
    r.state == ReplicaState::Running && matches!(r.health, Health::Healthy | Health::None)
}

impl Agent {
    pub(crate) async fn publish(&self, specs: &Specs, replicas: &BTreeMap<String, Replica>) {
        self.dns.replace(dns_names(replicas));
        let wanted = self.port_backends(specs, replicas);
        let mut pubs = self.publishers.lock().await;
        pubs.retain(|port, _| wanted.contains_key(port));
        for (port, backends) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = pubs.entry(port) {
                match PortPublisher::bind(SocketAddr::from(([0, 0, 0, 0], port))).await {
                    Ok(p) => {
                        slot.insert(p);
                    }
                    Err(e) => {
                        if self
                            .publish_errors
                            .lock()
                            .is_ok_and(|mut seen| seen.insert(port))
                        {
                            tracing::warn!("{e}");
                        }
                        continue;
                    }
                }
            }
            if let Some(p) = pubs.get(&port) {
                p.backends.send_if_modified(|cur| {
                    let changed = *cur != backends;
                    *cur = backends.clone();
                    changed
                });
            }
        }
    }

    /// Takes a replica out of DNS and every published port before it is
    /// stopped, so no new connection reaches it while it drains.
    pub(crate) async fn unpublish(&self, r: &Replica) {
        let Some(ip) = r.ip else { return };
        self.dns.forget(ip);
        for p in self.publishers.lock().await.values() {
            p.backends.send_if_modified(|cur| {
                let before = cur.len();
                cur.retain(|a| a.ip() != std::net::IpAddr::V4(ip));
                cur.len() != before
            });
        }
    }

    /// Each published port of the current specs, with the replicas behind it.
    /// A replica is reached on the container port of its own revision, which
    /// matters while a rollout changes that port.
    fn port_backends(
        &self,
        specs: &Specs,
        replicas: &BTreeMap<String, Replica>,
    ) -> HashMap<u16, Vec<SocketAddr>> {
        let mut wanted: HashMap<u16, Vec<SocketAddr>> = HashMap::new();
        for (_, spec) in specs {
            for (name, svc) in &spec.services {
                for ep in svc.endpoints.iter().filter(|e| e.expose == Expose::Public) {
                    let backends = wanted.entry(ep.published_port()).or_default();
                    for r in replicas.values().filter(|r| {
                        serving(r) && r.deployment == spec.deployment && &r.service == name
                    }) {
                        let Some(ip) = r.ip else { continue };
                        let port = self
                            .template_of(r)
                            .and_then(|t| {
                                t.service
                                    .endpoints
                                    .iter()
                                    .find(|e| e.name == ep.name)
                                    .map(|e| e.container_port())
                            })
                            .unwrap_or(ep.container_port());
                        backends.push(SocketAddr::from((ip, port)));
                    }
                }
            }
        }
        wanted
    }
}

/// `svc`, `svc.dep`, `svc.dep.zlayer`, and per replica `svc-N[.dep.zlayer]`.
fn dns_names(replicas: &BTreeMap<String, Replica>) -> HashMap<String, Vec<Ipv4Addr>> {
    let mut names: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    for r in replicas.values().filter(|r| serving(r)) {
        let Some(ip) = r.ip else { continue };
        for n in [
            r.service.clone(),
            format!("{}.{}", r.service, r.deployment),
            format!("{}.{}.zlayer", r.service, r.deployment),
            format!("{}-{}", r.service, r.index),
            format!("{}-{}.{}.zlayer", r.service, r.index, r.deployment),
        ] {
            names.entry(n).or_default().push(ip);
        }
    }
    names
}

//! Service discovery on the node: DNS names, published ports and ingress
//! routes follow the replicas that may serve (running, and healthy or
//! without a check) on every node: this node's own, and the others' from
//! their reports (reached through the mesh).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use zlayer_model::ReplicaReport;
use zlayer_net::{Published, Transport};
use zlayer_spec::{Endpoint, Expose, Protocol};

use crate::agent::Agent;
use crate::reconcile::Specs;
use crate::state::{Health, Replica, ReplicaState};

/// How long the other nodes get, once the drain is committed, to apply it
/// and run a reconcile round (every 250 ms) that rebuilds their routes.
const ROUTE_PROPAGATION: std::time::Duration = std::time::Duration::from_millis(750);

fn serving(r: &Replica) -> bool {
    r.state == ReplicaState::Running && matches!(r.health, Health::Healthy | Health::None)
}

impl Agent {
    pub(crate) async fn publish(&self, specs: &Specs, replicas: &BTreeMap<String, Replica>) {
        let here = replicas
            .values()
            .filter(|r| serving(r))
            .filter_map(|r| Some((r.deployment.clone(), r.service.clone(), r.index, r.ip?)));
        let reports = self.cluster.reported_elsewhere();
        self.enforce_policy(specs, replicas, &reports);
        let elsewhere = reports.iter().filter(|r| r.is_serving()).filter_map(|r| {
            let (dep, svc) = r.workload.split_once('/')?;
            Some((dep.to_string(), svc.to_string(), r.replica, r.ip?))
        });
        self.dns.replace(dns_names(here.chain(elsewhere)));
        if let Some(ingress) = &self.ingress {
            ingress.set_routes(self.ingress_routes(specs, replicas, &reports));
            self.refresh_certificates(specs).await;
        }
        let wanted = self.port_backends(specs, replicas, &reports);
        let mut pubs = self.publishers.lock().await;
        pubs.retain(|port, _| wanted.contains_key(port));
        for ((transport, port), backends) in wanted {
            let key = (transport, port);
            if let std::collections::hash_map::Entry::Vacant(slot) = pubs.entry(key) {
                match Published::bind(
                    transport,
                    SocketAddr::from(([0, 0, 0, 0], port)),
                    self.port_max_connections,
                )
                .await
                {
                    Ok(p) => {
                        slot.insert(p);
                    }
                    Err(e) => {
                        if self
                            .publish_errors
                            .lock()
                            .is_ok_and(|mut seen| seen.insert(key))
                        {
                            tracing::warn!("{e}");
                        }
                        continue;
                    }
                }
            }
            if let Some(p) = pubs.get(&key) {
                p.backends().send_if_modified(|cur| {
                    let changed = *cur != backends;
                    *cur = backends.clone();
                    changed
                });
            }
        }
    }

    /// Takes a replica out of DNS and every published port, then waits up
    /// to `drain` for the connections those ports forward to it to close,
    /// so it is stopped with no request in flight through the node.
    pub(crate) async fn unpublish(&self, r: &Replica, drain: std::time::Duration) {
        let Some(v4) = r.ip else { return };
        self.withdraw_from_cluster(r, drain / 2).await;
        self.dns.forget(v4);
        let ip = std::net::IpAddr::V4(v4);
        let ingress_drained = self.ingress.as_ref().map(|p| {
            p.withdraw(ip);
            p.drained(ip)
        });
        let mut drained: Vec<_> = self
            .publishers
            .lock()
            .await
            .values()
            .map(|p| {
                p.backends().send_if_modified(|cur| {
                    let before = cur.len();
                    cur.retain(|a| a.ip() != ip);
                    cur.len() != before
                });
                futures::future::Either::Left(p.drained(ip))
            })
            .collect();
        drained.extend(ingress_drained.map(futures::future::Either::Right));
        if tokio::time::timeout(drain, futures::future::join_all(drained))
            .await
            .is_err()
        {
            tracing::info!(
                replica = %r.key(),
                "connections still open after {drain:?}; stopping it anyway"
            );
        }
    }

    /// Reports the replica as draining and waits, up to `limit`, until the
    /// cluster has committed that and the other nodes have had a round to
    /// take it out of their routes and ports: they send to replicas of
    /// every node, and would otherwise still pick one that is stopping.
    async fn withdraw_from_cluster(&self, r: &Replica, limit: std::time::Duration) {
        if self.cluster.other_nodes() == 0 {
            return;
        }
        let key = r.key();
        if let Ok(mut d) = self.draining.lock() {
            d.insert(key.clone());
        }
        self.cluster
            .report(self.local_reports(), self.local_rollout_reports());
        let workload = format!("{}/{}", r.deployment, r.service);
        let committed = async {
            loop {
                let seen = self
                    .cluster
                    .committed_here()
                    .iter()
                    .find(|c| c.workload == workload && c.replica == r.index)
                    .is_none_or(|c| c.draining || c.container_id != r.container_id);
                if seen {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            // The others apply the entry and rebuild their routes within a round.
            tokio::time::sleep(ROUTE_PROPAGATION).await;
        };
        if tokio::time::timeout(limit, committed).await.is_err() {
            tracing::info!(replica = %key, "the cluster did not confirm the drain within {limit:?}; stopping it anyway");
        }
    }

    pub(crate) fn is_draining(&self, key: &str) -> bool {
        self.draining.lock().is_ok_and(|d| d.contains(key))
    }

    pub(crate) fn done_draining(&self, key: &str) {
        if let Ok(mut d) = self.draining.lock() {
            d.remove(key);
        }
    }

    /// Each published port of the current specs, with the serving replicas
    /// of every node behind it (ingress routes are not ports).
    fn port_backends(
        &self,
        specs: &Specs,
        replicas: &BTreeMap<String, Replica>,
        elsewhere: &[ReplicaReport],
    ) -> HashMap<(Transport, u16), Vec<SocketAddr>> {
        let mut wanted: HashMap<(Transport, u16), Vec<SocketAddr>> = HashMap::new();
        for (_, spec) in specs {
            for (name, svc) in &spec.services {
                let published = svc
                    .endpoints
                    .iter()
                    .filter(|e| e.expose == Expose::Public && !e.is_ingress_route());
                for ep in published {
                    let backends =
                        self.endpoint_backends(&spec.deployment, name, ep, replicas, elsewhere);
                    let transport = match ep.protocol {
                        Protocol::Udp => Transport::Udp,
                        _ => Transport::Tcp,
                    };
                    wanted
                        .entry((transport, ep.published_port()))
                        .or_default()
                        .extend(backends);
                }
            }
        }
        wanted
    }

    /// Where an endpoint's serving replicas listen, on this node and the
    /// others. Each is reached on the container port of its own revision,
    /// which matters while a rollout changes that port.
    pub(crate) fn endpoint_backends(
        &self,
        deployment: &str,
        service: &str,
        ep: &Endpoint,
        replicas: &BTreeMap<String, Replica>,
        elsewhere: &[ReplicaReport],
    ) -> Vec<SocketAddr> {
        let port_of = |revision: &str| {
            self.template_by_key(&crate::template::key(deployment, service, revision))
                .and_then(|t| {
                    t.service
                        .endpoints
                        .iter()
                        .find(|e| e.name == ep.name)
                        .map(|e| e.container_port())
                })
                .unwrap_or(ep.container_port())
        };
        let here = replicas
            .values()
            .filter(|r| serving(r) && r.deployment == deployment && r.service == service)
            .filter_map(|r| Some(SocketAddr::from((r.ip?, port_of(&r.revision)))));
        let workload = format!("{deployment}/{service}");
        let there = elsewhere
            .iter()
            .filter(|r| r.is_serving() && r.workload == workload)
            .filter_map(|r| Some(SocketAddr::from((r.ip?, port_of(&r.revision)))));
        let mut all: Vec<SocketAddr> = here.chain(there).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// `svc`, `svc.dep`, `svc.dep.zlayer`, and per replica `svc-N[.dep.zlayer]`,
/// for each serving replica as (deployment, service, index, address).
fn dns_names(
    serving: impl Iterator<Item = (String, String, u32, Ipv4Addr)>,
) -> HashMap<String, Vec<Ipv4Addr>> {
    let mut names: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    for (dep, svc, index, ip) in serving {
        for n in [
            svc.clone(),
            format!("{svc}.{dep}"),
            format!("{svc}.{dep}.zlayer"),
            format!("{svc}-{index}"),
            format!("{svc}-{index}.{dep}.zlayer"),
        ] {
            let ips = names.entry(n).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    names
}

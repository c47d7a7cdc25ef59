//! The agent's view of the cluster ([`zlayer_agent::desired::Cluster`]),
//! served from this node's control plane.

use std::sync::Arc;

use zlayer_agent::desired::{Cluster, Slots};
use zlayer_control::Control;
use zlayer_model::{ReplicaReport, RolloutReport};
use zlayer_spec::DeploymentRevision;

pub struct ControlPort(pub Arc<Control>);

impl Cluster for ControlPort {
    fn deployments(&self) -> Vec<Arc<DeploymentRevision>> {
        self.0.specs()
    }
    fn assigned(&self) -> Slots {
        self.0.assigned_here()
    }
    fn fenced(&self) -> bool {
        self.0.fenced()
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
    fn report(&self, replicas: Vec<ReplicaReport>, rollouts: Vec<RolloutReport>) {
        self.0.report_local(replicas, rollouts);
    }
    fn reported_elsewhere(&self) -> Vec<ReplicaReport> {
        self.0.reported_elsewhere()
    }
    fn committed_here(&self) -> Vec<ReplicaReport> {
        self.0.committed_here()
    }
    fn other_nodes(&self) -> usize {
        self.0.other_live_nodes()
    }
    fn acme_certificate(&self, host: &str) -> Result<Option<(String, String, u64)>, String> {
        let host = host.to_ascii_lowercase();
        let Some(c) = self.0.read(|s| s.acme.certs.get(&host).cloned()) else {
            return Ok(None);
        };
        let key = self
            .0
            .member
            .acme_seal_key()
            .map_err(|e| format!("its ACME key is sealed with the cluster CA key: {e}"))?
            .open(&host, &c.sealed_key)
            .map_err(|e| e.to_string())?;
        let key = String::from_utf8(key).map_err(|_| "the opened key is not PEM".to_string())?;
        Ok(Some((c.cert_pem, key, c.not_before_ms)))
    }
    fn ingress_certificate(
        &self,
        hosts: Vec<String>,
    ) -> futures::future::BoxFuture<'static, Result<(String, String), String>> {
        let issued = self.0.member.issue_ingress_certificate(&hosts);
        Box::pin(async move { issued })
    }
}

//! The agent's view of the cluster ([`zlayer_agent::desired::Cluster`]),
//! served from this node's control plane.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use zlayer_agent::desired::{Cluster, Slots, TaskAttempt};
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
    fn task_attempt(&self, workload: &str, replica: u32, revision: &str) -> TaskAttempt {
        self.0.read(|s| {
            let Some(t) = s.jobs.task(workload, replica, revision) else {
                return TaskAttempt::FIRST;
            };
            let key = zlayer_state::AssignmentKey {
                workload: workload.to_string(),
                replica,
            };
            match s.assignments.get(&key) {
                // Moved past the failed assignment: the attempt it was given.
                Some(a) if a.generation != t.failed_generation => TaskAttempt {
                    number: a.attempt().max(t.attempt),
                    used_ms: t.used_ms,
                },
                // Still the failed one: the leader has yet to move it.
                _ => TaskAttempt {
                    number: t.attempt - 1,
                    used_ms: t.used_ms,
                },
            }
        })
    }
    fn usage_totals(&self) -> Vec<zlayer_model::UsageTotals> {
        let me = self.0.node.name.clone();
        self.0.read(|s| {
            s.usage
                .totals
                .values()
                .filter(|t| t.node == me)
                .cloned()
                .collect()
        })
    }
    fn record_usage(
        &self,
        records: Vec<zlayer_model::UsageRecord>,
    ) -> futures::future::BoxFuture<'static, Result<(), String>> {
        let control = self.0.clone();
        Box::pin(async move {
            control
                .write(zlayer_state::Command::RecordUsage(records))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
    fn restarts(&self, deployment: &str, service: &str) -> u64 {
        self.0.read(|s| {
            s.deployments
                .get(deployment)
                .and_then(|d| d.restarts.get(service).copied())
                .unwrap_or(0)
        })
    }
    fn secret_versions(&self, names: &BTreeSet<String>) -> BTreeMap<String, u64> {
        self.0.read(|s| {
            names
                .iter()
                .filter_map(|n| Some((n.clone(), s.secrets.secrets.get(n)?.version)))
                .collect()
        })
    }
    fn config_versions(&self, names: &BTreeSet<String>) -> BTreeMap<String, u64> {
        self.0.read(|s| {
            names
                .iter()
                .filter_map(|n| Some((n.clone(), s.configs.get(n)?.version)))
                .collect()
        })
    }
    fn config_value(&self, name: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        let data = self
            .0
            .read(|s| s.configs.get(name).map(|c| c.data.clone()))?;
        base64::engine::general_purpose::STANDARD.decode(data).ok()
    }
    fn secret_values(
        &self,
        deployment: &str,
        service: &str,
        names: Vec<String>,
    ) -> futures::future::BoxFuture<'static, Result<BTreeMap<String, Vec<u8>>, String>> {
        let req = zlayer_state::secrets::SecretsRequest {
            deployment: deployment.to_string(),
            service: service.to_string(),
            names,
        };
        let control = self.0.clone();
        Box::pin(async move {
            let values = control.member.secret_values(req).await?;
            Ok(values.into_iter().map(|(n, (_, v))| (n, v)).collect())
        })
    }
    fn roll_back(
        &self,
        deployment: &str,
        from: u64,
    ) -> futures::future::BoxFuture<'static, Result<u64, String>> {
        let (control, deployment) = (self.0.clone(), deployment.to_string());
        Box::pin(async move {
            control
                .roll_back(&deployment, from)
                .await
                .map_err(|e| e.to_string())
        })
    }
    fn volume_hold(&self, deployment: &str, name: &str) -> zlayer_model::VolumeHold {
        self.0.volume_hold(deployment, name)
    }
    fn volume_removed(&self, volume: &str, id: u64) -> bool {
        self.0.volume_removed(volume, id)
    }
    fn report_volumes(&self, usage: Vec<zlayer_model::VolumeUsage>) {
        self.0.report_volumes(usage);
    }
    fn acme_issued(&self, host: &str) -> Option<u64> {
        let host = host.to_ascii_lowercase();
        self.0
            .read(|s| s.acme.certs.get(&host).map(|c| c.not_before_ms))
    }
    fn acme_certificate(
        &self,
        host: &str,
    ) -> futures::future::BoxFuture<'static, Result<(String, String, u64), String>> {
        let host = host.to_ascii_lowercase();
        let control = self.0.clone();
        Box::pin(async move { control.member.acme_certificate(&host).await })
    }
    fn ingress_certificate(
        &self,
        hosts: Vec<String>,
    ) -> futures::future::BoxFuture<'static, Result<(String, String), String>> {
        let control = self.0.clone();
        Box::pin(async move { control.member.ingress_certificate(&hosts).await })
    }
}

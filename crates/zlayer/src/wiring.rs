//! The agent's view of the cluster, served by this node's control plane.

use std::sync::Arc;

use futures::future::BoxFuture;
use zlayer_agent::desired::{Cluster, Slots};
use zlayer_agent::state::Deployment;
use zlayer_api::{ClusterReply, ClusterRequest, ReplicaView, RolloutView};
use zlayer_control::Control;

pub struct ControlPort(pub Arc<Control>);

impl Cluster for ControlPort {
    fn deployments(&self) -> Vec<Deployment> {
        self.0
            .deployments()
            .into_iter()
            .map(|d| Deployment {
                name: d.name,
                file: d.current.file,
                text: d.current.text,
                env: d.current.env,
            })
            .collect()
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
    fn put_deployment(&self, d: Deployment) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            self.0
                .put_deployment(&d.name, &d.file, &d.text, &d.env)
                .await
                .map_err(|e| e.to_string())
        })
    }
    fn remove_deployment(&self, name: String) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            self.0
                .remove_deployment(&name)
                .await
                .map_err(|e| e.to_string())
        })
    }
    fn report(&self, replicas: &[ReplicaView], rollouts: &[RolloutView]) {
        self.0.report_views(replicas, rollouts);
    }
    fn elsewhere(&self) -> Vec<ReplicaView> {
        self.0.elsewhere()
    }
    fn rollouts_elsewhere(&self) -> Vec<RolloutView> {
        self.0.rollouts_elsewhere()
    }
    fn admin(&self, req: ClusterRequest) -> BoxFuture<'_, Result<ClusterReply, String>> {
        Box::pin(async move { self.0.admin(req).await.map_err(|e| e.to_string()) })
    }
}

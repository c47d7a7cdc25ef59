//! The node's answers to the API's closed set of requests.

use zlayer_api::{
    ApplyRequest, ApplyResponse, Backend, ClusterReply, ClusterRequest, Event, ReplicaLocation,
    ReplicaView, RolloutView,
};

use crate::node::Node;

impl Backend for Node {
    async fn apply(&self, req: ApplyRequest) -> Result<ApplyResponse, String> {
        Node::apply(self, req).await
    }
    async fn down(&self, deployment: String) -> Result<(), String> {
        Node::down(self, &deployment).await
    }
    async fn ps(&self) -> Vec<ReplicaView> {
        self.views()
    }
    async fn events(&self) -> Vec<Event> {
        Node::events(self)
    }
    async fn rollouts(&self) -> Vec<RolloutView> {
        self.rollout_views()
    }
    async fn watch(&self, after: u64) -> u64 {
        Node::watch(self, after).await
    }
    async fn locate(&self, target: String) -> Result<Vec<ReplicaLocation>, String> {
        Node::locate(self, &target)
    }
    async fn metrics(&self) -> String {
        crate::metrics::render(self)
    }
    async fn cluster(&self, req: ClusterRequest) -> Result<ClusterReply, String> {
        self.cluster.admin(req).await
    }
    fn shutdown(&self) {
        self.quit.notify_one();
    }
}

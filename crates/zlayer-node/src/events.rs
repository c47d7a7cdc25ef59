//! The other nodes' events, for `zlayer events`: each live node is asked
//! for its own over mTLS (`/api/v1/events`, answered as forwarded), all at
//! once and each within [`PATIENCE`]. Only a manager may ask (a worker's
//! certificate forwards nothing), so a worker shows its own events only.

use std::time::Duration;

use zlayer_api::Event;
use zlayer_control::Control;
use zlayer_model::{ClusterRole, NodeState};

const PATIENCE: Duration = Duration::from_secs(2);

pub(crate) async fn elsewhere(control: &Control) -> Vec<Event> {
    let me = control.node.id;
    let (manager, others): (bool, Vec<(String, String)>) = control.read(|s| {
        (
            s.nodes
                .get(&me)
                .is_some_and(|n| n.role == ClusterRole::Manager),
            s.nodes
                .values()
                .filter(|n| n.id != me && n.state != NodeState::Down)
                .map(|n| (n.name.clone(), n.addr.clone()))
                .collect(),
        )
    });
    if !manager {
        return Vec::new();
    }
    let client = control.member.peer_client();
    let asks = others.into_iter().map(|(name, addr)| {
        let client = client.clone();
        async move {
            let got: Result<Vec<Event>, _> =
                client.call(&addr, "/api/v1/events", &(), PATIENCE).await;
            got.map_err(|e| tracing::debug!("events of node {name}: {e}"))
                .unwrap_or_default()
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

//! The node's heartbeat: a `Heartbeat` command committed through Raft every
//! interval, carrying the agent's replica report whenever it changed. A
//! committed heartbeat is proof that a quorum still counts this node in;
//! without one for the down timeout, `Control::fenced` turns true.

use std::sync::Arc;
use std::time::Instant;

use zlayer_state::{Command, ReplicaStatus, Response};

use crate::Control;

pub(crate) async fn run(c: Arc<Control>) {
    let mut tick = tokio::time::interval(c.liveness.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the last committed heartbeat reported; `None` until one has.
    let mut reported: Option<Vec<ReplicaStatus>> = None;
    loop {
        tick.tick().await;
        let now = c.report.borrow().clone();
        let replicas = (reported.as_ref() != Some(&now)).then(|| now.clone());
        let cmd = Command::Heartbeat {
            id: c.node.id,
            at_ms: zlayer_state::now_ms(),
            replicas,
        };
        let sent = Instant::now();
        match tokio::time::timeout(c.liveness.down_after, c.member.write(cmd)).await {
            Ok(Ok(Response::Done)) => {
                if let Ok(mut t) = c.last_ack.lock() {
                    *t = sent;
                }
                reported = Some(now);
            }
            Ok(Ok(Response::Refused(why))) => {
                tracing::warn!(
                    "heartbeat refused: {why} (was this node removed with `zlayer node rm`?)"
                );
            }
            Ok(Ok(other)) => tracing::warn!("heartbeat: unexpected answer {other:?}"),
            Ok(Err(e)) => tracing::debug!("heartbeat: {e}"),
            Err(_) => tracing::debug!("heartbeat: no answer within {:?}", c.liveness.down_after),
        }
    }
}

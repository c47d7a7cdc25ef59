//! The node's heartbeat: a `Heartbeat` command committed through Raft every
//! interval, carrying the agent's report (replicas and rollouts) and the
//! node's health (`health`), each only when it changed. A
//! committed heartbeat is proof that a quorum still counts this node in;
//! without one for the down timeout, `Control::fenced` turns true.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zlayer_scheduler::NodeHealth;
use zlayer_state::{Command, Response};

use crate::control::Report;
use crate::Control;

pub(crate) async fn run(c: Arc<Control>) {
    let mut tick = tokio::time::interval(c.liveness.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the last committed heartbeat reported; `None` until one has.
    let mut reported: Option<Report> = None;
    let mut reported_health: Option<NodeHealth> = None;
    let mut rtt = Duration::ZERO;
    loop {
        tick.tick().await;
        let now = c.report.borrow().clone();
        let health = crate::health::rounded(crate::health::measure(rtt, &now.replicas));
        let last = reported.as_ref();
        let cmd = Command::Heartbeat {
            id: c.node.id,
            at_ms: zlayer_state::now_ms(),
            replicas: (last.map(|r| &r.replicas) != Some(&now.replicas))
                .then(|| now.replicas.clone()),
            rollouts: (last.map(|r| &r.rollouts) != Some(&now.rollouts))
                .then(|| now.rollouts.clone()),
            health: (reported_health != Some(health)).then_some(health),
        };
        let sent = Instant::now();
        match tokio::time::timeout(c.liveness.down_after, c.member.write(cmd)).await {
            Ok(Ok(Response::Done)) => {
                rtt = sent.elapsed();
                if let Ok(mut t) = c.last_ack.lock() {
                    *t = sent;
                }
                reported = Some(now);
                reported_health = Some(health);
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

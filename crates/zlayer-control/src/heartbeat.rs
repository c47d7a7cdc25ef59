//! The node's heartbeat, every interval. When the agent's report (replicas,
//! rollouts) or the node's health changed, it is a `Heartbeat` command
//! committed through Raft; otherwise it is a liveness call to the leader
//! (`zlayer_state::alive`), which writes nothing to disk. Either one, once
//! answered, proves that a quorum still counts this node in; without one
//! for the down timeout, `Control::fenced` turns true.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zlayer_model::NodeHealth;
use zlayer_state::{Command, Response};

use crate::control::Report;
use crate::Control;

/// Health changes ride a heartbeat at most this often: they only tune the
/// scheduler's score, and each one is a Raft entry.
const HEALTH_EVERY: Duration = Duration::from_secs(15);

pub(crate) async fn run(c: Arc<Control>) {
    let mut tick = tokio::time::interval(c.liveness.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the last committed heartbeat reported; `None` until one has.
    let mut reported: Option<Report> = None;
    let mut reported_health: Option<(NodeHealth, Instant)> = None;
    let mut rtt = Duration::ZERO;
    let mut retry_now = false;
    // After a heartbeat whose outcome is unknown, the cluster's copy of the
    // reports may be neither the last acknowledged nor the current: the
    // next one goes whole.
    let mut whole_next = true;
    loop {
        if !std::mem::take(&mut retry_now) {
            tick.tick().await;
        }
        let leader_before = c.member.leader().map(|l| l.0);
        let now = c.report.borrow().clone();
        let health = crate::health::rounded(crate::health::measure(
            rtt,
            c.links.bandwidth_score(),
            &now.replicas,
        ));
        let health_due = match reported_health {
            None => true,
            Some((h, at)) => h != health && at.elapsed() >= HEALTH_EVERY,
        };
        let last = reported.as_ref();
        // A few changes go as changes; a first report or a reshuffle goes whole.
        let changes = last
            .filter(|_| !whole_next)
            .map(|r| zlayer_model::ReportChanges::between(&r.replicas, &now.replicas))
            .filter(|ch| !ch.is_empty() && ch.len() * 2 < now.replicas.len());
        let replica_reports = (changes.is_none()
            && (whole_next || last.map(|r| &r.replicas) != Some(&now.replicas)))
        .then(|| now.replicas.clone());
        let rollout_reports =
            (last.map(|r| &r.rollouts) != Some(&now.rollouts)).then(|| now.rollouts.clone());
        let volume_reports =
            (last.map(|r| &r.volumes) != Some(&now.volumes)).then(|| now.volumes.clone());
        let sent = Instant::now();
        let acked = if replica_reports.is_none()
            && changes.is_none()
            && rollout_reports.is_none()
            && volume_reports.is_none()
            && !health_due
        {
            match answered(&c, c.member.alive()).await {
                Some(index) => caught_up(&c, |applied, _| applied >= index).await,
                None => false,
            }
        } else {
            let at_ms = zlayer_state::now_ms();
            let cmd = Command::Heartbeat {
                id: c.node.id,
                at_ms,
                replica_reports,
                replica_changes: changes,
                rollout_reports,
                volume_reports,
                health: health_due.then_some(health),
            };
            // This node's own heartbeat applied here means so is all the leader had before it.
            let committed = commit(&c, cmd).await
                && caught_up(&c, |_, c| {
                    c.own_record().is_some_and(|r| r.last_heartbeat_ms >= at_ms)
                })
                .await;
            whole_next = !committed;
            if committed {
                reported = Some(now);
                if health_due {
                    reported_health = Some((health, Instant::now()));
                }
            }
            committed
        };
        // Unanswered because the leader changed meanwhile: the new one hears
        // from this node now, not a tick later.
        retry_now = !acked && c.member.leader().map(|l| l.0) != leader_before;
        if acked {
            rtt = sent.elapsed();
            if let Ok(mut t) = c.last_ack.lock() {
                *t = sent;
            }
        }
    }
}

/// Whether this node's state machine reaches what the leader held when it
/// answered, within the down timeout. Only then does the answer count: a
/// node back from a partition would otherwise be unfenced while its state is
/// still the one from before, and start replicas that moved while it was away.
async fn caught_up(c: &Control, reached: impl Fn(u64, &Control) -> bool) -> bool {
    let mut applied = c.subscribe();
    let wait = async { applied.wait_for(|&index| reached(index, c)).await.is_ok() };
    match tokio::time::timeout(c.liveness.down_after, wait).await {
        Ok(reached) => reached,
        Err(_) => {
            tracing::debug!(
                "heartbeat: answered, but this node's state did not catch up within {:?}",
                c.liveness.down_after
            );
            false
        }
    }
}

async fn commit(c: &Control, cmd: Command) -> bool {
    match answered(c, c.member.write(cmd)).await {
        Some(Response::Done) => true,
        Some(Response::Refused(why)) => {
            tracing::warn!(
                "heartbeat refused: {why} (was this node removed with `zlayer node rm`?)"
            );
            false
        }
        Some(other) => {
            tracing::warn!("heartbeat: unexpected answer {other:?}");
            false
        }
        None => false,
    }
}

/// The leader's answer within the down timeout, if one came. A call still
/// waiting on a leader that has since been replaced is given up at once:
/// the new leader counts this node down unless it hears from it within the
/// down timeout of taking over, and a call to a cut-off leader can take
/// nearly that long to time out.
async fn answered<T>(
    c: &Control,
    call: impl std::future::Future<Output = Result<T, zlayer_state::WriteError>>,
) -> Option<T> {
    let mut metrics = c.member.raft.metrics();
    let leader = metrics.borrow().current_leader;
    let replaced = async move {
        if metrics
            .wait_for(|m| m.current_leader.is_some() && m.current_leader != leader)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    };
    let call = tokio::time::timeout(c.liveness.down_after, call);
    let answer = tokio::select! {
        answer = call => answer,
        () = replaced => {
            tracing::debug!("heartbeat: the leader changed; asking the new one");
            return None;
        }
    };
    match answer {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::debug!("heartbeat: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("heartbeat: no answer within {:?}", c.liveness.down_after);
            None
        }
    }
}

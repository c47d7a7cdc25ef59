//! Link health: at a low duty cycle (one peer per `probe_every`, in turn)
//! this node times a small call to another live node's `/cluster/probe`
//! over mTLS (the round trip), then one carrying [`PROBE_BYTES`] (the
//! bandwidth). The figures show per peer in `overlay status`, and the
//! median bandwidth over the peers becomes the health score's `bandwidth`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zlayer_model::NodeState;
use zlayer_state::probe::{ProbeReply, ProbeRequest, PROBE};
use zlayer_state::transport::CallError;

use crate::Control;

/// The bandwidth probe's payload.
pub const PROBE_BYTES: usize = 1 << 20;
/// A link this fast or faster scores 1.0.
const GOOD_MBIT_S: f64 = 1000.0;
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One link as last measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkStats {
    pub rtt_ms: f64,
    pub mbit_s: f64,
    pub at_ms: u64,
}

/// The last measurement of each peer, by node name.
#[derive(Default)]
pub struct Links(Mutex<BTreeMap<String, LinkStats>>);

impl Links {
    pub fn get(&self, node: &str) -> Option<LinkStats> {
        self.0.lock().ok()?.get(node).cloned()
    }

    fn put(&self, node: &str, stats: LinkStats) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(node.to_string(), stats);
        }
    }

    fn keep_only(&self, nodes: &[String]) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|name, _| nodes.contains(name));
        }
    }

    /// The median of the peers' bandwidth against [`GOOD_MBIT_S`], in
    /// `0..=1`; 1.0 until a peer was measured.
    pub fn bandwidth_score(&self) -> f64 {
        let Ok(m) = self.0.lock() else { return 1.0 };
        score(m.values().map(|s| s.mbit_s).collect())
    }
}

fn score(mut mbit: Vec<f64>) -> f64 {
    if mbit.is_empty() {
        return 1.0;
    }
    mbit.sort_by(f64::total_cmp);
    let mid = mbit.len() / 2;
    let median = if mbit.len().is_multiple_of(2) {
        (mbit[mid - 1] + mbit[mid]) / 2.0
    } else {
        mbit[mid]
    };
    (median / GOOD_MBIT_S).clamp(0.0, 1.0)
}

pub(crate) async fn run(c: Arc<Control>) {
    let mut tick = tokio::time::interval(c.probe_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0usize;
    loop {
        tick.tick().await;
        let peers: Vec<(String, String)> = c
            .other_records()
            .into_iter()
            .filter(|n| n.state != NodeState::Down)
            .map(|n| (n.name, n.addr))
            .collect();
        c.links
            .keep_only(&peers.iter().map(|p| p.0.clone()).collect::<Vec<_>>());
        let Some((name, addr)) = peers.get(turn % peers.len().max(1)) else {
            continue;
        };
        turn = turn.wrapping_add(1);
        match probe(&c, addr).await {
            Ok(stats) => {
                tracing::debug!(peer = %name, rtt_ms = stats.rtt_ms, mbit_s = stats.mbit_s, "link probed");
                c.links.put(name, stats);
            }
            Err(e) => tracing::debug!(peer = %name, "link probe failed: {e}"),
        }
    }
}

async fn probe(c: &Control, addr: &str) -> Result<LinkStats, CallError> {
    let client = c.member.peer_client();
    let small = ProbeRequest {
        fill: String::new(),
    };
    // The first call may open the connection; the second is a round trip.
    let _: ProbeReply = client.call(addr, PROBE, &small, PROBE_TIMEOUT).await?;
    let sent = Instant::now();
    let _: ProbeReply = client.call(addr, PROBE, &small, PROBE_TIMEOUT).await?;
    let rtt = sent.elapsed();
    let big = ProbeRequest {
        fill: "0".repeat(PROBE_BYTES),
    };
    let sent = Instant::now();
    let got: ProbeReply = client.call(addr, PROBE, &big, PROBE_TIMEOUT).await?;
    let moving = sent
        .elapsed()
        .saturating_sub(rtt)
        .max(Duration::from_micros(1));
    Ok(LinkStats {
        rtt_ms: rtt.as_secs_f64() * 1e3,
        mbit_s: got.received as f64 * 8.0 / moving.as_secs_f64() / 1e6,
        at_ms: zlayer_state::now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_is_the_median_link_against_a_gigabit() {
        assert_eq!(score(vec![]), 1.0);
        assert_eq!(score(vec![5000.0]), 1.0);
        assert!((score(vec![100.0, 300.0, 9000.0]) - 0.3).abs() < 1e-9);
        assert!((score(vec![100.0, 300.0]) - 0.2).abs() < 1e-9);
    }
}

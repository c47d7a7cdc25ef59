//! What a node reports about itself for the scheduler's health score, each
//! in `0.0..=1.0` (1 is best): latency from how long its last heartbeat
//! took to commit, efficiency from its load average against its CPUs, and
//! reputation from how often its replicas restart, and bandwidth from the
//! probed links to the other nodes (`links`).

use std::time::Duration;

use zlayer_model::{NodeHealth, ReplicaReport};

/// A commit round trip at or below this scores 1.0.
const GOOD_RTT: Duration = Duration::from_millis(50);

pub(crate) fn measure(rtt: Duration, bandwidth: f64, replicas: &[ReplicaReport]) -> NodeHealth {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
    NodeHealth {
        bandwidth,
        latency: latency_score(rtt),
        efficiency: load.map_or(1.0, |l| efficiency_score(l, cpus)),
        reputation: reputation_score(replicas),
    }
}

fn latency_score(rtt: Duration) -> f64 {
    (GOOD_RTT.as_secs_f64() / rtt.as_secs_f64().max(1e-6)).clamp(0.0, 1.0)
}

fn efficiency_score(load: f64, cpus: f64) -> f64 {
    (1.0 - load / cpus.max(1.0)).clamp(0.0, 1.0)
}

/// 1.0 with no restarts; halves at one restart per replica on average.
fn reputation_score(replicas: &[ReplicaReport]) -> f64 {
    if replicas.is_empty() {
        return 1.0;
    }
    let restarts: u32 = replicas.iter().map(|r| r.restarts).sum();
    1.0 / (1.0 + f64::from(restarts) / replicas.len() as f64)
}

/// Rounded to one decimal: finer steps only follow noise (the load
/// average, a commit's round trip), and each change rides a heartbeat.
pub(crate) fn rounded(h: NodeHealth) -> NodeHealth {
    let r = |x: f64| (x * 10.0).round() / 10.0;
    NodeHealth {
        bandwidth: r(h.bandwidth),
        latency: r(h.latency),
        efficiency: r(h.efficiency),
        reputation: r(h.reputation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_stay_in_range_and_order_sensibly() {
        assert_eq!(latency_score(Duration::from_millis(10)), 1.0);
        assert!((latency_score(Duration::from_millis(200)) - 0.25).abs() < 1e-9);
        assert_eq!(efficiency_score(0.0, 4.0), 1.0);
        assert_eq!(efficiency_score(8.0, 4.0), 0.0);
        assert!((efficiency_score(1.0, 4.0) - 0.75).abs() < 1e-9);
        let r = |restarts| ReplicaReport {
            restarts,
            ..ReplicaReport::new(
                "d/s",
                1,
                zlayer_model::ReplicaState::Running,
                zlayer_model::Health::None,
                "",
            )
        };
        assert_eq!(reputation_score(&[]), 1.0);
        assert_eq!(reputation_score(&[r(0), r(0)]), 1.0);
        assert!((reputation_score(&[r(2), r(0)]) - 0.5).abs() < 1e-9);
    }
}

//! Metering: what one finished container (a job task's attempt, a cron
//! run, a replica's run) used, for billing; and the running totals per
//! node and service that the Prometheus counters show.

use serde::{Deserialize, Serialize};

/// One finished container's use, as its node measured it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub deployment: String,
    pub service: String,
    pub replica: u32,
    /// `service`, `job` or `cron`.
    pub kind: String,
    pub node: String,
    pub container_id: String,
    /// A job task's attempt (1 for the first); 0 for other kinds.
    #[serde(default)]
    pub attempt: u32,
    /// When it started and ended (its node's clock, Unix ms).
    pub started_ms: u64,
    pub finished_ms: u64,
    pub wall_ms: u64,
    /// Docker-style exit status (the code, or 128 + signal); -1 unknown.
    pub exit_status: i32,
    pub cpu_ms: u64,
    pub memory_peak_bytes: u64,
    /// GPUs it held, and GPU time: that many GPUs for its wall time.
    pub gpus: u32,
    pub gpu_ms: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// Sums over every record of one node and service, kept past the records'
/// retention: counters never go back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub node: String,
    pub deployment: String,
    pub service: String,
    pub runs: u64,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub gpu_ms: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    /// The highest peak of any one run.
    pub memory_peak_bytes: u64,
}

impl UsageTotals {
    pub fn add(&mut self, r: &UsageRecord) {
        self.runs += 1;
        self.wall_ms += r.wall_ms;
        self.cpu_ms += r.cpu_ms;
        self.gpu_ms += r.gpu_ms;
        self.net_rx_bytes += r.net_rx_bytes;
        self.net_tx_bytes += r.net_tx_bytes;
        self.memory_peak_bytes = self.memory_peak_bytes.max(r.memory_peak_bytes);
    }
}

/// `GET /v1/usage`'s filters; each one left out matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Records that finished at or after this (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Records that finished before this (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

impl UsageQuery {
    pub fn matches(&self, r: &UsageRecord) -> bool {
        self.deployment.as_ref().is_none_or(|d| *d == r.deployment)
            && self.service.as_ref().is_none_or(|s| *s == r.service)
            && self.since_ms.is_none_or(|t| r.finished_ms >= t)
            && self.until_ms.is_none_or(|t| r.finished_ms < t)
    }
}

//! Metering: what each container that finished here used (CPU, peak
//! memory, wall and GPU time, network bytes), read by its shim before its
//! cgroup and network went, kept in the node's store until the cluster
//! committed it, so neither a lost write nor `kill -9` loses a record.

use zlayer_model::UsageRecord;
use zlayer_runtime::{ExitInfo, Status};
use zlayer_spec::ResourceType;

use crate::agent::Agent;
use crate::state::Replica;

/// Records sent in one write.
const BATCH: usize = 500;

impl Agent {
    /// Keeps what `r`'s container used, as its exit `info` measured it.
    pub(crate) fn meter(&self, r: &Replica, info: &ExitInfo) {
        let Some(u) = &info.usage else {
            return;
        };
        let rtype = self.template_of(r).map(|t| t.service.rtype);
        let wall_ms = info.finished_at_ms.saturating_sub(r.started_ms);
        let gpus = r.gpus.len() as u32;
        let rec = UsageRecord {
            deployment: r.deployment.clone(),
            service: r.service.clone(),
            replica: r.index,
            kind: rtype.unwrap_or_default().as_str().to_string(),
            node: self.node_name().to_string(),
            container_id: r.container_id.clone(),
            attempt: if rtype == Some(ResourceType::Job) {
                r.attempt.max(1)
            } else {
                0
            },
            started_ms: r.started_ms,
            finished_ms: info.finished_at_ms,
            wall_ms,
            exit_status: info.status(),
            cpu_ms: u.cpu_ns / 1_000_000,
            memory_peak_bytes: u.memory_peak_bytes,
            gpus,
            gpu_ms: u64::from(gpus) * wall_ms,
            net_rx_bytes: u.net_rx_bytes,
            net_tx_bytes: u.net_tx_bytes,
        };
        if let Err(e) = self.store.put_usage(&rec) {
            self.store_failed(&format!("usage of {}", r.container_id), &e);
        }
    }

    /// Meters `r`'s container once it was stopped, before its files go.
    pub(crate) fn meter_stopped(&self, r: &Replica) {
        if let Status::Exited(info) = self.launcher.status(&r.container_id) {
            self.meter(r, &info);
        }
    }

    /// Sends the records the cluster lacks; what it refuses stays for the
    /// next round.
    pub(crate) async fn flush_usage(&self) {
        let pending = self.store.pending_usage(BATCH);
        if pending.is_empty() {
            return;
        }
        let ids: Vec<String> = pending.iter().map(|r| r.container_id.clone()).collect();
        match self.cluster.record_usage(pending).await {
            Ok(()) => {
                if let Err(e) = self.store.usage_committed(&ids) {
                    self.store_failed("usage records", &e);
                }
            }
            Err(e) => tracing::debug!("usage records stay queued: {e}"),
        }
    }
}

/// The node's metering totals as Prometheus counters, per service: they
/// only grow, since the cluster keeps totals past its records' retention.
pub(crate) fn register_usage(reg: &prometheus::Registry, totals: &[zlayer_model::UsageTotals]) {
    use prometheus::{CounterVec, GaugeVec, Opts};
    let labels = &["deployment", "service"];
    let counter =
        |name: &str, help: &str| CounterVec::new(Opts::new(name, help), labels).expect("metric");
    let runs = counter(
        "zlayer_usage_runs_total",
        "Containers that finished, metered",
    );
    let cpu = counter(
        "zlayer_usage_cpu_seconds_total",
        "CPU time of finished containers",
    );
    let wall = counter(
        "zlayer_usage_wall_seconds_total",
        "Wall time of finished containers",
    );
    let gpu = counter(
        "zlayer_usage_gpu_seconds_total",
        "GPU time of finished containers (GPUs held times wall time)",
    );
    let rx = counter(
        "zlayer_usage_network_receive_bytes_total",
        "Bytes finished containers received",
    );
    let tx = counter(
        "zlayer_usage_network_transmit_bytes_total",
        "Bytes finished containers sent",
    );
    let peak = GaugeVec::new(
        Opts::new(
            "zlayer_usage_memory_peak_bytes",
            "The highest memory peak of any finished container",
        ),
        labels,
    )
    .expect("metric");
    for t in totals {
        let l = [t.deployment.as_str(), t.service.as_str()];
        runs.with_label_values(&l).inc_by(t.runs as f64);
        cpu.with_label_values(&l).inc_by(t.cpu_ms as f64 / 1e3);
        wall.with_label_values(&l).inc_by(t.wall_ms as f64 / 1e3);
        gpu.with_label_values(&l).inc_by(t.gpu_ms as f64 / 1e3);
        rx.with_label_values(&l).inc_by(t.net_rx_bytes as f64);
        tx.with_label_values(&l).inc_by(t.net_tx_bytes as f64);
        peak.with_label_values(&l).set(t.memory_peak_bytes as f64);
    }
    for m in [runs, cpu, wall, gpu, rx, tx] {
        let _ = reg.register(Box::new(m));
    }
    let _ = reg.register(Box::new(peak));
}

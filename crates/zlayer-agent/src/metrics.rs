//! Prometheus text for the node: per-container CPU and memory from cgroups,
//! restarts, health and OOM kills, the usage of finished containers
//! (`metering`), then the ingress's own. A fresh registry per scrape turns cgroup
//! counters into Prometheus counters without keeping deltas.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use zlayer_runtime::CgroupStats;

use crate::agent::Agent;
use crate::state::{Health, ReplicaState};

const LABELS: &[&str] = &["deployment", "service", "replica"];

pub fn render(node: &Agent) -> String {
    let reg = Registry::new();
    let cpu = prometheus::CounterVec::new(
        Opts::new(
            "zlayer_container_cpu_seconds_total",
            "CPU time used by the replica's container",
        ),
        LABELS,
    )
    .expect("metric");
    let mem = GaugeVec::new(
        Opts::new(
            "zlayer_container_memory_bytes",
            "Memory in use by the replica's container",
        ),
        LABELS,
    )
    .expect("metric");
    let limit = GaugeVec::new(
        Opts::new(
            "zlayer_container_memory_limit_bytes",
            "Memory limit of the replica's container",
        ),
        LABELS,
    )
    .expect("metric");
    let restarts = IntCounterVec::new(
        Opts::new(
            "zlayer_replica_restarts_total",
            "Times the replica was restarted",
        ),
        LABELS,
    )
    .expect("metric");
    let healthy = IntGaugeVec::new(
        Opts::new(
            "zlayer_replica_healthy",
            "1 when the replica passes its health check (or has none)",
        ),
        LABELS,
    )
    .expect("metric");
    let running = IntGaugeVec::new(
        Opts::new(
            "zlayer_replica_running",
            "1 when the replica's container is running",
        ),
        LABELS,
    )
    .expect("metric");
    let ooms = IntCounterVec::new(
        Opts::new(
            "zlayer_replica_oom_kills_total",
            "OOM kills seen for the replica",
        ),
        LABELS,
    )
    .expect("metric");
    for c in [
        Box::new(cpu.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(mem.clone()),
        Box::new(limit.clone()),
        Box::new(restarts.clone()),
        Box::new(healthy.clone()),
        Box::new(running.clone()),
        Box::new(ooms.clone()),
    ] {
        reg.register(c).expect("register");
    }
    for r in node.store.replicas() {
        let idx = r.index.to_string();
        let l = [r.deployment.as_str(), r.service.as_str(), idx.as_str()];
        restarts.with_label_values(&l).inc_by(r.restarts as u64);
        let is_running = r.state == ReplicaState::Running;
        running.with_label_values(&l).set(is_running as i64);
        healthy
            .with_label_values(&l)
            .set((is_running && matches!(r.health, Health::Healthy | Health::None)) as i64);
        ooms.with_label_values(&l)
            .inc_by(r.last_exit.as_ref().is_some_and(|e| e.oom_killed) as u64);
        if is_running {
            let s = CgroupStats::read(&format!("/zlayer/{}", r.container_id));
            cpu.with_label_values(&l)
                .inc_by(s.cpu_usage_ns as f64 / 1e9);
            mem.with_label_values(&l).set(s.memory_bytes as f64);
            if let Some(m) = s.memory_limit_bytes {
                limit.with_label_values(&l).set(m as f64);
            }
        }
    }
    let store_errors = prometheus::IntCounter::new(
        "zlayer_node_state_write_errors_total",
        "Writes to the node's state store that failed since the node started",
    )
    .expect("metric");
    store_errors.inc_by(node.store_errors());
    let _ = reg.register(Box::new(store_errors));
    crate::metering::register_usage(&reg, &node.cluster.usage_totals());
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&reg.gather(), &mut buf);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if let Some(proxy) = &node.ingress {
        text.push_str(&proxy.render_metrics());
    }
    text
}

/// Scrapes served at once; more connections are closed at accept.
const MAX_SCRAPES: usize = 64;
/// How long a scraper may take to send its request's headers.
const SLOW_HEADERS: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `/metrics` over TCP for Prometheus.
pub async fn serve_tcp(node: Arc<Agent>, addr: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    let mut acceptor = zlayer_net::Acceptor::new(listener);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    tokio::spawn(async move {
        loop {
            let stream = acceptor.next().await;
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let node = node.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let svc = hyper::service::service_fn(move |_req| {
                    let body = render(&node);
                    async move {
                        let mut r = hyper::Response::new(http_body_util::Full::new(
                            hyper::body::Bytes::from(body),
                        ));
                        r.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(SLOW_HEADERS)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

//! The proxy's Prometheus metrics, per route and per upstream: requests by
//! status class, requests sent to each replica, refusals by kind, a latency
//! histogram (to the answer's head) and requests in flight. The node
//! appends them to its `/metrics`. A route resolves its handles once, when
//! it is built, so a request touches only atomics.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    upstream_requests: IntCounterVec,
    pub refusals: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGaugeVec,
}

/// One route's handles.
pub struct RouteMetrics {
    pub latency: prometheus::Histogram,
    pub in_flight: prometheus::IntGauge,
    /// Answers by class: 1xx to 5xx.
    by_class: [prometheus::IntCounter; 5],
}

impl RouteMetrics {
    pub fn answered(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "zlayer_proxy_requests_total",
                "Requests a route answered (forwarded or refused), by status class",
            ),
            &["route", "class"],
        )
        .expect("valid metric");
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "zlayer_proxy_upstream_requests_total",
                "Requests sent to each replica (retries included), by route",
            ),
            &["route", "upstream"],
        )
        .expect("valid metric");
        let refusals = IntCounterVec::new(
            Opts::new(
                "zlayer_proxy_refusals_total",
                "Requests the ingress answered itself, by route and reason",
            ),
            &["route", "reason"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "zlayer_proxy_request_duration_seconds",
                "Time from a request's arrival to its answer's head, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "zlayer_proxy_requests_in_flight",
                "Requests forwarded and not yet finished, by route",
            ),
            &["route"],
        )
        .expect("valid metric");
        let registry = Registry::new();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_requests.clone()),
            Box::new(refusals.clone()),
            Box::new(latency.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            upstream_requests,
            refusals,
            latency,
            in_flight,
        }
    }

    pub fn route(&self, route: &str) -> RouteMetrics {
        let class = |c: &str| self.requests.with_label_values(&[route, c]);
        RouteMetrics {
            latency: self.latency.with_label_values(&[route]),
            in_flight: self.in_flight.with_label_values(&[route]),
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
        }
    }

    pub fn upstream(&self, route: &str, addr: std::net::SocketAddr) -> prometheus::IntCounter {
        self.upstream_requests
            .with_label_values(&[route, &addr.to_string()])
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

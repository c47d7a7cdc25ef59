//! The proxy's Prometheus metrics, per route and per upstream: requests by
//! status code, refusals by kind, a latency histogram (to the answer's
//! head) and requests in flight. The node appends them to its `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub refusals: IntCounterVec,
    pub latency: HistogramVec,
    pub in_flight: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "zlayer_proxy_requests_total",
                "Requests the ingress answered, by route, upstream replica and status code",
            ),
            &["route", "upstream", "code"],
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
            Box::new(refusals.clone()),
            Box::new(latency.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            refusals,
            latency,
            in_flight,
        }
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

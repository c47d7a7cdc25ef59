//! zlayer-proxy owns ingress on a node: the HTTP and HTTPS listeners, routes
//! by host and longest path prefix, balancing over the healthy replicas of
//! any node (power of two choices on outstanding requests, or round robin),
//! draining a replica before it stops, TLS by SNI, HTTP/1.1 and HTTP/2
//! (ALPN, h2c), WebSocket upgrades, request limits, and its metrics. It
//! also answers ACME challenges (HTTP-01 tokens on the HTTP listener,
//! TLS-ALPN-01 certificates on `acme-tls/1` handshakes) with what it is
//! given; ordering certificates is the node's job.
//!
//! Layers, each in its own module: `workers` (the ingress's threads),
//! `listen` (connections, TLS, hyper), `forward` (one request), `route`
//! (which route), `balance` (which replica), `upstream` (connections to
//! replicas, held per downstream connection), `respond` (every answer the
//! proxy gives itself), `tls`, `limits`, `metrics`.
//!
//! It must not manage containers or read specs: the agent hands it typed
//! routes with replica addresses, and certificates. L4 `tcp` ports stay in
//! `zlayer-net`'s port publisher; the connection table is shared with it.

mod balance;
mod forward;
mod limits;
mod listen;
mod metrics;
mod respond;
mod route;
mod tls;
mod upstream;
mod workers;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

pub use balance::Policy;
pub use limits::Limits;
pub use route::{HostPattern, UpstreamProtocol};
pub use rustls::sign::CertifiedKey;
pub use tls::{acme_challenge_key, certified_key, certified_key_from_files};

use balance::{Balancer, UpstreamPool};
use route::{Route, RouteTable};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen for {what} on {addr}: {reason}")]
    Bind {
        what: String,
        addr: SocketAddr,
        reason: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("cannot start the ingress threads: {0}")]
    Threads(String),
}

/// Where a node's listeners are, and what they allow.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub limits: Limits,
    /// One structured line per request (target `zlayer::access`).
    pub access_log: bool,
    /// Threads that serve connections; 0 is one per CPU.
    pub threads: usize,
}

/// One route as the agent computes it from the specs and the replicas.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    /// `deployment/service/endpoint`.
    pub name: String,
    pub host: HostPattern,
    pub path: String,
    /// Served on the HTTPS listener (else the HTTP one).
    pub tls: bool,
    pub upstream: UpstreamProtocol,
    pub policy: Policy,
    /// The healthy replicas' addresses, on any node.
    pub backends: Vec<SocketAddr>,
}

pub(crate) struct Shared {
    http_routes: RwLock<Arc<RouteTable>>,
    https_routes: RwLock<Arc<RouteTable>>,
    specs: Mutex<Vec<RouteSpec>>,
    pool: UpstreamPool,
    certs: Arc<tls::CertResolver>,
    /// HTTP-01 answers: token -> key authorization.
    acme_http01: RwLock<Arc<std::collections::HashMap<String, String>>>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) limits: Limits,
    pub(crate) access_log: bool,
    pub(crate) conns: zlayer_net::ConnectionTable,
    https_port: Option<u16>,
    pub(crate) h2c: Client<HttpConnector, ProxyBody>,
}

impl Shared {
    pub(crate) fn routes(&self, tls: bool) -> Arc<RouteTable> {
        let t = if tls {
            &self.https_routes
        } else {
            &self.http_routes
        };
        t.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The HTTP-01 key authorization for `token`, while an order waits on it.
    pub(crate) fn acme_http01(&self, token: &str) -> Option<String> {
        self.acme_http01
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// `:PORT` for a redirect to the HTTPS listener, empty on 443.
    pub(crate) fn https_port_suffix(&self) -> String {
        match self.https_port {
            Some(443) | None => String::new(),
            Some(p) => format!(":{p}"),
        }
    }

    fn rebuild(&self, specs: &[RouteSpec]) {
        let build = |tls: bool| {
            let routes = specs
                .iter()
                .filter(|s| s.tls == tls)
                .map(|s| {
                    let sent = s
                        .backends
                        .iter()
                        .map(|a| self.metrics.upstream(&s.name, *a))
                        .collect();
                    Arc::new(Route {
                        name: s.name.clone(),
                        host: s.host.clone(),
                        path: s.path.clone(),
                        upstream: s.upstream,
                        balancer: Balancer::new(
                            s.policy,
                            s.backends.iter().map(|a| self.pool.get(*a)).collect(),
                        )
                        .counting(sent),
                        metrics: Some(self.metrics.route(&s.name)),
                    })
                })
                .collect();
            Arc::new(RouteTable::new(routes))
        };
        let (http, https) = (build(false), build(true));
        *self.http_routes.write().unwrap_or_else(|e| e.into_inner()) = http;
        *self.https_routes.write().unwrap_or_else(|e| e.into_inner()) = https;
        self.pool.sweep();
    }
}

/// A node's ingress: its listeners run until it is dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    /// Stops the listeners and their connections when dropped.
    _workers: workers::Workers,
    bound: Vec<(String, SocketAddr)>,
}

impl Proxy {
    /// Binds the listeners the config names. A listener that cannot bind is
    /// left off and returned beside the proxy, so the other still serves.
    pub async fn start(cfg: ProxyConfig) -> Result<(Proxy, Vec<ProxyError>), ProxyError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.limits.connect_timeout));
        connector.set_nodelay(true);
        let h2c = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        let certs = Arc::new(tls::CertResolver::default());
        let shared = Arc::new(Shared {
            http_routes: RwLock::default(),
            https_routes: RwLock::default(),
            specs: Mutex::default(),
            pool: UpstreamPool::default(),
            certs: certs.clone(),
            acme_http01: Default::default(),
            metrics: metrics::Metrics::new(),
            conns: zlayer_net::ConnectionTable::new(cfg.limits.max_connections),
            limits: cfg.limits,
            access_log: cfg.access_log,
            https_port: cfg.https.map(|a| a.port()),
            h2c,
        });
        let mut bound = Vec::new();
        let mut listeners = Vec::new();
        let mut refused = Vec::new();
        let tls = match cfg.https {
            Some(_) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(certs)?)),
            None => None,
        };
        for (addr, what, tls) in [(cfg.http, "HTTP", None), (cfg.https, "HTTPS", tls)] {
            let Some(addr) = addr else { continue };
            match listen::bind(addr, what).await {
                Ok((l, at)) => {
                    bound.push((what.to_lowercase(), at));
                    listeners.push((l, tls));
                }
                Err(e) => refused.push(e),
            }
        }
        let threads = match cfg.threads {
            0 => workers::default_threads(),
            n => n,
        };
        let workers = workers::start(threads, &shared, listeners)
            .map_err(|e| ProxyError::Threads(e.to_string()))?;
        let proxy = Proxy {
            shared,
            _workers: workers,
            bound,
        };
        Ok((proxy, refused))
    }

    /// The listeners' addresses, as (`http` | `https`, address).
    pub fn listening(&self) -> &[(String, SocketAddr)] {
        &self.bound
    }

    /// Replaces every route; requests in flight keep their replicas.
    pub fn set_routes(&self, mut specs: Vec<RouteSpec>) {
        specs.sort_by(|a, b| a.name.cmp(&b.name).then(a.tls.cmp(&b.tls)));
        let mut last = self.shared.specs.lock().unwrap_or_else(|e| e.into_inner());
        if *last == specs {
            return;
        }
        self.shared.rebuild(&specs);
        *last = specs;
    }

    /// Takes every replica at `ip` out of every route now: no new request reaches it.
    pub fn withdraw(&self, ip: IpAddr) {
        let mut last = self.shared.specs.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for s in last.iter_mut() {
            let before = s.backends.len();
            s.backends.retain(|a| a.ip() != ip);
            changed |= s.backends.len() != before;
        }
        if changed {
            self.shared.rebuild(&last);
        }
    }

    /// Resolves once no request forwarded to a replica at `ip` is still in
    /// flight. Withdraw it first; the caller bounds the wait.
    pub fn drained(&self, ip: IpAddr) -> impl std::future::Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            while shared.pool.outstanding_at(ip) > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    /// Replaces the HTTPS listener's certificates; new handshakes use them at once.
    pub fn set_certificates(&self, certs: Vec<(HostPattern, Arc<CertifiedKey>)>) {
        self.shared.certs.replace(certs);
    }

    /// The ACME challenge answers to give: HTTP-01 by token, TLS-ALPN-01 by host.
    pub fn set_acme_answers(
        &self,
        http01: std::collections::HashMap<String, String>,
        alpn01: Vec<(String, Arc<CertifiedKey>)>,
    ) {
        *self
            .shared
            .acme_http01
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(http01);
        self.shared.certs.replace_acme(alpn01);
    }

    /// The proxy's metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render()
    }

    /// Connections the listeners hold now.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.len()
    }
}

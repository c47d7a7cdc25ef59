//! Calls to another node: JSON over HTTPS, one pooled client per node.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was delivered: the connection or the TLS handshake failed.
    #[error("cannot reach {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    /// The request may have been delivered, but no full answer came back.
    #[error("the exchange with {addr} broke off: {detail}")]
    Interrupted { addr: String, detail: String },
    #[error("{addr} did not answer within {0:?}", .timeout)]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} answered {status}: {body}")]
    Status {
        addr: String,
        status: StatusCode,
        body: String,
    },
    #[error("{addr} sent a reply that is not valid: {detail}")]
    BadReply { addr: String, detail: String },
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Clones share one pool.
#[derive(Clone)]
pub struct PeerClient {
    tls: Arc<ClientConfig>,
    http: Arc<RwLock<HttpClient>>,
}

fn pooled(tls: &ClientConfig) -> HttpClient {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_secs(2)));
    tcp.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new()).build(https)
}

impl PeerClient {
    pub fn new(tls: Arc<ClientConfig>) -> PeerClient {
        PeerClient {
            http: Arc::new(RwLock::new(pooled(&tls))),
            tls,
        }
    }

    /// Leaves the pooled connections to close once idle: later calls make
    /// new ones, presenting the node's certificate as it is now (after a
    /// renewal, the pooled ones still carry the certificate it retired). The
    /// TLS session cache goes too: a resumed session would stand for the
    /// certificate of the handshake it resumes.
    pub fn reconnect(&self) {
        let mut tls = (*self.tls).clone();
        tls.resumption = rustls::client::Resumption::default();
        *self.http.write().unwrap_or_else(|e| e.into_inner()) = pooled(&tls);
    }

    fn http(&self) -> HttpClient {
        self.http.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// POSTs `body` as JSON to `https://addr/path` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let bytes = self.call_raw(addr, path, body, timeout).await?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::BadReply {
            addr: addr.to_string(),
            detail: e.to_string(),
        })
    }

    async fn call_raw<Req: Serialize>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let unreachable = |detail: String| CallError::Unreachable {
            addr: addr.to_string(),
            detail,
        };
        let req = json_post(addr, path, body).map_err(unreachable)?;
        let exchange = async {
            let interrupted = |detail: String| CallError::Interrupted {
                addr: addr.to_string(),
                detail,
            };
            let resp = self.http().request(req).await.map_err(|e| {
                if e.is_connect() {
                    unreachable(error_chain(&e))
                } else {
                    interrupted(error_chain(&e))
                }
            })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| interrupted(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(CallError::Status {
                    addr: addr.to_string(),
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            Ok(body)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout {
                addr: addr.to_string(),
                timeout,
            })?
    }
}

impl PeerClient {
    /// POSTs `body` as JSON to `https://addr/path` and returns the answer's
    /// body as it streams in, once its status (awaited at most `timeout`)
    /// says it succeeded.
    pub async fn open_stream<Req: Serialize>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<hyper::body::Incoming, CallError> {
        let unreachable = |detail: String| CallError::Unreachable {
            addr: addr.to_string(),
            detail,
        };
        let req = json_post(addr, path, body).map_err(unreachable)?;
        let resp = tokio::time::timeout(timeout, self.http().request(req))
            .await
            .map_err(|_| CallError::Timeout {
                addr: addr.to_string(),
                timeout,
            })?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let body = tokio::time::timeout(timeout, resp.into_body().collect())
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(CallError::Status {
            addr: addr.to_string(),
            status,
            body,
        })
    }
}

/// A POST of `body` as JSON to `https://addr/path`.
fn json_post<Req: Serialize>(
    addr: &str,
    path: &str,
    body: &Req,
) -> Result<Request<Full<Bytes>>, String> {
    let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    Request::builder()
        .method(Method::POST)
        .uri(format!("https://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json)))
        .map_err(|e| e.to_string())
}

/// hyper's client error says only "client error (Connect)"; the cause is
/// further down the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

//! Calls to another node: JSON over HTTPS, one pooled client per node.

use std::sync::Arc;
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

#[derive(Clone)]
pub struct PeerClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl PeerClient {
    pub fn new(tls: Arc<ClientConfig>) -> PeerClient {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(2)));
        tcp.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        PeerClient {
            http: Client::builder(TokioExecutor::new()).build(https),
        }
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
        let json = serde_json::to_vec(body).map_err(|e| unreachable(e.to_string()))?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("https://{addr}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let interrupted = |detail: String| CallError::Interrupted {
                addr: addr.to_string(),
                detail,
            };
            let resp = self.http.request(req).await.map_err(|e| {
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

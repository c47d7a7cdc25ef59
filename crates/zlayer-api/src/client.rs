//! The CLI's side of the unix-socket API.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::sync::Arc;

use crate::types::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no zlayer node is running at {0} (start one with `zlayer node start` or `zlayer up`)"
    )]
    NotRunning(String),
    #[error("{0}")]
    Node(String),
    #[error("cannot reach the node at {0}: {1}")]
    Unreachable(String, String),
    #[error("talking to the node: {0}")]
    Transport(String),
}

/// How the CLI reaches a node: its unix socket (local root), or a node's
/// HTTPS endpoint with an API token (a remote CLI).
enum Route {
    Socket(PathBuf),
    Remote {
        addr: String,
        tls: Arc<rustls::ClientConfig>,
        /// `ID.SECRET` of the API token.
        bearer: String,
    },
}

pub struct Client {
    route: Route,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            route: Route::Socket(socket.into()),
        }
    }

    /// A client for a node's HTTPS endpoint at `addr` (`ip:port`); `tls`
    /// must pin the cluster's CA, `bearer` is the API token's `ID.SECRET`.
    pub fn remote(addr: String, tls: Arc<rustls::ClientConfig>, bearer: String) -> Self {
        Client {
            route: Route::Remote { addr, tls, bearer },
        }
    }

    async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Bytes, ClientError> {
        self.open(method, path, body)
            .await?
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Sends a request and returns its body as it arrives, once the status
    /// said it succeeded.
    async fn open(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<hyper::body::Incoming, ClientError> {
        let req = hyper::Request::builder()
            .method(method)
            .header("host", "zlayer");
        let resp = match &self.route {
            Route::Socket(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|_| ClientError::NotRunning(socket.display().to_string()))?;
                let req = req.uri(path).body(Full::new(Bytes::from(body)));
                send(stream, req).await?
            }
            Route::Remote { addr, tls, bearer } => {
                let tcp = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| ClientError::Unreachable(addr.clone(), e.to_string()))?;
                let ip = addr
                    .rsplit_once(':')
                    .map_or(addr.as_str(), |(h, _)| h)
                    .trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(ip.to_string())
                    .map_err(|e| ClientError::Transport(format!("{addr}: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ClientError::Transport(format!("TLS with {addr}: {e}")))?;
                let req = req
                    .uri(format!("/api{path}"))
                    .header("authorization", format!("Bearer {bearer}"))
                    .body(Full::new(Bytes::from(body)));
                send(stream, req).await?
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?
                .to_bytes();
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            Err(ClientError::Node(msg))
        }
    }

    /// Writes a replica's log (followed, with `req.follow`) to `out` as the
    /// node sends it.
    pub async fn logs(
        &self,
        req: &LogsRequest,
        out: &mut dyn std::io::Write,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut stream = self.open(Method::POST, "/v1/logs", body).await?;
        while let Some(frame) = stream.frame().await {
            let frame = frame.map_err(|e| ClientError::Transport(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data)
                    .and_then(|()| out.flush())
                    .map_err(|e| ClientError::Transport(format!("writing the log: {e}")))?;
            }
        }
        Ok(())
    }

    /// Runs `req` in a replica through the node, copying its stdout and
    /// stderr to this process's; returns the command's exit code.
    pub async fn exec(&self, req: &ExecRequest) -> Result<i32, ClientError> {
        use crate::exec_stream::{Decoder, Frame};
        use std::io::Write;
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut stream = self.open(Method::POST, "/v1/exec", body).await?;
        let mut frames = Decoder::default();
        while let Some(chunk) = stream.frame().await {
            let chunk = chunk.map_err(|e| ClientError::Transport(e.to_string()))?;
            let Some(data) = chunk.data_ref() else {
                continue;
            };
            frames.push(data);
            while let Some(f) = frames.next_frame().map_err(ClientError::Transport)? {
                let written = match f {
                    Frame::Stdout(b) => std::io::stdout().write_all(&b),
                    Frame::Stderr(b) => std::io::stderr().write_all(&b),
                    Frame::Exit(code) => return Ok(code),
                };
                written.map_err(|e| ClientError::Transport(e.to_string()))?;
            }
        }
        Err(ClientError::Transport(
            "the exec stream ended without the command's exit code".into(),
        ))
    }

    /// Whether this client talks to a remote node (no local files).
    pub fn is_remote(&self) -> bool {
        matches!(self.route, Route::Remote { .. })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let b = self.call(Method::GET, path, Vec::new()).await?;
        serde_json::from_slice(&b).map_err(|e| ClientError::Transport(e.to_string()))
    }

    pub async fn ping(&self) -> bool {
        self.call(Method::GET, "/v1/ps", Vec::new()).await.is_ok()
    }
    pub async fn apply(&self, req: &ApplyRequest) -> Result<ApplyResponse, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Transport(e.to_string()))?;
        let b = self.call(Method::POST, "/v1/apply", body).await?;
        serde_json::from_slice(&b).map_err(|e| ClientError::Transport(e.to_string()))
    }
    pub async fn down(&self, deployment: &str) -> Result<(), ClientError> {
        self.call(Method::POST, &format!("/v1/down/{deployment}"), Vec::new())
            .await
            .map(|_| ())
    }
    pub async fn ps(&self) -> Result<Vec<ReplicaView>, ClientError> {
        self.get("/v1/ps").await
    }
    pub async fn events(&self) -> Result<Vec<Event>, ClientError> {
        self.get("/v1/events").await
    }
    pub async fn rollouts(&self) -> Result<Vec<RolloutView>, ClientError> {
        self.get("/v1/rollouts").await
    }
    /// Waits until the node's state has moved past generation `after`.
    pub async fn watch(&self, after: u64) -> Result<u64, ClientError> {
        self.get(&format!("/v1/watch/{after}")).await
    }
    pub async fn locate(&self, target: &str) -> Result<Vec<ReplicaLocation>, ClientError> {
        self.get(&format!("/v1/locate/{target}")).await
    }
    pub async fn metrics(&self) -> Result<String, ClientError> {
        Ok(
            String::from_utf8_lossy(&self.call(Method::GET, "/metrics", Vec::new()).await?)
                .into_owned(),
        )
    }
    pub async fn cluster(&self, req: &ClusterRequest) -> Result<ClusterReply, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Transport(e.to_string()))?;
        let b = self.call(Method::POST, "/v1/cluster", body).await?;
        serde_json::from_slice(&b).map_err(|e| ClientError::Transport(e.to_string()))
    }
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.call(Method::POST, "/v1/shutdown", Vec::new())
            .await
            .map(|_| ())
    }
}

async fn send<S>(
    stream: S,
    req: Result<hyper::Request<Full<Bytes>>, hyper::http::Error>,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let req = req.map_err(|e| ClientError::Transport(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    tokio::spawn(conn);
    sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))
}

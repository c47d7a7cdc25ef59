//! The hyper server on the unix socket and the single parse point.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::error::ApiError;
use crate::types::*;

/// What the node provides.
pub trait Backend: Send + Sync + 'static {
    fn apply(
        &self,
        req: ApplyRequest,
    ) -> impl Future<Output = Result<ApplyResponse, ApiError>> + Send;
    fn down(&self, deployment: String) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn ps(&self) -> impl Future<Output = Vec<ReplicaView>> + Send;
    fn events(&self) -> impl Future<Output = Vec<Event>> + Send;
    fn rollouts(&self) -> impl Future<Output = Vec<RolloutView>> + Send;
    /// Resolves with the state generation once it is past `after`, or after
    /// the backend's own time limit with the current one.
    fn watch(&self, after: u64) -> impl Future<Output = u64> + Send;
    fn locate(
        &self,
        target: String,
    ) -> impl Future<Output = Result<Vec<ReplicaLocation>, ApiError>> + Send;
    fn metrics(&self) -> impl Future<Output = String> + Send;
    fn cluster(
        &self,
        req: ClusterRequest,
    ) -> impl Future<Output = Result<ClusterReply, ApiError>> + Send;
    fn shutdown(&self);
}

/// Serves the API on `socket` until the process ends.
pub async fn serve<B: Backend>(socket: PathBuf, backend: Arc<B>) -> std::io::Result<()> {
    let socket = socket.as_path();
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let b = backend.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let b = b.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(b, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The one place a raw HTTP request becomes a [`Request`].
async fn parse(req: hyper::Request<Incoming>) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (parts.method, segs.as_slice()) {
        (Method::POST, ["v1", "apply"]) => {
            let bytes = body
                .collect()
                .await
                .map_err(|e| ApiError::BadRequest(e.to_string()))?
                .to_bytes();
            let a: ApplyRequest = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("bad apply body: {e}")))?;
            Ok(Request::Apply(a))
        }
        (Method::POST, ["v1", "cluster"]) => {
            let bytes = body
                .collect()
                .await
                .map_err(|e| ApiError::BadRequest(e.to_string()))?
                .to_bytes();
            let c: ClusterRequest = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("bad cluster request: {e}")))?;
            Ok(Request::Cluster(c))
        }
        (Method::POST, ["v1", "down", dep]) => Ok(Request::Down(dep.to_string())),
        (Method::GET, ["v1", "ps"]) => Ok(Request::Ps),
        (Method::GET, ["v1", "events"]) => Ok(Request::Events),
        (Method::GET, ["v1", "rollouts"]) => Ok(Request::Rollouts),
        (Method::GET, ["v1", "watch", after]) => after
            .parse()
            .map(Request::Watch)
            .map_err(|_| ApiError::BadRequest(format!("`{after}` is not a generation"))),
        (Method::GET, ["v1", "locate", rest @ ..]) => Ok(Request::Locate(rest.join("/"))),
        (Method::GET, ["metrics"]) => Ok(Request::Metrics),
        (Method::POST, ["v1", "shutdown"]) => Ok(Request::Shutdown),
        (m, _) => Err(ApiError::NotFound(format!("no route for {m} {path}"))),
    }
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    r
}

fn error(e: ApiError) -> Response<Full<Bytes>> {
    json(
        e.status(),
        &ErrorBody {
            error: e.to_string(),
        },
    )
}

fn reply<T: serde::Serialize>(r: Result<T, ApiError>) -> Response<Full<Bytes>> {
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(e),
    }
}

/// Answers one request; the unix socket's server and a node's HTTPS
/// endpoint (for a remote CLI, after its API token was checked) both use it.
pub async fn answer<B: Backend>(b: Arc<B>, req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let parsed = match parse(req).await {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    match parsed {
        Request::Apply(a) => reply(b.apply(a).await),
        Request::Down(d) => reply(b.down(d).await.map(|()| serde_json::json!({"ok": true}))),
        Request::Ps => json(StatusCode::OK, &b.ps().await),
        Request::Events => json(StatusCode::OK, &b.events().await),
        Request::Rollouts => json(StatusCode::OK, &b.rollouts().await),
        Request::Watch(after) => json(StatusCode::OK, &b.watch(after).await),
        Request::Locate(t) => reply(b.locate(t).await),
        Request::Metrics => {
            let mut r = Response::new(Full::new(Bytes::from(b.metrics().await)));
            r.headers_mut().insert(
                "content-type",
                "text/plain; version=0.0.4".parse().expect("static header"),
            );
            r
        }
        Request::Cluster(c) => reply(b.cluster(c).await),
        Request::Shutdown => {
            b.shutdown();
            json(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
    }
}

//! The hyper server on the unix socket and the single parse point.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::body::{full, Body};
use crate::error::ApiError;
use crate::local_conns::{InFlight, LocalConnections};
use crate::types::*;

/// What the node provides.
pub trait Backend: Send + Sync + 'static {
    fn apply(
        &self,
        req: ApplyRequest,
    ) -> impl Future<Output = Result<ApplyResponse, ApiError>> + Send;
    fn down(&self, deployment: String) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn ps(&self) -> impl Future<Output = Vec<ReplicaView>> + Send;
    /// Every node's recent events, oldest first; with `origin`
    /// [`Origin::Forwarded`] (another node gathering them), this node's own.
    fn events(&self, origin: Origin) -> impl Future<Output = Vec<Event>> + Send;
    fn rollouts(&self) -> impl Future<Output = Vec<RolloutView>> + Send;
    /// Resolves with the state generation once it is past `after`, or after
    /// the backend's own time limit with the current one.
    fn watch(&self, after: u64) -> impl Future<Output = u64> + Send;
    fn locate(
        &self,
        target: String,
    ) -> impl Future<Output = Result<Vec<ReplicaLocation>, ApiError>> + Send;
    /// A replica's log as a stream of lines (prefixed `SERVICE/N | ` when
    /// the target names several replicas), from whichever node runs it.
    /// `origin` [`Origin::Forwarded`] means another node already forwarded
    /// it: serve only replicas that run here.
    fn logs(
        &self,
        req: LogsRequest,
        origin: Origin,
    ) -> impl Future<Output = Result<Body, ApiError>> + Send;
    /// Runs a command in a replica, on whichever node runs it; the answer
    /// is an exec stream ([`crate::exec_stream`]).
    fn exec(
        &self,
        req: ExecRequest,
        origin: Origin,
    ) -> impl Future<Output = Result<Body, ApiError>> + Send;
    fn metrics(&self) -> impl Future<Output = String> + Send;
    fn cluster(
        &self,
        req: ClusterRequest,
    ) -> impl Future<Output = Result<ClusterReply, ApiError>> + Send;
    fn shutdown(&self);
}

/// Connections the unix socket serves at once; a new one over the cap closes
/// the oldest idle one (see `local_conns`).
pub const MAX_LOCAL_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's headers.
const SLOW_HEADERS: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the API on `socket` until the process ends. Accept errors (out
/// of descriptors) back off and are retried, never end the server.
pub async fn serve<B: Backend>(socket: PathBuf, backend: Arc<B>) -> std::io::Result<()> {
    let socket = socket.as_path();
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    let mut open = LocalConnections::new(MAX_LOCAL_CONNECTIONS);
    let mut backoff = std::time::Duration::from_millis(5);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                backoff = std::time::Duration::from_millis(5);
                s
            }
            Err(e) => {
                tracing::warn!("api accept: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
        };
        if !open.make_room() {
            tracing::warn!(
                "api: {MAX_LOCAL_CONNECTIONS} connections open, each with a request in flight; closing a new one"
            );
            continue;
        }
        let b = backend.clone();
        let in_flight = InFlight::default();
        let counted = in_flight.clone();
        let task = tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let b = b.clone();
                let busy = counted.begin();
                async move {
                    let answered = answer(b, req, Origin::Local).await;
                    drop(busy);
                    Ok::<_, std::convert::Infallible>(answered)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(SLOW_HEADERS)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
        open.add(task.abort_handle(), in_flight);
    }
}

async fn limited(body: Incoming) -> Result<Bytes, ApiError> {
    http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "request body refused: {e} (limit {MAX_BODY} bytes)"
            ))
        })
}

/// Reads a request's body (only for the routes that take one) and parses it.
async fn parse(req: hyper::Request<Incoming>) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if parts.method == Method::GET && path.trim_matches('/') == "v1/usage" {
        return usage_query(parts.uri.query().unwrap_or(""));
    }
    let bytes = if parts.method == Method::POST && takes_body(path) {
        limited(body).await?
    } else {
        Bytes::new()
    };
    parse_request(&parts.method, path, &bytes)
}

/// `/v1/usage`'s query string: every filter optional, nothing else allowed.
pub fn usage_query(query: &str) -> Result<Request, ApiError> {
    serde_urlencoded::from_str(query)
        .map(Request::Usage)
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "bad usage query `{query}`: {e}; filters are deployment=, service=, since_ms= and until_ms= (Unix ms)"
            ))
        })
}

fn takes_body(path: &str) -> bool {
    matches!(
        path.trim_matches('/'),
        "v1/apply" | "v1/cluster" | "v1/logs" | "v1/exec"
    )
}

/// The one place a raw HTTP request (method, path, body) becomes a
/// [`Request`]; anything else is a clear [`ApiError`], never a panic.
pub fn parse_request(method: &Method, path: &str, body: &[u8]) -> Result<Request, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.clone(), segs.as_slice()) {
        (Method::POST, ["v1", "apply"]) => {
            let a: ApplyRequest = serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("bad apply body: {e}")))?;
            Ok(Request::Apply(a))
        }
        (Method::POST, ["v1", "cluster"]) => {
            let c: ClusterRequest = serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("bad cluster request: {e}")))?;
            Ok(Request::Cluster(c))
        }
        (Method::POST, ["v1", "logs"]) => serde_json::from_slice(body)
            .map(Request::Logs)
            .map_err(|e| ApiError::BadRequest(format!("bad logs request: {e}"))),
        (Method::POST, ["v1", "exec"]) => serde_json::from_slice(body)
            .map(Request::Exec)
            .map_err(|e| ApiError::BadRequest(format!("bad exec request: {e}"))),
        (Method::POST, ["v1", "down", dep]) => Ok(Request::Down(dep.to_string())),
        (Method::GET, ["v1", "ps"]) => Ok(Request::Ps),
        (Method::GET | Method::POST, ["v1", "events"]) => Ok(Request::Events),
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

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(serde_json::to_vec(v).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    r
}

fn error(e: ApiError) -> Response<Body> {
    json(
        e.status(),
        &ErrorBody {
            error: e.to_string(),
        },
    )
}

fn stream(r: Result<Body, ApiError>) -> Response<Body> {
    match r {
        Ok(body) => Response::new(body),
        Err(e) => error(e),
    }
}

fn reply<T: serde::Serialize>(r: Result<T, ApiError>) -> Response<Body> {
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(e),
    }
}

/// Where a request came from: the unix socket (root on this node), a
/// remote CLI with an API token, or a manager node forwarding a remote
/// replica's `logs`/`exec` to this node, which runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Local,
    Remote,
    Forwarded,
}

/// The most a request body may hold (a spec with its env is far smaller).
pub const MAX_BODY: usize = 4 << 20;

/// Answers one request; the unix socket's server and a node's HTTPS
/// endpoint (for a remote CLI, after its API token was checked) both use it.
/// A remote CLI gets the documented client commands only (`up -d`, `down`,
/// `ps`, `events`, `rollouts`, `node`, `token`, `logs`, `exec`);
/// `shutdown`, on-disk replica lookups and metrics stay on the node. A
/// forwarding manager gets `logs` and `exec` only.
pub async fn answer<B: Backend>(
    b: Arc<B>,
    req: hyper::Request<Incoming>,
    origin: Origin,
) -> Response<Body> {
    let parsed = match parse(req).await {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    if origin == Origin::Forwarded
        && !matches!(
            parsed,
            Request::Logs(_) | Request::Exec(_) | Request::Events
        )
    {
        return error(ApiError::NotFound(
            "a node forwards only logs, exec and events to another node".into(),
        ));
    }
    if origin == Origin::Remote {
        let local_only = match &parsed {
            Request::Shutdown => Some("shutdown"),
            Request::Locate(_) => Some("locating replicas on disk"),
            Request::Metrics => Some("metrics"),
            _ => None,
        };
        if let Some(what) = local_only {
            return error(ApiError::NotFound(format!(
                "{what} is served only on the node's own unix socket, not to remote CLIs"
            )));
        }
    }
    match parsed {
        Request::Apply(a) => reply(b.apply(a).await),
        Request::Down(d) => reply(b.down(d).await.map(|()| serde_json::json!({"ok": true}))),
        Request::Ps => json(StatusCode::OK, &b.ps().await),
        Request::Events => json(StatusCode::OK, &b.events(origin).await),
        Request::Rollouts => json(StatusCode::OK, &b.rollouts().await),
        Request::Watch(after) => json(StatusCode::OK, &b.watch(after).await),
        Request::Locate(t) => reply(b.locate(t).await),
        Request::Logs(l) => stream(b.logs(l, origin).await),
        Request::Exec(x) => stream(b.exec(x, origin).await),
        Request::Metrics => {
            let mut r = Response::new(full(Bytes::from(b.metrics().await)));
            r.headers_mut().insert(
                "content-type",
                "text/plain; version=0.0.4".parse().expect("static header"),
            );
            r
        }
        Request::Cluster(c) => reply(b.cluster(c).await),
        Request::Usage(q) => reply(b.cluster(ClusterRequest::Usage(q)).await.map(|r| match r {
            ClusterReply::Usage(rows) => rows,
            _ => Vec::new(),
        })),
        Request::Shutdown => {
            b.shutdown();
            json(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parse_point_refuses_with_errors_not_panics() {
        let post = Method::POST;
        assert!(matches!(
            parse_request(&post, "/v1/apply", b"{not json"),
            Err(ApiError::BadRequest(m)) if m.starts_with("bad apply body")
        ));
        assert!(matches!(
            parse_request(&Method::GET, "/v1/watch/minus-one", b""),
            Err(ApiError::BadRequest(m)) if m == "`minus-one` is not a generation"
        ));
        assert!(matches!(
            parse_request(&Method::DELETE, "/v1/ps", b""),
            Err(ApiError::NotFound(m)) if m == "no route for DELETE /v1/ps"
        ));
        assert!(matches!(
            parse_request(&post, "/v1/down/web", b""),
            Ok(Request::Down(d)) if d == "web"
        ));
        assert!(matches!(
            parse_request(&post, "/v1/exec", br#"{"target":"web/1"}"#),
            Err(ApiError::BadRequest(m)) if m.starts_with("bad exec request")
        ));
        assert!(matches!(
            parse_request(&post, "/v1/logs", br#"{"target":"web","follow":"yes"}"#),
            Err(ApiError::BadRequest(m)) if m.starts_with("bad logs request")
        ));
        assert!(takes_body("/v1/apply") && takes_body("/v1/cluster") && !takes_body("/v1/ps"));
        assert!(takes_body("/v1/logs") && takes_body("/v1/exec"));
    }
}

//! `logs` and `exec` for a replica on any node: served from this node's
//! log files and runtime when the replica runs here, else forwarded over
//! mTLS to the node that runs it (which serves it as `Origin::Forwarded`
//! and never forwards again). Only a manager's certificate may forward;
//! the receiving node checks that.

use std::path::Path;
use std::time::Duration;

use hyper::body::Bytes;
use zlayer_api::exec_stream::{encode, Frame};
use zlayer_api::{ApiError, Body, ExecRequest, LogsRequest, Origin, ReplicaLocation};
use zlayer_model::NodeState;

use crate::run::Node;

/// How long a forwarded call may take to answer with its status.
const FORWARD_PATIENCE: Duration = Duration::from_secs(5);
/// How often a followed log is checked for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);
/// Lines (or exec chunks) buffered towards a slow reader.
const BUFFERED: usize = 256;

/// Where one replica of a target runs.
enum Place {
    Here(ReplicaLocation),
    There {
        service: String,
        replica: u32,
        node: String,
        addr: String,
    },
}

impl Place {
    fn label(&self) -> String {
        match self {
            Place::Here(l) => format!("{}/{}", l.service, l.replica),
            Place::There {
                service, replica, ..
            } => format!("{service}/{replica}"),
        }
    }
}

fn parse_target(target: &str) -> Result<(&str, Option<u32>), ApiError> {
    match target.split_once('/') {
        None => Ok((target, None)),
        Some((s, n)) => n
            .parse()
            .map(|n| (s, Some(n)))
            .map_err(|_| ApiError::BadRequest(format!("`{target}`: write SERVICE or SERVICE/N"))),
    }
}

impl Node {
    /// The replicas `target` names, here first, then those the other live
    /// nodes report (a replica here is never also looked for elsewhere).
    fn places(&self, target: &str, origin: Origin) -> Result<Vec<Place>, ApiError> {
        let (service, index) = parse_target(target)?;
        let mut out: Vec<Place> = self
            .agent
            .locate(target)
            .unwrap_or_default()
            .into_iter()
            .map(Place::Here)
            .collect();
        if origin != Origin::Forwarded {
            let here: Vec<(String, u32)> = out
                .iter()
                .filter_map(|p| match p {
                    Place::Here(l) => Some((l.service.clone(), l.replica)),
                    Place::There { .. } => None,
                })
                .collect();
            for n in self.control.other_records() {
                if n.state == NodeState::Down {
                    continue;
                }
                for r in n.replica_reports.iter().filter(|r| !r.surge) {
                    let svc = r.workload.rsplit('/').next().unwrap_or(&r.workload);
                    let key = (svc.to_string(), r.replica);
                    if svc == service
                        && index.is_none_or(|i| i == r.replica)
                        && !here.contains(&key)
                    {
                        out.push(Place::There {
                            service: key.0,
                            replica: key.1,
                            node: n.name.clone(),
                            addr: n.addr.clone(),
                        });
                    }
                }
            }
        }
        if out.is_empty() {
            let on = if origin == Origin::Forwarded {
                " on this node (it may have moved)"
            } else {
                ""
            };
            return Err(ApiError::NotFound(format!(
                "no replica matches `{target}`{on} (see `zlayer ps`)"
            )));
        }
        out.sort_by_key(|p| p.label());
        Ok(out)
    }

    /// Opens `path` (`/api/v1/logs` or `/api/v1/exec`) on the node that
    /// runs a replica, presenting this node's certificate.
    async fn forward<Req: serde::Serialize>(
        &self,
        node: &str,
        addr: &str,
        path: &str,
        req: &Req,
    ) -> Result<hyper::body::Incoming, ApiError> {
        self.control
            .member
            .peer_client()
            .open_stream(addr, path, req, FORWARD_PATIENCE)
            .await
            .map_err(|e| ApiError::Unavailable(format!("node {node} (which runs it): {e}")))
    }

    pub(crate) async fn serve_logs(
        &self,
        req: LogsRequest,
        origin: Origin,
    ) -> Result<Body, ApiError> {
        let places = self.places(&req.target, origin)?;
        let prefixed = places.len() > 1;
        let (tx, rx) = tokio::sync::mpsc::channel(BUFFERED);
        // Every source is opened before the answer starts, so an unreachable
        // node is an error, not a silently shorter log.
        let mut sources = Vec::new();
        for p in places {
            let prefix = if prefixed {
                format!("{} | ", p.label())
            } else {
                String::new()
            };
            let source = match p {
                Place::Here(l) => LogSource::File(l.log_path.into()),
                Place::There {
                    service,
                    replica,
                    node,
                    addr,
                } => {
                    let one = LogsRequest {
                        target: format!("{service}/{replica}"),
                        ..req.clone()
                    };
                    LogSource::Remote(self.forward(&node, &addr, "/api/v1/logs", &one).await?)
                }
            };
            sources.push((prefix, source));
        }
        let (tail, follow) = (req.tail, req.follow);
        tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            for (prefix, source) in sources {
                let tx = tx.clone();
                let copy = source.copy(prefix, tail, follow, tx);
                if follow {
                    running.spawn(copy);
                } else {
                    // One replica after another, as each log was written.
                    copy.await;
                }
            }
            while running.join_next().await.is_some() {}
        });
        Ok(zlayer_api::channel(rx))
    }

    pub(crate) async fn serve_exec(
        &self,
        req: ExecRequest,
        origin: Origin,
    ) -> Result<Body, ApiError> {
        if req.command.is_empty() {
            return Err(ApiError::BadRequest("exec needs a command".into()));
        }
        let target = if req.target.contains('/') {
            req.target.clone()
        } else {
            format!("{}/1", req.target)
        };
        let place = self.places(&target, origin)?.into_iter().next();
        match place {
            Some(Place::Here(l)) if l.container_id.is_empty() => Err(ApiError::NotFound(format!(
                "replica {}/{} is not running",
                l.service, l.replica
            ))),
            Some(Place::Here(l)) => exec_here(self.agent.exec_child(&l.container_id, &req.command)),
            Some(Place::There { node, addr, .. }) => {
                let one = ExecRequest { target, ..req };
                let body = self.forward(&node, &addr, "/api/v1/exec", &one).await?;
                use http_body_util::BodyExt;
                Ok(body.map_err(std::io::Error::other).boxed())
            }
            None => Err(ApiError::NotFound(format!("no replica `{target}`"))),
        }
    }
}

enum LogSource {
    File(std::path::PathBuf),
    Remote(hyper::body::Incoming),
}

type Lines = tokio::sync::mpsc::Sender<std::io::Result<Bytes>>;

impl LogSource {
    /// Sends the log's lines, each with `prefix`, until it ends (or, when
    /// followed, until the reader goes away).
    async fn copy(self, prefix: String, tail: Option<usize>, follow: bool, tx: Lines) {
        match self {
            LogSource::File(path) => {
                let _ = tokio::task::spawn_blocking(move || {
                    copy_file(&path, &prefix, tail, follow, &tx)
                })
                .await;
            }
            LogSource::Remote(body) => copy_remote(body, &prefix, &tx).await,
        }
    }
}

fn copy_file(path: &Path, prefix: &str, tail: Option<usize>, follow: bool, tx: &Lines) {
    let (lines, mut follower) = zlayer_runtime::read_log(path, tail, follow);
    for line in lines {
        if tx
            .blocking_send(Ok(Bytes::from(format!("{prefix}{line}\n"))))
            .is_err()
        {
            return;
        }
    }
    if !follow {
        return;
    }
    loop {
        let mut gone = false;
        follower.poll(&mut |line| {
            gone |= tx
                .blocking_send(Ok(Bytes::from(format!("{prefix}{line}"))))
                .is_err();
        });
        if gone || tx.is_closed() {
            return;
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}

/// Relays another node's log stream, putting `prefix` before each line.
async fn copy_remote(mut body: hyper::body::Incoming, prefix: &str, tx: &Lines) {
    use http_body_util::BodyExt;
    let mut partial = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            let _ = tx
                .send(Err(std::io::Error::other("the node serving it broke off")))
                .await;
            return;
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        partial.extend_from_slice(data);
        while let Some(end) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let mut out = prefix.as_bytes().to_vec();
            out.extend_from_slice(&line);
            if tx.send(Ok(out.into())).await.is_err() {
                return;
            }
        }
    }
    if !partial.is_empty() {
        let mut out = prefix.as_bytes().to_vec();
        out.extend_from_slice(&partial);
        let _ = tx.send(Ok(out.into())).await;
    }
}

/// Runs `cmd` (a `zlayer exec --id` child, see `Agent::exec_child`),
/// streaming its output as exec frames and its exit code last.
fn exec_here(mut cmd: tokio::process::Command) -> Result<Body, ApiError> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| ApiError::Internal(format!("starting exec: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel(BUFFERED);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let out = pump(stdout, tx.clone(), Frame::Stdout);
        let err = pump(stderr, tx.clone(), Frame::Stderr);
        tokio::join!(out, err);
        let code = match child.wait().await {
            Ok(s) => s.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                128 + s.signal().unwrap_or(0)
            }),
            Err(_) => 255,
        };
        let _ = tx.send(Ok(encode(&Frame::Exit(code)))).await;
    });
    Ok(zlayer_api::channel(rx))
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    from: Option<R>,
    tx: Lines,
    frame: fn(Bytes) -> Frame,
) {
    use tokio::io::AsyncReadExt;
    let Some(mut from) = from else { return };
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = encode(&frame(Bytes::copy_from_slice(&buf[..n])));
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        }
    }
}

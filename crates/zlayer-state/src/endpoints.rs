//! What a member serves to other members: the Raft RPCs and forwarded
//! writes, which need a caller with a certificate the cluster CA signed,
//! and joins, which cannot have one yet and present a token instead.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use openraft::error::{ClientWriteError, RaftError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::join::{admit, JoinRequest, JOIN};
use crate::member::{WriteReply, WRITE};
use crate::transport::raft_net::{APPEND, SNAPSHOT, VOTE};
use crate::transport::{Caller, Handler};
use crate::{Command, Raft, StateMachine};

pub struct Endpoints {
    raft: Raft,
    machine: StateMachine,
}

impl Endpoints {
    pub fn new(raft: Raft, machine: StateMachine) -> Endpoints {
        Endpoints { raft, machine }
    }
}

pub(crate) fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

pub(crate) fn json<T: Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(v) {
        Ok(b) => reply(StatusCode::OK, b),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string().into_bytes(),
        ),
    }
}

/// The largest request body a member reads: a snapshot chunk or a batch
/// of placements fits; anything bigger is refused before it is buffered.
const MAX_BODY: usize = 64 << 20;
/// A join comes from a caller the cluster does not know yet.
const MAX_JOIN_BODY: usize = 64 << 10;

pub(crate) async fn body<T: DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, Response<Full<Bytes>>> {
    let bytes = http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            let msg = format!("request body refused: {e} (limit {limit} bytes)");
            reply(StatusCode::PAYLOAD_TOO_LARGE, msg.into_bytes())
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| reply(StatusCode::BAD_REQUEST, e.to_string().into_bytes()))
}

impl Handler for Endpoints {
    async fn handle(
        &self,
        req: Request<Incoming>,
        caller: Caller,
        _remote: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        if path == JOIN {
            return match body::<JoinRequest>(req, MAX_JOIN_BODY).await {
                Ok(r) => json(&admit(&self.raft, &self.machine, r, crate::now_ms()).await),
                Err(r) => r,
            };
        }
        if caller == Caller::Anonymous {
            return reply(
                StatusCode::FORBIDDEN,
                b"this endpoint needs a node certificate signed by the cluster CA".to_vec(),
            );
        }
        let result = match path.as_str() {
            APPEND => match body(req, MAX_BODY).await {
                Ok(rpc) => json(&self.raft.append_entries(rpc).await),
                Err(r) => r,
            },
            VOTE => match body(req, MAX_BODY).await {
                Ok(rpc) => json(&self.raft.vote(rpc).await),
                Err(r) => r,
            },
            SNAPSHOT => match body(req, MAX_BODY).await {
                Ok(rpc) => json(&self.raft.install_snapshot(rpc).await),
                Err(r) => r,
            },
            WRITE => match body::<Command>(req, MAX_BODY).await {
                Ok(cmd) => json(&match self.raft.client_write(cmd).await {
                    Ok(r) => WriteReply::Done(r.data),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                        WriteReply::NotLeader
                    }
                    Err(e) => WriteReply::Failed(e.to_string()),
                }),
                Err(r) => r,
            },
            _ => reply(
                StatusCode::NOT_FOUND,
                format!("no endpoint {path}").into_bytes(),
            ),
        };
        result
    }
}

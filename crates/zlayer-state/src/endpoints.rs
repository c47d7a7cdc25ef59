//! What a member serves to other members: the Raft RPCs and forwarded
//! writes, which need a caller with a certificate the cluster CA signed,
//! and joins, which cannot have one yet and present a token instead.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use openraft::error::{ClientWriteError, RaftError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::alive::{AliveAsk, Heard, ALIVE};
use crate::authz::{known_caller, may_send_raft, may_write, SeedMember};
use crate::ca_key::{caller_is_voter, CaKey, CA_KEY};
use crate::ingress_tls::{IngressTlsRequest, INGRESS_TLS};
use crate::join::{admit, JoinRequest, JOIN};
use crate::member::{WriteReply, WRITE};
use crate::probe::{ProbeReply, ProbeRequest, MAX_PROBE, PROBE};
use crate::renew::{RenewRequest, RENEW};
use crate::secrets::{SecretsRequest, SECRETS};
use crate::transport::raft_net::{APPEND, SNAPSHOT, VOTE};
use crate::transport::{full, Body, Caller, Handler};
use crate::{Command, Raft, StateMachine, TokenKind, TokenUse};

/// Where the remote CLI's calls go: `/api/v1/...` arrives as `/v1/...`,
/// after its API token was checked.
pub const API: &str = "/api";

/// The node API a remote CLI reaches (the same requests as the unix socket).
pub trait RemoteApi: Send + Sync + 'static {
    /// `forwarded`: a manager node forwards a remote replica's `logs` or
    /// `exec` here, the node that runs it.
    fn call(
        &self,
        req: Request<Incoming>,
        forwarded: bool,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

/// Set once the node's API exists, after the member started.
pub type RemoteApiSlot = Arc<OnceLock<Arc<dyn RemoteApi>>>;

pub struct Endpoints {
    raft: Raft,
    machine: StateMachine,
    api: RemoteApiSlot,
    ca_key: CaKey,
    heard: Heard,
    seed: Vec<SeedMember>,
}

impl Endpoints {
    pub fn new(
        raft: Raft,
        machine: StateMachine,
        api: RemoteApiSlot,
        ca_key: CaKey,
        heard: Heard,
        seed: Vec<SeedMember>,
    ) -> Endpoints {
        Endpoints {
            raft,
            machine,
            api,
            ca_key,
            heard,
            seed,
        }
    }

    /// A Raft RPC, once its sender is allowed to speak for `claimed`.
    async fn raft_rpc<Req, Resp, F>(
        &self,
        req: Request<Incoming>,
        cert_fingerprint: &str,
        claimed: impl FnOnce(&Req) -> Option<u64>,
        call: impl FnOnce(Req) -> F,
    ) -> Response<Body>
    where
        Req: DeserializeOwned,
        Resp: Serialize,
        F: Future<Output = Resp>,
    {
        let rpc: Req = match body(req, MAX_BODY).await {
            Ok(rpc) => rpc,
            Err(r) => return r,
        };
        match may_send_raft(&self.machine, &self.seed, cert_fingerprint, claimed(&rpc)) {
            Ok(()) => json(&call(rpc).await),
            Err(why) => reply(StatusCode::FORBIDDEN, why.into_bytes()),
        }
    }

    /// Checks `Authorization: Bearer ID.SECRET` against the API tokens. A
    /// token this member does not know yet may have been made a moment ago
    /// and not reached it: it waits up to 2 s for its log to catch up.
    async fn api_caller(&self, req: &Request<Incoming>) -> Result<(), String> {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(
                "no API token: pass --api-token (from `zlayer token create --api` on a member)",
            )?;
        let (id, secret) = header
            .strip_prefix("Bearer ")
            .and_then(|t| t.split_once('.'))
            .ok_or("the Authorization header is not `Bearer ID.SECRET`")?;
        let secret_sha256 = crate::token::sha256_hex(secret);
        let verdict = || {
            self.machine.read(|s| {
                s.tokens
                    .get(id)
                    .filter(|t| t.kind == TokenKind::Api)
                    .map_or(TokenUse::Unknown, |t| {
                        t.check(&secret_sha256, crate::now_ms())
                    })
            })
        };
        let mut applied = self.machine.subscribe();
        let mut v = verdict();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while v == TokenUse::Unknown {
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => v = verdict(),
                _ => break,
            }
        }
        match v {
            TokenUse::Accepted => Ok(()),
            TokenUse::Expired => Err("the API token has expired".into()),
            TokenUse::Revoked => Err("the API token was revoked".into()),
            _ => Err("the cluster does not know this API token".into()),
        }
    }

    /// `/api/...`: a remote CLI with an API token, or a manager node (its
    /// certificate, with a live manager record) forwarding `logs`, `exec` or
    /// `events`.
    /// A worker's certificate forwards nothing: a worker only runs work.
    async fn remote_api(&self, req: Request<Incoming>, caller: &Caller) -> Response<Body> {
        let forwarded = match caller {
            Caller::Member { cert_fingerprint }
                if !req.headers().contains_key(hyper::header::AUTHORIZATION) =>
            {
                match known_caller(&self.machine, cert_fingerprint) {
                    Ok(k) if k.role == zlayer_model::ClusterRole::Manager => true,
                    Ok(k) => {
                        let why = format!(
                            "node {} is a worker: only a manager may reach replicas on other nodes (use a manager, or an API token)",
                            k.name
                        );
                        return reply(StatusCode::FORBIDDEN, why.into_bytes());
                    }
                    Err(why) => return reply(StatusCode::FORBIDDEN, why.into_bytes()),
                }
            }
            _ => false,
        };
        if !forwarded {
            if let Err(why) = self.api_caller(&req).await {
                return reply(StatusCode::UNAUTHORIZED, why.into_bytes());
            }
        }
        let Some(api) = self.api.get().cloned() else {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                b"this node's API is not up yet".to_vec(),
            );
        };
        let (mut parts, body) = req.into_parts();
        let rest = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let rest = rest.strip_prefix(API).unwrap_or(rest).to_string();
        match rest.parse() {
            Ok(uri) => parts.uri = uri,
            Err(_) => return reply(StatusCode::BAD_REQUEST, b"bad path".to_vec()),
        }
        api.call(Request::from_parts(parts, body), forwarded).await
    }
}

pub(crate) fn reply(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r
}

pub(crate) fn json<T: Serialize>(v: &T) -> Response<Body> {
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
/// How long the leader tries to confirm its quorum for a liveness call.
const ALIVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
const MAX_ALIVE_ASK: usize = 1024;
/// A join comes from a caller the cluster does not know yet.
const MAX_JOIN_BODY: usize = 64 << 10;

pub(crate) async fn body<T: DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, Response<Body>> {
    // A client that waits for `100 Continue` and declares a length over
    // the limit is refused before any of the body is read: it sends none
    // of it and gets the 413 whole, not a reset while it is still sending.
    // A client that sends at once is read up to the limit as before (a
    // refusal without reading would reset it mid-send).
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
    };
    let waits =
        header(hyper::header::EXPECT).is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let declared = header(hyper::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if waits && declared.is_some_and(|len| len > limit as u64) {
        let msg = format!("request body refused: length limit exceeded (limit {limit} bytes)");
        return Err(reply(StatusCode::PAYLOAD_TOO_LARGE, msg.into_bytes()));
    }
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
        remote: SocketAddr,
    ) -> Response<Body> {
        let path = req.uri().path().to_string();
        if path == JOIN {
            return match body::<JoinRequest>(req, MAX_JOIN_BODY).await {
                Ok(r) => json(
                    &admit(
                        &self.raft,
                        &self.machine,
                        self.ca_key.get(),
                        r,
                        remote.ip(),
                        crate::now_ms(),
                    )
                    .await,
                ),
                Err(r) => r,
            };
        }
        if path.starts_with(&format!("{API}/")) {
            return self.remote_api(req, &caller).await;
        }
        let Caller::Member { cert_fingerprint } = &caller else {
            return reply(
                StatusCode::FORBIDDEN,
                b"this endpoint needs a node certificate signed by the cluster CA".to_vec(),
            );
        };
        let raft = &self.raft;
        let result = match path.as_str() {
            APPEND => {
                let claimed = |r: &openraft::raft::AppendEntriesRequest<crate::TypeConfig>| {
                    r.vote.leader_id().voted_for()
                };
                self.raft_rpc(req, cert_fingerprint, claimed, |r| raft.append_entries(r))
                    .await
            }
            VOTE => {
                let claimed = |r: &openraft::raft::VoteRequest<u64>| r.vote.leader_id().voted_for();
                self.raft_rpc(req, cert_fingerprint, claimed, |r| raft.vote(r))
                    .await
            }
            SNAPSHOT => {
                let claimed = |r: &openraft::raft::InstallSnapshotRequest<crate::TypeConfig>| {
                    r.vote.leader_id().voted_for()
                };
                self.raft_rpc(req, cert_fingerprint, claimed, |r| raft.install_snapshot(r))
                    .await
            }
            _ => match known_caller(&self.machine, cert_fingerprint) {
                Err(_) if path == ALIVE => json(&crate::alive::AliveReply::UnknownNode),
                Err(why) => reply(StatusCode::FORBIDDEN, why.into_bytes()),
                Ok(known) => self.member_call(req, &path, known, cert_fingerprint).await,
            },
        };
        result
    }
}

impl Endpoints {
    /// The calls only a node with a current record may make.
    async fn member_call(
        &self,
        req: Request<Incoming>,
        path: &str,
        known: crate::authz::KnownCaller,
        cert_fingerprint: &str,
    ) -> Response<Body> {
        match path {
            CA_KEY if caller_is_voter(&self.raft, &self.machine, cert_fingerprint) => {
                json(&self.ca_key.get())
            }
            CA_KEY => reply(
                StatusCode::FORBIDDEN,
                b"only a voter may hold the CA key".to_vec(),
            ),
            ALIVE => {
                // An older caller sends `null`; anything unreadable is asked as it would.
                let ask = body::<Option<AliveAsk>>(req, MAX_ALIVE_ASK)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                json(
                    &crate::alive::answer(&self.raft, &self.heard, known.id, &ask, ALIVE_PATIENCE)
                        .await,
                )
            }
            PROBE => match body::<ProbeRequest>(req, MAX_PROBE).await {
                Ok(p) => json(&ProbeReply {
                    received: p.fill.len() as u64,
                }),
                Err(r) => r,
            },
            RENEW => match body::<RenewRequest>(req, MAX_BODY).await {
                Ok(r) => json(
                    &crate::renew::answer(
                        &self.raft,
                        &self.machine,
                        &self.ca_key,
                        cert_fingerprint,
                        r,
                    )
                    .await,
                ),
                Err(r) => r,
            },
            SECRETS => match body::<SecretsRequest>(req, MAX_BODY).await {
                Ok(r) => {
                    let key = self.ca_key.get();
                    json(
                        &self
                            .machine
                            .read(|s| crate::secrets::answer(s, key.as_deref(), known.id, &r)),
                    )
                }
                Err(r) => r,
            },
            INGRESS_TLS => match body::<IngressTlsRequest>(req, MAX_BODY).await {
                Ok(r) => json(&crate::ingress_tls::answer(&self.machine, &self.ca_key, r)),
                Err(r) => r,
            },
            WRITE => match body::<Command>(req, MAX_BODY).await {
                Ok(cmd) => match may_write(&known, &cmd) {
                    Err(why) => reply(StatusCode::FORBIDDEN, why.into_bytes()),
                    Ok(()) => json(&match self.raft.client_write(cmd).await {
                        Ok(r) => WriteReply::Done(r.data),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                            WriteReply::NotLeader
                        }
                        Err(e) => WriteReply::Failed(e.to_string()),
                    }),
                },
                Err(r) => r,
            },
            _ => reply(
                StatusCode::NOT_FOUND,
                format!("no endpoint {path}").into_bytes(),
            ),
        }
    }
}

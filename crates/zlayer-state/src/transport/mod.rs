//! Node-to-node calls over HTTPS with mutual TLS (hyper + rustls): the Raft
//! RPCs, forwarded writes and joins.

pub mod client;
pub mod raft_net;
pub mod server;
pub mod tls;

pub use client::{CallError, PeerClient};

use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Bytes;

/// Every response body a member sends: whole, or streamed (a log or an
/// exec forwarded to the node that runs the replica).
pub type Body = BoxBody<Bytes, std::io::Error>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
pub use server::{serve, Caller, Handler};

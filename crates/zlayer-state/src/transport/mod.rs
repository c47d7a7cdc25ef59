//! Node-to-node calls over HTTPS with mutual TLS (hyper + rustls): the Raft
//! RPCs, forwarded writes and joins.

pub mod client;
pub mod raft_net;
pub mod server;
pub mod tls;

pub use client::{CallError, PeerClient};
pub use server::{serve, Caller, Handler};

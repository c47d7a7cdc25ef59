//! zlayer-api owns the node's HTTP API: the wire types, one parse point
//! that turns a request into a closed [`Request`] enum, the hyper server on
//! the node's unix socket (local root only), and the client the CLI uses.
//!
//! It contains no business logic: the node implements [`Backend`].

mod body;
mod client;
mod error;
mod local_conns;
mod server;
mod types;
mod views;

pub use body::{channel, exec_stream, full, Body};
pub use client::{Client, ClientError};
pub use error::ApiError;
pub use server::{answer, parse_request, serve, Backend, Origin, MAX_BODY};
pub use types::*;

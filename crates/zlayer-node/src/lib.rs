//! zlayer-node is the one composition point of a node. It owns the agent
//! (`zlayer-agent`) and the control plane (`zlayer-control`), and later the
//! overlay and the proxy; it feeds the agent from the committed state
//! through [`ControlPort`], answers the node API ([`zlayer_api::Backend`])
//! by sending each request to the part that owns it (on the unix socket,
//! and for remote CLIs on the control plane's mTLS endpoint, `remote`),
//! and runs them all.
//!
//! It must not hold logic another crate could own: it decides nothing
//! about specs, placement or containers, it only routes between the parts
//! and maps their errors to [`zlayer_api::ApiError`].

mod backend;
mod errors;
mod port;
mod remote;
mod run;

pub use port::ControlPort;
pub use remote::remote_client;
pub use run::{run, Node, NodeConfig};

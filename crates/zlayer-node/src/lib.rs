//! zlayer-node is the one composition point of a node. It owns the agent
//! (`zlayer-agent`), the control plane (`zlayer-control`) and the node's
//! side of the overlay (`overlay`: the WireGuard mesh from the node records,
//! brought up first behind NAT; `mesh_plan`: peers, keepalives, relays), and
//! later the proxy; it feeds the agent from the committed state
//! through [`ControlPort`], answers the node API ([`zlayer_api::Backend`])
//! by sending each request to the part that owns it (on the unix socket,
//! and for remote CLIs on the control plane's mTLS endpoint, `remote`),
//! forwards `logs` and `exec` of a replica on another node to that node
//! over mTLS (`replica_io`), obtains ACME certificates on the leader and
//! keeps every ingress answering the challenges (`acme`), and runs them all, restarting the node after its Raft store failed on a
//! full disk (`recover`).
//!
//! It must not hold logic another crate could own: it decides nothing
//! about specs, placement or containers, it only routes between the parts
//! and maps their errors to [`zlayer_api::ApiError`].

mod acme;
mod backend;
mod errors;
mod events;
mod host;
mod mesh_plan;
mod overlay;
mod port;
mod recover;
mod remote;
mod replica_io;
mod run;

pub use port::ControlPort;
pub use remote::remote_client;
pub use run::{run, Node, NodeConfig};

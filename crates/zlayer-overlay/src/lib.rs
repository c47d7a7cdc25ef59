//! zlayer-overlay owns the WireGuard mesh between nodes: the node's key
//! pair, the WireGuard device (the kernel's where `ip link add type
//! wireguard` works, else boringtun in userspace, both configured through
//! `defguard_wireguard_rs`), its peers, and the routes that send each other
//! node's container subnet into the tunnel.
//!
//! It must not allocate container addresses, know about Raft or specs, or
//! touch the node bridge: callers hand it keys, endpoints and subnets.
//! Every call to the device runs with a timeout, so a stale UAPI socket
//! cannot hang the node.

mod device;
mod error;
mod keys;
mod mesh;
mod routes;

pub use device::DeviceKind;
pub use error::OverlayError;
pub use keys::{interface_name, load_or_create_key, public_key_of, PrivateKey};
pub use mesh::{Mesh, MeshConfig, PeerConfig, PeerStatus};

/// The port WireGuard listens on unless the node says otherwise.
pub const DEFAULT_PORT: u16 = 51820;

/// Underlay MTU (1500) less WireGuard's IPv4 overhead (60 bytes, and 20 to
/// spare for an IPv6 underlay), as `wg-quick` picks.
pub const DEFAULT_MTU: u32 = 1420;

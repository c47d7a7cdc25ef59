//! zlayer-net owns node-local networking: the bridge, one veth per
//! container inside its own network namespace, IPAM from the node's CIDR,
//! masquerading and network policy (nftables through its JSON API),
//! published TCP and UDP ports and the service DNS server.
//!
//! It must not know about Raft, the scheduler or specs: callers hand it
//! names, addresses and ports. Links, addresses and routes go through
//! rtnetlink; nothing shells out to `ip`.

mod accept;
mod bridge;
mod conns;
mod dns;
mod error;
mod ipam;
mod nat;
mod netns;
mod nft;
mod policy;
mod publish;
mod publish_udp;
mod veth;

pub use accept::Acceptor;
pub use bridge::{ensure_bridge, BridgeConfig};
pub use conns::{Activity, Admitted, ConnectionTable, Watched};
pub use dns::{DnsServer, DnsTable};
pub use error::NetError;
pub use ipam::{allocate, Cidr};
pub use nat::ensure_masquerade;
pub use netns::{create_loopback_netns, create_netns, remove_netns};
pub use policy::{ensure_policy, IngressRule};
pub use publish::{Backends, PortPublisher, Published, Transport, DEFAULT_MAX_CONNECTIONS};
pub use publish_udp::{UdpPublisher, UDP_IDLE};
pub use veth::{attach, detach, host_ifname, Attachment};

/// A netlink handle on the current network namespace, with its connection driven on tokio.
pub(crate) fn netlink() -> Result<rtnetlink::Handle, NetError> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| NetError::Netlink(e.to_string()))?;
    tokio::spawn(conn);
    Ok(handle)
}

//! What a node is and has: its resources, its state in the cluster, the
//! health it reports for scoring, and its network facts.

use serde::{Deserialize, Serialize};

/// An amount of the resources placement accounts for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_milli: u64,
    pub memory_bytes: u64,
    pub gpus: u32,
}

impl Resources {
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.cpu_milli <= free.cpu_milli
            && self.memory_bytes <= free.memory_bytes
            && self.gpus <= free.gpus
    }

    /// Subtracts `r`, stopping at zero.
    pub fn take(&mut self, r: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_sub(r.cpu_milli);
        self.memory_bytes = self.memory_bytes.saturating_sub(r.memory_bytes);
        self.gpus = self.gpus.saturating_sub(r.gpus);
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    #[default]
    Ready,
    /// Takes no new replicas; its replicas move elsewhere.
    Draining,
    /// Missed its heartbeats; its replicas are rescheduled.
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::Down => "down",
        }
    }
}

/// What a node reports about itself, each in `0.0..=1.0` where 1 is best.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub bandwidth: f64,
    pub latency: f64,
    pub efficiency: f64,
    pub reputation: f64,
}

impl Default for NodeHealth {
    fn default() -> NodeHealth {
        NodeHealth {
            bandwidth: 1.0,
            latency: 1.0,
            efficiency: 1.0,
            reputation: 1.0,
        }
    }
}

/// How other nodes reach this node's containers: its container subnet and
/// its WireGuard identity. Each is `None` until the overlay assigns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNetwork {
    /// The node's container subnet, `a.b.c.d/len`.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Base64 WireGuard public key.
    #[serde(default)]
    pub wg_public_key: Option<String>,
    /// `ip:port` where the node's WireGuard device listens.
    #[serde(default)]
    pub wg_endpoint: Option<String>,
    /// Which WireGuard device the node runs: `kernel` or `userspace`.
    #[serde(default)]
    pub wg_device: Option<String>,
    /// The node joined from behind NAT: no other node can open a path to
    /// it, so it has no endpoint, keeps its paths to the others open with
    /// keepalives, its control address is in its own subnet (reached
    /// through the mesh), and it reaches other such nodes through a relay.
    #[serde(default)]
    pub behind_nat: bool,
}

/// The cluster's container address space, fixed when it is founded: each
/// node gets one subnet of `node_prefix` bits from `cidr`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNetwork {
    /// `a.b.c.d/len`, 10.240.0.0/16 unless the founder said otherwise.
    pub cidr: String,
    /// The prefix length of each node's subnet (24).
    pub node_prefix: u8,
}

/// A WireGuard peer outside the cluster (a laptop, a stock `wireguard-go`),
/// reaching containers with one address of the cluster CIDR's last subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockPeer {
    pub name: String,
    /// Base64 WireGuard public key.
    pub public_key: String,
    /// `a.b.c.d/32`.
    pub address: String,
}

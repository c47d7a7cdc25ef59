//! The node's side of the mesh: one device, its peers kept equal to the
//! cluster's other nodes, and a route per peer subnet.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::net::IpAddrMask;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::InterfaceConfiguration;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::device::{Device, DeviceKind};
use crate::error::OverlayError;
use crate::keys::PrivateKey;
use crate::routes::{self, Subnet};

pub struct MeshConfig {
    pub ifname: String,
    pub listen_port: u16,
    pub key: PrivateKey,
    /// The device's own address (the node's gateway address), the source
    /// of the node's own traffic into the mesh.
    pub address: Ipv4Addr,
    pub mtu: u32,
    /// `None` picks the kernel device where it exists, else userspace.
    pub only: Option<DeviceKind>,
    /// Threads of a userspace device (at least 1).
    pub threads: usize,
}

/// One peer as the mesh should have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// For logs and status: the node's name.
    pub name: String,
    /// Base64, as WireGuard writes keys.
    pub public_key: String,
    /// Where to send its first handshake; `None` waits for the peer to
    /// reach this node (a peer behind NAT), whose source then becomes it.
    pub endpoint: Option<SocketAddr>,
    /// The subnets that reach this peer, and that it may send from.
    pub allowed: Vec<Subnet>,
    /// Seconds between keepalives; set toward peers that cannot reach this
    /// node, so the NAT in front of it keeps the path open.
    pub keepalive: Option<u16>,
}

/// One peer as the device reports it, like a `wg show` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    /// Unix seconds of the last handshake; `None` before the first.
    pub last_handshake_unix: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub allowed_ips: Vec<String>,
}

pub struct Mesh {
    device: Device,
    address: Ipv4Addr,
    public_key: String,
    applied: Mutex<BTreeMap<String, PeerConfig>>,
}

impl Mesh {
    /// Creates and configures the device (no peers yet) and brings it up.
    pub async fn start(cfg: MeshConfig) -> Result<Mesh, OverlayError> {
        let device = Device::create(&cfg.ifname, cfg.only, cfg.threads).await?;
        device
            .configure(InterfaceConfiguration {
                name: cfg.ifname.clone(),
                prvkey: cfg.key.to_base64(),
                addresses: vec![IpAddrMask::new(IpAddr::V4(cfg.address), 32)],
                port: cfg.listen_port,
                peers: Vec::new(),
                mtu: Some(cfg.mtu),
                fwmark: None,
            })
            .await?;
        routes::set_up(&cfg.ifname).await?;
        Ok(Mesh {
            device,
            address: cfg.address,
            public_key: cfg.key.public_base64(),
            applied: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn kind(&self) -> DeviceKind {
        self.device.kind
    }

    pub fn ifname(&self) -> &str {
        &self.device.ifname
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Makes the device's peers and routes exactly `peers`. A peer that
    /// cannot be set is skipped (and named in the error) without holding
    /// up the others.
    pub async fn sync(&self, peers: &[PeerConfig]) -> Result<(), OverlayError> {
        let mut applied = self.applied.lock().await;
        let wanted: BTreeMap<String, &PeerConfig> =
            peers.iter().map(|p| (p.public_key.clone(), p)).collect();
        let mut failed = Vec::new();
        let gone: Vec<String> = applied
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            match parse_key(&key) {
                Ok(k) => match self.device.remove_peer(k).await {
                    Ok(()) => {
                        applied.remove(&key);
                    }
                    Err(e) => failed.push(e.to_string()),
                },
                Err(_) => {
                    applied.remove(&key);
                }
            }
        }
        for (key, p) in &wanted {
            if applied.get(key) == Some(*p) {
                continue;
            }
            let peer = match to_peer(p) {
                Ok(peer) => peer,
                Err(e) => {
                    failed.push(e.to_string());
                    continue;
                }
            };
            // A changed peer is removed and set anew: boringtun cannot
            // modify a peer in place (it asserts that the key is new).
            if applied.contains_key(key) {
                if let Err(e) = self.device.remove_peer(peer.public_key.clone()).await {
                    failed.push(format!("{}: {e}", p.name));
                    continue;
                }
                applied.remove(key);
            }
            match self.device.set_peer(peer).await {
                Ok(()) => {
                    applied.insert(key.clone(), (*p).clone());
                }
                Err(e) => failed.push(format!("{}: {e}", p.name)),
            }
        }
        let subnets: BTreeSet<Subnet> = applied
            .values()
            .flat_map(|p| p.allowed.iter().copied())
            .collect();
        routes::sync(&self.device.ifname, &subnets).await?;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(OverlayError::Device {
                ifname: self.device.ifname.clone(),
                reason: failed.join("; "),
            })
        }
    }

    /// Sends one datagram into the tunnel toward each peer's first subnet
    /// (its gateway's discard port), so the device makes its handshakes now
    /// rather than at the first keepalive: from behind NAT, that handshake
    /// is what lets the peer reach this node at all.
    pub async fn poke(&self, peers: &[PeerConfig]) {
        const DISCARD: u16 = 9;
        let sock = match tokio::net::UdpSocket::bind((self.address, 0)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("poking the mesh from {}: {e}", self.address);
                return;
            }
        };
        for (network, _) in peers.iter().filter_map(|p| p.allowed.first()) {
            let gateway = Ipv4Addr::from(u32::from(*network).wrapping_add(1));
            let _ = sock.send_to(&[0], (gateway, DISCARD)).await;
        }
    }

    /// The device's peers, as it counts them.
    pub async fn status(&self) -> Result<Vec<PeerStatus>, OverlayError> {
        let host = self.device.read().await?;
        let mut out: Vec<PeerStatus> = host
            .peers
            .values()
            .map(|p| PeerStatus {
                public_key: p.public_key.to_string(),
                endpoint: p.endpoint,
                last_handshake_unix: p
                    .last_handshake
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .filter(|s| *s > 0),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                allowed_ips: p.allowed_ips.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        Ok(out)
    }
}

fn parse_key(base64: &str) -> Result<Key, OverlayError> {
    Key::try_from(base64).map_err(|e| OverlayError::Peer {
        peer: base64.to_string(),
        reason: format!("not a WireGuard public key: {e}"),
    })
}

fn to_peer(p: &PeerConfig) -> Result<Peer, OverlayError> {
    let mut peer = Peer::new(parse_key(&p.public_key).map_err(|e| OverlayError::Peer {
        peer: p.name.clone(),
        reason: e.to_string(),
    })?);
    peer.endpoint = p.endpoint;
    peer.persistent_keepalive_interval = p.keepalive;
    peer.allowed_ips = p
        .allowed
        .iter()
        .map(|(a, len)| IpAddrMask::new(IpAddr::V4(*a), *len))
        .collect();
    Ok(peer)
}

//! The node's side of the mesh, fed from the committed node records: its
//! subnet decides the agent's address pool, its key and endpoint are
//! published in its record, and the other records become the device's
//! peers and routes as nodes join, move or are removed.
//!
//! A node behind NAT brings its mesh up first, from what the leader told it
//! at admission, because the cluster's state reaches it only through the
//! mesh. It keeps its paths open with keepalives (the others learn its
//! endpoint from them) and reaches other nodes behind NAT through a relay:
//! a reachable node whose peer entry also carries their subnets, and which
//! routes between them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use zlayer_control::Control;
use zlayer_overlay::{DeviceKind, Mesh, MeshConfig, PeerConfig};
use zlayer_state::{NatSeed, NodeRecord};

use crate::mesh_plan::{plan, NAT_KEEPALIVE};

/// How long a node that just joined waits for its own record to reach it.
const RECORD_WAIT: Duration = Duration::from_secs(60);
/// Peers are re-applied this often even when no record changed, so a
/// route someone deleted comes back.
const RESYNC: Duration = Duration::from_secs(30);

/// The container subnet the cluster gave this node, `None` in a cluster
/// founded before the overlay (its nodes keep `--cidr`).
pub(crate) async fn own_subnet(control: &Control) -> Result<Option<zlayer_net::Cidr>, String> {
    let start = tokio::time::Instant::now();
    let me = loop {
        if let Some(me) = control.own_record() {
            break me;
        }
        if start.elapsed() > RECORD_WAIT {
            return Err(format!(
                "this node's record has not reached it within {}s of starting; is a manager of the cluster reachable?",
                RECORD_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    me.network
        .subnet
        .map(|s| {
            s.parse()
                .map_err(|e| format!("the subnet the cluster gave this node: {e}"))
        })
        .transpose()
}

/// The cluster CIDR, whose traffic is never masqueraded.
pub(crate) fn cluster_cidr(control: &Control) -> Option<zlayer_net::Cidr> {
    control
        .read(|s| s.network.clone())
        .and_then(|n| n.cidr.parse().ok())
}

/// Brings up the device and keeps it in step with the cluster. Without a
/// device (no TUN, no permission) the node still runs, as one island.
pub(crate) async fn start(
    control: Arc<Control>,
    data_dir: &Path,
    subnet: zlayer_net::Cidr,
    port: u16,
    only: Option<DeviceKind>,
    threads: usize,
) -> Option<Arc<Mesh>> {
    let mesh = bring_up(data_dir, subnet, port, only, threads).await?;
    follow_cluster(control, mesh.clone(), port);
    Some(mesh)
}

/// Behind NAT: the device comes up before the control plane, with the
/// nodes the leader named at admission as peers, and a first packet to
/// each so the handshakes (and the NAT mappings) exist at once.
pub(crate) async fn start_behind_nat(
    seed: &NatSeed,
    data_dir: &Path,
    port: u16,
    only: Option<DeviceKind>,
    threads: usize,
) -> Option<Arc<Mesh>> {
    let subnet: zlayer_net::Cidr = match seed.subnet.parse() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("overlay off: the subnet in node.json: {e}");
            return None;
        }
    };
    let mesh = bring_up(data_dir, subnet, port, only, threads).await?;
    let peers: Vec<PeerConfig> = seed
        .peers
        .iter()
        .filter_map(|p| {
            let s: zlayer_net::Cidr = p.subnet.parse().ok()?;
            Some(PeerConfig {
                name: p.name.clone(),
                public_key: p.public_key.clone(),
                endpoint: p.endpoint.parse().ok(),
                allowed: vec![(s.network, s.prefix)],
                keepalive: Some(NAT_KEEPALIVE),
            })
        })
        .collect();
    if let Err(e) = mesh.sync(&peers).await {
        tracing::warn!("overlay peers from admission: {e}");
    }
    mesh.poke(&peers).await;
    tracing::info!(
        peers = peers.len(),
        "behind NAT: overlay up before the control plane"
    );
    Some(mesh)
}

async fn bring_up(
    data_dir: &Path,
    subnet: zlayer_net::Cidr,
    port: u16,
    only: Option<DeviceKind>,
    threads: usize,
) -> Option<Arc<Mesh>> {
    let key = match zlayer_overlay::load_or_create_key(&data_dir.join("cluster").join("wg.key")) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("overlay off: {e}");
            return None;
        }
    };
    let mesh = Mesh::start(MeshConfig {
        ifname: zlayer_overlay::interface_name(data_dir),
        listen_port: port,
        key,
        address: subnet.gateway(),
        mtu: zlayer_overlay::DEFAULT_MTU,
        only,
        threads,
    })
    .await;
    match mesh {
        Ok(m) => Some(Arc::new(m)),
        Err(e) => {
            tracing::error!("overlay off, containers reach only this node: {e}");
            None
        }
    }
}

/// Publishes this node's side of the mesh and keeps the device's peers
/// equal to the other nodes' records.
pub(crate) fn follow_cluster(control: Arc<Control>, mesh: Arc<Mesh>, port: u16) {
    let addr: Option<SocketAddr> = control.own_record().and_then(|n| n.addr.parse().ok());
    let endpoint = SocketAddr::new(
        addr.map_or(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip()),
        port,
    );
    tracing::info!(
        ifname = mesh.ifname(),
        device = mesh.kind().as_str(),
        %endpoint,
        "overlay up"
    );
    tokio::spawn(publish(
        control.clone(),
        mesh.public_key().to_string(),
        endpoint.to_string(),
        mesh.kind(),
    ));
    tokio::spawn(follow(control, mesh));
}

/// Puts this node's key, endpoint and device in its record, retrying
/// until a leader takes it.
async fn publish(control: Arc<Control>, key: String, endpoint: String, kind: DeviceKind) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match control
            .publish_network(&key, &endpoint, kind.as_str())
            .await
        {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("publishing this node's WireGuard key: {e}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Keeps the device's peers equal to the other nodes' records.
async fn follow(control: Arc<Control>, mesh: Arc<Mesh>) {
    let mut changes = control.subscribe();
    let mut applied: Option<Vec<PeerConfig>> = None;
    let mut last_error = String::new();
    let mut since_full = tokio::time::Instant::now();
    loop {
        let me = control.own_record();
        let mut peers = plan(me.as_ref(), &control.other_records()).peers;
        peers.extend(stock_peers(&control));
        let due = since_full.elapsed() > RESYNC;
        if applied.as_ref() != Some(&peers) || due {
            since_full = tokio::time::Instant::now();
            match mesh.sync(&peers).await {
                Ok(()) => {
                    if me.is_some_and(|m| m.network.behind_nat) {
                        mesh.poke(&peers).await;
                    }
                    applied = Some(peers);
                    last_error.clear();
                }
                Err(e) => {
                    applied = None;
                    let e = e.to_string();
                    if e != last_error {
                        tracing::warn!("overlay peers: {e}");
                        last_error = e;
                    }
                }
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Stock peers: no endpoint until they reach this node, their /32 allowed.
fn stock_peers(control: &Control) -> Vec<PeerConfig> {
    control.read(|s| {
        s.peers
            .values()
            .filter_map(|p| {
                let (ip, len) = p.address.split_once('/')?;
                Some(PeerConfig {
                    name: p.name.clone(),
                    public_key: p.public_key.clone(),
                    endpoint: None,
                    allowed: vec![(ip.parse().ok()?, len.parse().ok()?)],
                    keepalive: None,
                })
            })
            .collect()
    })
}

impl crate::run::Node {
    /// Records a stock peer and says what its `wg-quick` config needs.
    pub(crate) async fn stock_peer(
        &self,
        name: &str,
        public_key: &str,
    ) -> Result<zlayer_api::StockPeerConfig, zlayer_api::ApiError> {
        // The same checks every member applies; here they answer as bad
        // input before anything is written.
        zlayer_state::mesh_fields::check_peer_name(name)
            .and_then(|()| zlayer_state::mesh_fields::check_public_key(public_key))
            .map_err(zlayer_api::ApiError::Invalid)?;
        let peer = self
            .control
            .add_peer(name, public_key)
            .await
            .map_err(crate::errors::control)?;
        let mut nodes: Vec<NodeRecord> = self.control.other_records();
        nodes.extend(self.control.own_record());
        Ok(zlayer_api::StockPeerConfig {
            name: peer.name,
            address: peer.address,
            cluster_cidr: self
                .control
                .read(|s| s.network.clone())
                .map(|n| n.cidr)
                .unwrap_or_default(),
            nodes: nodes
                .into_iter()
                .filter_map(|n| {
                    Some(zlayer_api::StockPeerNode {
                        public_key: n.network.wg_public_key?,
                        endpoint: n.network.wg_endpoint?,
                        subnet: n.network.subnet?,
                        name: n.name,
                    })
                })
                .collect(),
        })
    }

    /// This node's device and its peers, named from the node records.
    pub(crate) async fn overlay_view(
        &self,
    ) -> Result<zlayer_api::OverlayView, zlayer_api::ApiError> {
        let me = self.control.own_record();
        let mut view = zlayer_api::OverlayView {
            subnet: me
                .as_ref()
                .and_then(|n| n.network.subnet.clone())
                .unwrap_or_default(),
            endpoint: me
                .as_ref()
                .and_then(|n| n.network.wg_endpoint.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        let Some(mesh) = &self.overlay else {
            return Ok(view);
        };
        view.device = mesh.kind().as_str().into();
        view.interface = mesh.ifname().into();
        view.public_key = mesh.public_key().into();
        let mut names: std::collections::HashMap<String, String> = self
            .control
            .other_records()
            .into_iter()
            .filter_map(|n| Some((n.network.wg_public_key?, n.name)))
            .collect();
        names.extend(self.control.read(|s| {
            s.peers
                .values()
                .map(|p| (p.public_key.clone(), format!("{} (peer)", p.name)))
                .collect::<Vec<_>>()
        }));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let others = self.control.other_records();
        let relayed = plan(me.as_ref(), &others).relayed;
        let subnet_of: BTreeMap<String, String> = others
            .iter()
            .filter_map(|n| Some((n.name.clone(), n.network.subnet.clone()?)))
            .collect();
        let peers = mesh
            .status()
            .await
            .map_err(|e| zlayer_api::ApiError::Unavailable(e.to_string()))?;
        let mut rows: Vec<zlayer_api::OverlayPeerView> = peers
            .into_iter()
            .map(|p| {
                let name = names
                    .get(&p.public_key)
                    .cloned()
                    .unwrap_or_else(|| "?".into());
                let link = self.control.links.get(&name);
                let relays: Vec<&str> = relayed
                    .iter()
                    .filter(|(_, r)| **r == name)
                    .map(|(n, _)| n.as_str())
                    .collect();
                zlayer_api::OverlayPeerView {
                    endpoint: p.endpoint.map(|e| e.to_string()).unwrap_or_default(),
                    handshake_secs_ago: p.last_handshake_unix.map(|t| now.saturating_sub(t)),
                    rx_bytes: Some(p.rx_bytes),
                    tx_bytes: Some(p.tx_bytes),
                    allowed_ips: p.allowed_ips,
                    path: if relays.is_empty() {
                        "direct".into()
                    } else {
                        format!("direct, relays {}", relays.join(","))
                    },
                    public_key: p.public_key,
                    rtt_ms: link.as_ref().map(|l| l.rtt_ms),
                    mbit_s: link.map(|l| l.mbit_s),
                    name,
                }
            })
            .collect();
        for (node, relay) in &relayed {
            let Some(via) = rows.iter().find(|r| &r.name == relay).cloned() else {
                continue;
            };
            let link = self.control.links.get(node);
            rows.push(zlayer_api::OverlayPeerView {
                name: node.clone(),
                public_key: others
                    .iter()
                    .find(|n| &n.name == node)
                    .and_then(|n| n.network.wg_public_key.clone())
                    .unwrap_or_default(),
                endpoint: String::new(),
                handshake_secs_ago: via.handshake_secs_ago,
                rx_bytes: None,
                tx_bytes: None,
                allowed_ips: subnet_of.get(node).cloned().into_iter().collect(),
                path: format!("relay via {relay}"),
                rtt_ms: link.as_ref().map(|l| l.rtt_ms),
                mbit_s: link.map(|l| l.mbit_s),
            });
        }
        view.peers = rows;
        Ok(view)
    }
}

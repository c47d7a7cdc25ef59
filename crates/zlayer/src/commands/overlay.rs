//! `zlayer overlay status`: this node's WireGuard device and its peers.

use std::path::Path;

use anyhow::Result;
use zlayer_api::{ClusterReply, ClusterRequest, OverlayPeerView};

use crate::cli::{Format, OverlayCommand, PeerCommand};
use crate::output::render;

pub fn overlay(data: &Path, cmd: OverlayCommand) -> Result<i32> {
    let output = match cmd {
        OverlayCommand::Status { output } => output,
        OverlayCommand::Peer {
            command: PeerCommand::Add { name, public_key },
        } => return add_peer(data, name, public_key),
        OverlayCommand::Peer {
            command: PeerCommand::Rm { name },
        } => {
            super::cluster(data, ClusterRequest::PeerRemove(name.clone()))?;
            println!("peer {name} removed");
            return Ok(0);
        }
    };
    let ClusterReply::Overlay(view) = super::cluster(data, ClusterRequest::Overlay)? else {
        anyhow::bail!("the node answered `overlay status` with something else");
    };
    match output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        Format::Yaml => print!("{}", serde_saphyr::to_string(&view)?),
        Format::Table if view.device.is_empty() => {
            println!("this node runs no overlay (its cluster has no cluster CIDR, or the device could not be made: see node.log)");
        }
        Format::Table => {
            println!(
                "interface {} ({}), subnet {}, endpoint {}, public key {}",
                view.interface, view.device, view.subnet, view.endpoint, view.public_key
            );
            render(
                output,
                &view.peers,
                &[
                    "PEER",
                    "ENDPOINT",
                    "HANDSHAKE",
                    "RECEIVED",
                    "SENT",
                    "ALLOWED IPS",
                    "PATH",
                    "RTT",
                    "BANDWIDTH",
                ],
                |p: &OverlayPeerView| {
                    vec![
                        p.name.clone(),
                        p.endpoint.clone(),
                        p.handshake_secs_ago
                            .map_or("never".into(), |s| format!("{s}s ago")),
                        p.rx_bytes.map_or("-".into(), |b| b.to_string()),
                        p.tx_bytes.map_or("-".into(), |b| b.to_string()),
                        p.allowed_ips.join(","),
                        p.path.clone(),
                        p.rtt_ms.map_or("-".into(), |ms| format!("{ms:.1}ms")),
                        p.mbit_s.map_or("-".into(), |m| format!("{m:.0}Mbit/s")),
                    ]
                },
            )?;
        }
    }
    Ok(0)
}

/// Records the peer and prints its `wg-quick` config on stdout.
fn add_peer(data: &Path, name: String, public_key: Option<String>) -> Result<i32> {
    let made = public_key
        .is_none()
        .then(zlayer_overlay::PrivateKey::generate);
    let public_key = match (&made, public_key) {
        (Some(k), _) => k.public_base64(),
        (None, Some(k)) => k,
        (None, None) => unreachable!("a key is made when none is given"),
    };
    let ClusterReply::Peer(cfg) =
        super::cluster(data, ClusterRequest::PeerAdd { name, public_key })?
    else {
        anyhow::bail!("the node answered `overlay peer add` with something else");
    };
    println!("# zlayer peer {}; wg-quick config", cfg.name);
    println!("[Interface]");
    match &made {
        Some(k) => println!("PrivateKey = {}", k.to_base64()),
        None => println!("# PrivateKey = <the private key of the public key you gave>"),
    }
    println!("Address = {}", cfg.address);
    for n in &cfg.nodes {
        println!();
        println!("# node {}", n.name);
        println!("[Peer]");
        println!("PublicKey = {}", n.public_key);
        println!("Endpoint = {}", n.endpoint);
        println!("AllowedIPs = {}", n.subnet);
        println!("PersistentKeepalive = 25");
    }
    Ok(0)
}

//! Starting a node's parts in order and stopping them: the control plane
//! first (it founds, joins or resumes the cluster), then the agent on top
//! of it, the API on the unix socket, `/metrics` on TCP, and the API for
//! remote CLIs on the control plane's mTLS endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use zlayer_agent::{Agent, AgentConfig};
use zlayer_control::{Control, ControlConfig};

use crate::ControlPort;

pub struct NodeConfig {
    pub control: ControlConfig,
    /// The agent's settings; its `cluster` and `node_name` are filled in
    /// from the control plane.
    pub data_dir: PathBuf,
    pub exe: PathBuf,
    pub bridge: String,
    pub cidr: zlayer_net::Cidr,
    pub registries: zlayer_image::RegistryOptions,
    pub gpu_root: PathBuf,
    pub metrics_addr: Option<SocketAddr>,
    /// Host path prefixes specs may bind-mount.
    pub allow_host_paths: Vec<PathBuf>,
    /// How much of each replica's output is kept.
    pub log_limit: zlayer_runtime::LogLimit,
    /// Connections each published port forwards at once.
    pub port_max_connections: usize,
    /// UDP port of the WireGuard device.
    pub wg_port: u16,
    /// Which WireGuard device; `None` picks.
    pub wg_device: Option<zlayer_overlay::DeviceKind>,
    /// Threads of a userspace device (at least 1).
    pub wg_threads: usize,
    /// The ingress listeners and limits; `None` runs no ingress.
    pub ingress: Option<zlayer_proxy::ProxyConfig>,
    /// Where `tls: { acme: true }` certificates come from; the leader uses it.
    pub acme: Option<zlayer_acme::AcmeConfig>,
}

/// A node's parts, as the API reaches them.
pub struct Node {
    pub agent: Arc<Agent>,
    pub control: Arc<Control>,
    /// The mesh, where the cluster gave this node a subnet and a device
    /// could be made.
    pub overlay: Option<Arc<zlayer_overlay::Mesh>>,
}

/// Starts the ingress; a listener whose port is taken is left off with a
/// warning that says how to move it, and the node runs on.
async fn start_ingress(cfg: zlayer_proxy::ProxyConfig) -> Option<Arc<zlayer_proxy::Proxy>> {
    match zlayer_proxy::Proxy::start(cfg).await {
        Ok((proxy, refused)) => {
            for e in refused {
                tracing::warn!(
                    "{e}; that ingress listener is off (free the port, or pick another with --http-port / --https-port, 0 for none)"
                );
            }
            for (what, addr) in proxy.listening() {
                tracing::info!("ingress {what} on {addr}");
            }
            Some(Arc::new(proxy))
        }
        Err(e) => {
            tracing::warn!("ingress: {e}; running without it");
            None
        }
    }
}

/// Runs a node until `zlayer` asks it to shut down. Containers keep running.
pub async fn run(cfg: NodeConfig) -> Result<(), String> {
    crate::host::harden_data_dir(&cfg.data_dir)?;
    crate::host::raise_open_files();
    crate::host::protect_from_oom();
    // Behind NAT the cluster reaches this node only through the mesh, at
    // its control address in its own subnet: the device comes first.
    let early_mesh = match zlayer_control::ClusterFiles::new(&cfg.control.dir).nat_seed() {
        Some(seed) => {
            crate::overlay::start_behind_nat(
                &seed,
                &cfg.data_dir,
                cfg.wg_port,
                cfg.wg_device,
                cfg.wg_threads,
            )
            .await
        }
        None => None,
    };
    let control = Control::start(cfg.control)
        .await
        .map_err(|e| e.to_string())?;
    let subnet = match crate::overlay::own_subnet(&control).await {
        Ok(s) => s,
        Err(e) => {
            control.stop().await;
            return Err(e);
        }
    };
    let overlay = match (early_mesh, subnet) {
        (Some(mesh), _) => {
            crate::overlay::follow_cluster(control.clone(), mesh.clone(), cfg.wg_port);
            Some(mesh)
        }
        (None, Some(s)) => {
            crate::overlay::start(
                control.clone(),
                &cfg.data_dir,
                s,
                cfg.wg_port,
                cfg.wg_device,
                cfg.wg_threads,
            )
            .await
        }
        (None, None) => None,
    };
    let ingress = match cfg.ingress {
        Some(c) => start_ingress(c).await,
        None => None,
    };
    if let Some(proxy) = &ingress {
        crate::acme::follow_answers(control.clone(), proxy.clone());
    }
    if let Some(acme) = cfg.acme.clone() {
        crate::acme::manage(control.clone(), acme);
    }
    let agent = Agent::open(&AgentConfig {
        data_dir: cfg.data_dir.clone(),
        exe: cfg.exe,
        bridge: cfg.bridge,
        cidr: subnet.unwrap_or(cfg.cidr),
        cluster_cidr: crate::overlay::cluster_cidr(&control),
        registries: cfg.registries,
        gpu_root: cfg.gpu_root,
        cluster: Arc::new(ControlPort(control.clone())),
        node_name: control.name().to_string(),
        allow_host_paths: cfg.allow_host_paths.clone(),
        log_limit: cfg.log_limit,
        port_max_connections: cfg.port_max_connections,
        ingress,
    });
    let agent = match agent {
        Ok(a) => a,
        Err(e) => {
            control.stop().await;
            return Err(e);
        }
    };
    let node = Arc::new(Node {
        agent: agent.clone(),
        control: control.clone(),
        overlay,
    });
    let sock = cfg.data_dir.join("zlayer.sock");
    let api = {
        let (sock, node) = (sock.clone(), node.clone());
        tokio::spawn(async move {
            if let Err(e) = zlayer_api::serve(sock.clone(), node).await {
                tracing::error!("api on {}: {e}", sock.display());
            }
        })
    };
    if let Some(addr) = cfg.metrics_addr {
        // Metrics stay available on the unix socket when the TCP port is
        // taken (for example by a second node on the same host).
        if let Err(e) = zlayer_agent::metrics::serve_tcp(agent.clone(), addr).await {
            tracing::warn!("{e}; /metrics is still served on {}", sock.display());
        }
    }
    crate::remote::serve_api(&control, node);
    let recover = tokio::spawn(crate::recover::restart_after_storage_failure(
        control.clone(),
        cfg.data_dir.clone(),
    ));
    let ran = agent.run().await;
    recover.abort();
    api.abort();
    if let Err(e) = std::fs::remove_file(&sock) {
        tracing::debug!("removing {}: {e}", sock.display());
    }
    control.stop().await;
    ran
}

//! What reconcile asks of containers, behind one trait: start a replica,
//! signal and stop it, read its status, release what it held, and find
//! container directories no record names. [`ContainerLauncher`] does it for
//! real (images, netns, veth, the shim); tests put a recording fake in its
//! place, so reconcile runs without root.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use zlayer_image::ImageStore;
use zlayer_runtime::{ContainerDir, GpuInventory, Status};

use crate::replica::{self, NodePaths, ReplicaRequest};
use crate::template::Template;

/// One replica to start from its revision's template.
pub struct StartRequest {
    pub template: Arc<Template>,
    pub index: u32,
    pub ip: std::net::Ipv4Addr,
    /// The node's GPUs (by index) it holds.
    pub gpus: Vec<u32>,
    /// The values of the secrets its template uses.
    pub secrets: zlayer_runtime::secrets::SecretValues,
    /// Its read-only files: (path in the container, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// The host directory of each named volume it mounts, by name.
    pub volumes: std::collections::BTreeMap<String, std::path::PathBuf>,
}

pub trait Launcher: Send + Sync + 'static {
    /// Starts the replica's container and returns its id; on failure it has
    /// released everything it acquired.
    fn start(&self, req: StartRequest) -> BoxFuture<'_, Result<String, String>>;
    /// Sends `signal`, waits up to `grace`, then SIGKILL; returns once the
    /// container has exited.
    fn stop<'a>(&'a self, container_id: &'a str, signal: i32, grace: Duration)
        -> BoxFuture<'a, ()>;
    /// Sends one signal, without waiting.
    fn signal(&self, container_id: &str, signal: i32);
    fn status(&self, container_id: &str) -> Status;
    /// Releases everything the container held on this node; safe to repeat.
    fn cleanup<'a>(&'a self, container_id: &'a str) -> BoxFuture<'a, ()>;
    /// Containers on this node that no id in `recorded` names.
    fn unrecorded(&self, recorded: &HashSet<String>) -> Vec<String>;
    /// Whether the node holds `image` (a launcher without images needs none).
    fn has_image(&self, image: &str) -> bool {
        let _ = image;
        true
    }
    /// Pulls `image` onto the node.
    fn pull(
        &self,
        image: zlayer_spec::Image,
        registries: zlayer_image::RegistryOptions,
    ) -> BoxFuture<'_, Result<(), String>> {
        let _ = (image, registries);
        Box::pin(async { Ok(()) })
    }
}

/// Containers for real: images to snapshots, netns and veth, the shim.
pub struct ContainerLauncher {
    pub paths: NodePaths,
    pub images: ImageStore,
    pub gpus: GpuInventory,
}

impl Launcher for ContainerLauncher {
    fn has_image(&self, image: &str) -> bool {
        self.images.contains(image)
    }

    fn pull(
        &self,
        image: zlayer_spec::Image,
        registries: zlayer_image::RegistryOptions,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            crate::images::ensure_image(&self.images, &registries, &image)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn start(&self, req: StartRequest) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let t = &req.template;
            let search = format!("{}.zlayer", t.deployment);
            let started = replica::start(
                &self.paths,
                &self.images,
                &ReplicaRequest {
                    deployment: &t.deployment,
                    service: &t.service_name,
                    svc: &t.service,
                    index: req.index,
                    env: &t.env,
                    ip: req.ip,
                    dns_search: &search,
                    gpus: &req.gpus,
                    inventory: &self.gpus,
                    secrets: &req.secrets,
                    files: &req.files,
                    volumes: &req.volumes,
                },
            )
            .await?;
            Ok(started.container_id)
        })
    }

    fn stop<'a>(
        &'a self,
        container_id: &'a str,
        signal: i32,
        grace: Duration,
    ) -> BoxFuture<'a, ()> {
        Box::pin(replica::stop(&self.paths, container_id, signal, grace))
    }

    fn signal(&self, container_id: &str, signal: i32) {
        if let Err(e) = ContainerDir::new(&self.paths.data_dir, container_id).signal(signal) {
            tracing::debug!(container = container_id, "signal {signal}: {e}");
        }
    }

    fn status(&self, container_id: &str) -> Status {
        ContainerDir::new(&self.paths.data_dir, container_id).status()
    }

    fn cleanup<'a>(&'a self, container_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(replica::cleanup(&self.paths, &self.images, container_id))
    }

    fn unrecorded(&self, recorded: &HashSet<String>) -> Vec<String> {
        replica::unrecorded(&self.paths, recorded)
    }
}

//! The node's named volumes: the directory a starting replica mounts for
//! each (made here the first time, on the node the cluster claimed it
//! on), their use reported every [`TEND_MS`], and the data of a volume the
//! cluster removed deleted once no replica here mounts it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use zlayer_model::VolumeHold;
use zlayer_runtime::volume::VolumeClaim;
use zlayer_spec::StorageType;

use crate::agent::Agent;
use crate::state::{Replica, ReplicaState};
use crate::template::Template;

/// How often volumes are measured and removed ones deleted.
const TEND_MS: u64 = 15_000;

impl Agent {
    /// The host directory for each named volume `t` mounts, by name.
    pub(crate) async fn volume_mounts(
        &self,
        t: &Template,
    ) -> Result<BTreeMap<String, PathBuf>, String> {
        let mut out = BTreeMap::new();
        for s in t
            .service
            .storage
            .iter()
            .filter(|s| s.kind == StorageType::Named)
        {
            let Some(name) = s.name.clone() else { continue };
            let id = match self.cluster.volume_hold(&t.deployment, &name) {
                VolumeHold::Here { id } => id,
                VolumeHold::Elsewhere { node } => {
                    return Err(format!(
                        "volume {}/{name} is held by node {node}; its users run there",
                        t.deployment
                    ))
                }
                VolumeHold::Unclaimed => {
                    return Err(format!(
                        "volume {}/{name} is not claimed by the cluster yet",
                        t.deployment
                    ))
                }
            };
            let volumes = self.volumes.clone();
            let deployment = t.deployment.clone();
            let size_bytes = s.size.map(|b| b.0);
            let path = tokio::task::spawn_blocking(move || {
                volumes.ensure(&VolumeClaim {
                    deployment: &deployment,
                    name: &name,
                    id,
                    size_bytes,
                })
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            out.insert(s.name.clone().unwrap_or_default(), path);
        }
        Ok(out)
    }

    /// Every [`TEND_MS`]: deletes the volumes the cluster removed that no
    /// running replica here mounts, and reports the others' use.
    pub(crate) async fn tend_volumes(&self, replicas: &BTreeMap<String, Replica>) {
        let now = crate::clock::now_ms();
        let last = self.volumes_tended_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < TEND_MS {
            return;
        }
        self.volumes_tended_ms.store(now, Ordering::Relaxed);
        let mounted: Vec<String> = replicas
            .values()
            .filter(|r| r.state == ReplicaState::Running)
            .filter_map(|r| self.template_of(r))
            .flat_map(|t| {
                t.service
                    .storage
                    .iter()
                    .filter(|s| s.kind == StorageType::Named)
                    .filter_map(|s| Some(format!("{}/{}", t.deployment, s.name.as_ref()?)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let volumes = self.volumes.clone();
        let cluster = self.cluster.clone();
        let usage = tokio::task::spawn_blocking(move || {
            let mut usage = Vec::new();
            for (volume, id) in volumes.held() {
                if cluster.volume_removed(&volume, id) && !mounted.contains(&volume) {
                    let (deployment, name) = volume.split_once('/').unwrap_or_default();
                    match volumes.remove(deployment, name) {
                        Ok(()) => tracing::info!(
                            "volume {volume}: removed from the cluster; its data is deleted"
                        ),
                        Err(e) => tracing::warn!("{e}"),
                    }
                    continue;
                }
                usage.extend(volumes.usage(&volume, id));
            }
            usage
        })
        .await
        .unwrap_or_default();
        self.cluster.report_volumes(usage);
    }
}

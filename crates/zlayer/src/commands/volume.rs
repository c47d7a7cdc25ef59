//! `zlayer volume`: the cluster's named volumes, one, and removal.

use std::path::Path;

use anyhow::{bail, Result};
use zlayer_api::{ClusterReply, ClusterRequest, VolumeView};

use crate::cli::VolumeCommand;
use crate::output::render;

pub fn volume(data: &Path, command: VolumeCommand) -> Result<i32> {
    match command {
        VolumeCommand::Ls { output } => {
            let rows = volumes(data)?;
            render(
                output,
                &rows,
                &["VOLUME", "NODE", "SIZE", "USED", "IN USE BY"],
                |v| {
                    vec![
                        v.volume.clone(),
                        v.node.clone(),
                        v.size_bytes.map_or("-".into(), mib),
                        v.used_bytes.map_or("?".into(), mib),
                        v.in_use_by.join(" "),
                    ]
                },
            )?;
        }
        VolumeCommand::Inspect { volume } => {
            let Some(v) = volumes(data)?.into_iter().find(|v| v.volume == volume) else {
                bail!(
                    "no volume `{volume}` (name it DEPLOYMENT/NAME, as `zlayer volume ls` shows)"
                );
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        VolumeCommand::Rm { volume } => {
            super::cluster(data, ClusterRequest::VolumeRemove(volume.clone()))?;
            println!("volume {volume} removed; its node deletes the data");
        }
    }
    Ok(0)
}

fn volumes(data: &Path) -> Result<Vec<VolumeView>> {
    let ClusterReply::Volumes(rows) = super::cluster(data, ClusterRequest::Volumes)? else {
        bail!("the node answered `volume ls` with something else");
    };
    Ok(rows)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}Mi", bytes as f64 / (1024.0 * 1024.0))
}

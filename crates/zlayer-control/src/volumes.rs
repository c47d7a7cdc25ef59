//! `zlayer volume`: the cluster's named volumes with where each lives and
//! what its node last reported, and removal (refused while in use; the
//! holding node deletes the data on the tombstone).

use zlayer_model::VolumeUsage;
use zlayer_state::volumes::{VolumeRecord, VolumesState};
use zlayer_state::Command;

use crate::views::done;
use crate::{Control, ControlError};

/// A volume as `volume ls` and `inspect` show it.
pub struct VolumeSummary {
    pub record: VolumeRecord,
    /// What the holding node last reported for this claim.
    pub usage: Option<VolumeUsage>,
    /// Users with a replica placed now.
    pub in_use_by: Vec<String>,
}

impl Control {
    pub fn volumes(&self) -> Vec<VolumeSummary> {
        self.read(|s| {
            s.volumes
                .records
                .values()
                .map(|r| VolumeSummary {
                    usage: VolumesState::usage_of(r, s.nodes.values()),
                    in_use_by: r
                        .users
                        .iter()
                        .filter(|u| s.assignments.values().any(|a| a.workload == **u))
                        .cloned()
                        .collect(),
                    record: r.clone(),
                })
                .collect()
        })
    }

    /// Removes volume `deployment/name` while no replica uses it; its node
    /// then deletes the data.
    pub async fn remove_volume(&self, volume: &str) -> Result<(), ControlError> {
        let Some(id) = self.read(|s| s.volumes.records.get(volume).map(|r| r.id)) else {
            return Err(ControlError::Refused(format!(
                "no volume `{volume}` (name it DEPLOYMENT/NAME, as `zlayer volume ls` shows)"
            )));
        };
        done(
            self.write(Command::RemoveVolume {
                volume: volume.to_string(),
                id,
            })
            .await?,
        )
    }

    /// Whether claim `id` of `volume` was removed (its data may go).
    pub fn volume_removed(&self, volume: &str, id: u64) -> bool {
        self.read(|s| s.volumes.is_removed(volume, id))
    }
}

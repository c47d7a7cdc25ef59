//! `zlayer config`: new values committed, the list, and removal refused
//! while a spec mounts the config.

use zlayer_state::configs::{consumers, put_command, ConfigRecord};
use zlayer_state::Command;

use crate::views::done;
use crate::{Control, ControlError};

/// A config as `config ls` shows it.
pub struct ConfigSummary {
    pub name: String,
    pub record: ConfigRecord,
    pub consumers: Vec<String>,
}

impl Control {
    /// Gives `name` a new value and returns its version. Services that
    /// mount it roll out with it.
    pub async fn put_config(&self, name: &str, value: &[u8]) -> Result<u64, ControlError> {
        let now = zlayer_state::now_ms();
        let cmd = self
            .read(|s| put_command(&s.configs, name, value, now))
            .map_err(ControlError::Refused)?;
        done(self.write(Command::PutConfig(cmd)).await?)?;
        Ok(self.read(|s| s.configs.get(name).map_or(0, |c| c.version)))
    }

    pub fn configs(&self) -> Vec<ConfigSummary> {
        self.read(|s| {
            s.configs
                .iter()
                .map(|(name, record)| ConfigSummary {
                    name: name.clone(),
                    record: record.clone(),
                    consumers: consumers(s, name),
                })
                .collect()
        })
    }

    /// Removes a config no current spec mounts.
    pub async fn remove_config(&self, name: &str) -> Result<(), ControlError> {
        let users = self.read(|s| consumers(s, name));
        if !users.is_empty() {
            return Err(ControlError::Refused(format!(
                "config `{name}` is in use by {}; take it out of their specs (or `zlayer down` them) first",
                users.join(", ")
            )));
        }
        done(
            self.write(Command::RemoveConfig {
                name: name.to_string(),
            })
            .await?,
        )
    }
}

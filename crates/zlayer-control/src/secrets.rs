//! `zlayer secret`: new values sealed on this voter and committed, the list
//! (names, versions, consumers; never values), removal refused while a
//! spec uses the secret, and rotation of the key that seals them.

use zlayer_state::secrets::{consumers, SecretRecord};
use zlayer_state::Command;

use crate::views::done;
use crate::{Control, ControlError};

/// A secret as `secret ls` shows it.
pub struct SecretSummary {
    pub name: String,
    pub record: SecretRecord,
    /// `deployment/service` of each service whose current spec uses it.
    pub consumers: Vec<String>,
}

impl Control {
    /// Gives `name` a new value (its first, or its next version) and
    /// returns the version. Services that use it roll out with it.
    pub async fn put_secret(&self, name: &str, value: &[u8]) -> Result<u64, ControlError> {
        let cmd = self
            .member
            .seal_secret(name, value)
            .map_err(ControlError::Refused)?;
        done(self.write(cmd).await?)?;
        Ok(self.read(|s| s.secrets.secrets.get(name).map_or(0, |r| r.version)))
    }

    pub fn secrets(&self) -> Vec<SecretSummary> {
        self.read(|s| {
            s.secrets
                .secrets
                .iter()
                .map(|(name, record)| SecretSummary {
                    name: name.clone(),
                    record: record.clone(),
                    consumers: consumers(s, name),
                })
                .collect()
        })
    }

    /// Removes a secret no current spec uses.
    pub async fn remove_secret(&self, name: &str) -> Result<(), ControlError> {
        let users = self.read(|s| consumers(s, name));
        if !users.is_empty() {
            return Err(ControlError::Refused(format!(
                "secret `{name}` is in use by {}; take it out of their specs (or `zlayer down` them) first",
                users.join(", ")
            )));
        }
        done(
            self.write(Command::RemoveSecret {
                name: name.to_string(),
            })
            .await?,
        )
    }

    /// A new data key for the secrets, every value resealed under it; the
    /// values themselves do not change, so nothing rolls.
    pub async fn rotate_secrets_key(&self) -> Result<(), ControlError> {
        let cmd = self
            .member
            .seal_secrets_rotation()
            .map_err(ControlError::Refused)?;
        done(self.write(cmd).await?)
    }
}

//! `zlayer secret` and `zlayer config`: values go to the node
//! base64-encoded in one request; a secret's is never printed. `ls` shows
//! names, versions and consumers.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine;
use zlayer_api::{ClusterReply, ClusterRequest, SecretValue};

use crate::cli::{ConfigCommand, SecretCommand};
use crate::output::render;

pub fn secret(
    data: &Path,
    registries: &zlayer_image::RegistryOptions,
    command: SecretCommand,
) -> Result<i32> {
    match command {
        SecretCommand::Create {
            name,
            from_file,
            from_literal,
            stdin,
        } => {
            let value = match (from_file, from_literal, stdin) {
                (Some(f), None, None) => {
                    std::fs::read(&f).with_context(|| format!("{}", f.display()))?
                }
                (None, Some(v), None) => v.into_bytes(),
                (None, None, Some(_)) => {
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf).context("reading stdin")?;
                    buf
                }
                _ => bail!("give the value with one of --from-file FILE, --from-literal VALUE or `-` (stdin)"),
            };
            ensure_local_node(data, registries)?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            let req = ClusterRequest::SecretCreate {
                name: name.clone(),
                value: SecretValue(encoded),
            };
            let ClusterReply::Revision(version) = super::cluster(data, req)? else {
                bail!("the node answered `secret create` with something else");
            };
            println!("secret {name}: version {version}");
        }
        SecretCommand::Ls { output } => {
            let ClusterReply::Secrets(rows) = super::cluster(data, ClusterRequest::Secrets)? else {
                bail!("the node answered `secret ls` with something else");
            };
            render_stored(output, &rows)?;
        }
        SecretCommand::Rm { name } => {
            super::cluster(data, ClusterRequest::SecretRemove(name.clone()))?;
            println!("secret {name} removed");
        }
        SecretCommand::RotateKey => {
            super::cluster(data, ClusterRequest::SecretsRotateKey)?;
            println!("every secret is sealed under a new key");
        }
    }
    Ok(0)
}

/// As `up` does: on a fresh machine the first command starts the node.
fn ensure_local_node(data: &Path, registries: &zlayer_image::RegistryOptions) -> Result<()> {
    if !super::client(data).is_remote() {
        super::node::ensure_node(data, registries)?;
    }
    Ok(())
}

pub fn config(
    data: &Path,
    registries: &zlayer_image::RegistryOptions,
    command: ConfigCommand,
) -> Result<i32> {
    match command {
        ConfigCommand::Create { name, from_file } => {
            let value =
                std::fs::read(&from_file).with_context(|| format!("{}", from_file.display()))?;
            ensure_local_node(data, registries)?;
            let req = ClusterRequest::ConfigCreate {
                name: name.clone(),
                data: base64::engine::general_purpose::STANDARD.encode(value),
            };
            let ClusterReply::Revision(version) = super::cluster(data, req)? else {
                bail!("the node answered `config create` with something else");
            };
            println!("config {name}: version {version}");
        }
        ConfigCommand::Ls { output } => {
            let ClusterReply::Configs(rows) = super::cluster(data, ClusterRequest::Configs)? else {
                bail!("the node answered `config ls` with something else");
            };
            render_stored(output, &rows)?;
        }
        ConfigCommand::Rm { name } => {
            super::cluster(data, ClusterRequest::ConfigRemove(name.clone()))?;
            println!("config {name} removed");
        }
    }
    Ok(0)
}

/// `secret ls` and `config ls`: the same columns, never a value.
fn render_stored(output: crate::cli::Format, rows: &[zlayer_api::StoredView]) -> Result<()> {
    let now = zlayer_state::now_ms();
    render(
        output,
        rows,
        &["NAME", "VERSION", "BYTES", "UPDATED", "CONSUMERS"],
        |s| {
            vec![
                s.name.clone(),
                s.version.to_string(),
                s.bytes.to_string(),
                format!(
                    "{} ago",
                    super::deploy::age(now.saturating_sub(s.updated_ms) / 1000)
                ),
                s.consumers.join(" "),
            ]
        },
    )
}

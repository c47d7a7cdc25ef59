//! `zlayer token …` and `zlayer join`: the cluster's tokens, and joining a
//! node to a cluster with one.

use std::path::Path;

use anyhow::Result;
use zlayer_api::{ClusterReply, ClusterRequest, TokenView};

use crate::cli::{AgentArgs, CaCommand, MemberArgs, TokenCommand};
use crate::output::render;

pub fn ca(data: &Path, cmd: CaCommand) -> Result<i32> {
    match cmd {
        CaCommand::Export => match super::cluster(data, ClusterRequest::IngressCa)? {
            ClusterReply::Pem(pem) => {
                crate::output::emit(&pem)?;
                Ok(0)
            }
            other => anyhow::bail!("unexpected answer: {other:?}"),
        },
    }
}

pub fn token(data: &Path, cmd: TokenCommand) -> Result<i32> {
    match cmd {
        TokenCommand::Create {
            ttl,
            uses,
            role,
            api,
        } => {
            let req = ClusterRequest::TokenCreate {
                ttl_secs: ttl.as_secs().max(1),
                uses: (uses > 0 && !api).then_some(uses),
                api,
                role: Some(match role {
                    crate::cli::RoleArg::Manager => zlayer_model::ClusterRole::Manager,
                    crate::cli::RoleArg::Worker => zlayer_model::ClusterRole::Worker,
                }),
            };
            match super::cluster(data, req)? {
                ClusterReply::Token(t) => println!("{t}"),
                other => anyhow::bail!("unexpected answer: {other:?}"),
            }
            Ok(0)
        }
        TokenCommand::Ls { output } => {
            let ClusterReply::Tokens(tokens) = super::cluster(data, ClusterRequest::Tokens)? else {
                anyhow::bail!("the node answered `token ls` with something else");
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            render(
                output,
                &tokens,
                &["ID", "KIND", "STATUS", "EXPIRES IN", "USED"],
                |t: &TokenView| {
                    vec![
                        t.id.clone(),
                        t.kind.clone(),
                        t.status.clone(),
                        humantime::format_duration(std::time::Duration::from_secs(
                            t.expires_ms.saturating_sub(now) / 1000,
                        ))
                        .to_string(),
                        match t.uses {
                            Some(u) => format!("{}/{u}", t.used),
                            None => t.used.to_string(),
                        },
                    ]
                },
            )?;
            Ok(0)
        }
        TokenCommand::Revoke { id } => {
            super::cluster(data, ClusterRequest::TokenRevoke(id.clone()))?;
            println!("token {id} revoked");
            Ok(0)
        }
    }
}

/// Joins with the token, records the identity, then runs the node in the
/// background like `zlayer up` does.
pub fn join(
    data: &Path,
    gpu_root: &Path,
    registries: &zlayer_image::RegistryOptions,
    addr: &str,
    token: &str,
    agent: AgentArgs,
    member: MemberArgs,
) -> Result<i32> {
    let cfg = super::node::control_config(data, gpu_root, &member);
    // The key is made before joining so a node behind NAT is recorded with
    // it; the node start that follows loads the same file.
    std::fs::create_dir_all(&cfg.dir)
        .and_then(|()| {
            std::fs::set_permissions(
                &cfg.dir,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot make {} (mode 0700) for this node's keys: {e}; check --data-dir",
                cfg.dir.display()
            )
        })?;
    let wg_key = zlayer_overlay::load_or_create_key(&cfg.dir.join("wg.key"))
        .map(|k| k.public_base64())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let joined = super::block_on(zlayer_control::Control::join(
        &cfg,
        token,
        Some(addr.to_string()),
        Some(wg_key),
    ));
    let node = match joined {
        Ok(n) => n,
        Err(e) => {
            eprintln!("join refused: {e}");
            return Ok(2);
        }
    };
    let mut args = vec![
        "--metrics-addr".to_string(),
        agent.metrics_addr,
        "--cidr".into(),
        agent.cidr,
        "--bridge".into(),
        agent.bridge,
        "--down-after".into(),
        humantime::format_duration(member.down_after).to_string(),
        "--cert-renew-before".into(),
        humantime::format_duration(member.cert_renew_before).to_string(),
        "--advertise".into(),
        member.advertise.to_string(),
        "--port".into(),
        member.port.to_string(),
        "--name".into(),
        node.name.clone(),
        "--placement".into(),
        clap::ValueEnum::to_possible_value(&member.placement)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default(),
    ];
    args.extend([
        "--log-max-size".into(),
        agent.log_max_size.to_string(),
        "--log-max-files".into(),
        agent.log_max_files.to_string(),
        "--port-max-connections".into(),
        agent.port_max_connections.to_string(),
        "--wg-port".into(),
        member.wg_port.to_string(),
        "--wg-device".into(),
        clap::ValueEnum::to_possible_value(&member.wg_device)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default(),
        "--link-probe-every".into(),
        humantime::format_duration(member.link_probe_every).to_string(),
        "--wg-threads".into(),
        member.wg_threads.to_string(),
    ]);
    for p in &agent.allow_host_paths {
        args.push("--allow-host-path".into());
        args.push(p.display().to_string());
    }
    args.extend(agent.ingress.to_args());
    super::node::spawn_node(data, registries, &args)?;
    println!(
        "joined as node {} ({}), id {:016x}",
        node.name, node.addr, node.id
    );
    Ok(0)
}

//! One module per command; each parses nothing and decides nothing, it calls
//! a library entry point and formats the answer.

mod build;
mod cluster;
mod deploy;
mod exec;
mod image;
mod job;
mod logs;
mod node;
mod overlay;
mod progress;
mod run;
mod secret;
mod spec;
mod volume;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// The remote node (`--api-token`), when the CLI does not use the local socket.
static REMOTE: std::sync::OnceLock<(String, Option<String>)> = std::sync::OnceLock::new();

pub fn dispatch(cli: Cli) -> Result<i32> {
    let data = cli.data_dir.clone();
    if let Some(token) = cli.api_token.clone() {
        // Checked now, so a damaged token is reported before anything else.
        zlayer_node::remote_client(&token, cli.remote.as_deref())?;
        let _ = REMOTE.set((token, cli.remote.clone()));
        let remote_ok = match &cli.command {
            Command::Up { detach, .. } => *detach,
            Command::Node { command } => !matches!(
                command,
                crate::cli::NodeCommand::Start { .. } | crate::cli::NodeCommand::Stop
            ),
            Command::Down { .. }
            | Command::Ps { .. }
            | Command::Events { .. }
            | Command::Rollouts { .. }
            | Command::Scale { .. }
            | Command::Rollout { .. }
            | Command::Secret { .. }
            | Command::Config { .. }
            | Command::Volume { .. }
            | Command::Job { .. }
            | Command::Restart { .. }
            | Command::Token { .. }
            | Command::Ca { .. }
            | Command::Overlay { .. }
            | Command::Validate { .. }
            | Command::Spec { .. }
            | Command::Logs(_) => true,
            Command::Exec { id, .. } => id.is_none(),
            _ => false,
        };
        if !remote_ok {
            anyhow::bail!(
                "this command works on the node's own files (or runs in the foreground); run it on \
                 the node. With --api-token the CLI covers up -d, down, ps, events, rollouts, scale, \
                 node, token, logs and exec SERVICE/N"
            );
        }
    }
    let registries = zlayer_image::RegistryOptions {
        insecure: cli.insecure_registries,
        auth_file: None,
        credentials: None,
    };
    match cli.command {
        Command::Validate { file } => spec::validate(&file),
        Command::Spec { command } => spec::spec(command),
        Command::Image { command } => image::image(&data, &registries, command),
        Command::Build(args) => build::build(&data, args),
        Command::Pull(args) => image::pull(&data, &registries, args),
        Command::Push(args) => image::push(&data, &registries, args),
        Command::Login {
            registry,
            username,
            password_stdin,
            password,
        } => image::login(&registries, &registry, &username, password_stdin, password),
        Command::Logout { registry } => image::logout(&registry),
        Command::Run(args) => {
            image::pull_if_absent(&data, &registries, &args.image)?;
            run::run(&data, &cli.gpu_root, args)
        }
        Command::Shim {
            dir, wait: None, ..
        } => zlayer_runtime::shim_main(&dir, &data),
        Command::Shim {
            dir,
            wait: Some(pid),
            log_fd,
        } => zlayer_runtime::shim_wait(&dir, &data, pid, log_fd),
        Command::Exec {
            target,
            id,
            command,
        } => exec::exec(&data, target, id, command),
        Command::Node { command } => node::node(&data, &cli.gpu_root, &registries, command),
        Command::Scale { service, replicas } => {
            cluster(
                &data,
                zlayer_api::ClusterRequest::Scale {
                    service: service.clone(),
                    replicas,
                },
            )?;
            println!("{service} scaled to {replicas}");
            Ok(0)
        }
        Command::Rollout { command } => deploy::rollout(&data, command),
        Command::Secret { command } => secret::secret(&data, &registries, command),
        Command::Config { command } => secret::config(&data, &registries, command),
        Command::Volume { command } => volume::volume(&data, command),
        Command::Job { command } => job::job(&data, &registries, command),
        Command::Restart { service } => {
            cluster(&data, zlayer_api::ClusterRequest::Restart(service.clone()))?;
            println!("{service} restarting (`zlayer rollouts` follows it)");
            Ok(0)
        }
        Command::Token { command } => cluster::token(&data, command),
        Command::Ca { command } => cluster::ca(&data, command),
        Command::Overlay { command } => overlay::overlay(&data, command),
        Command::Join {
            addr,
            token,
            agent,
            member,
        } => cluster::join(
            &data,
            &cli.gpu_root,
            &registries,
            &addr,
            &token,
            agent,
            member,
        ),
        Command::Up {
            file,
            detach,
            timeout,
        } => deploy::up(&data, &registries, &file, detach, timeout),
        Command::Down { deployment } => deploy::down(&data, &deployment),
        Command::Ps { output } => deploy::ps(&data, output),
        Command::Events { output, follow } => deploy::events(&data, output, follow),
        Command::Rollouts { output } => deploy::rollouts(&data, output),
        Command::Logs(args) => logs::logs(&data, &args),
    }
}

/// A single-threaded runtime for talking to the node: no worker threads, so
/// the process may still fork for libcontainer afterwards.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The node the CLI talks to: a remote one with `--api-token`, else the
/// local node's unix socket.
pub(crate) fn client(data: &std::path::Path) -> zlayer_api::Client {
    match REMOTE.get() {
        Some((token, addr)) => zlayer_node::remote_client(token, addr.as_deref())
            .unwrap_or_else(|_| local_client(data)),
        None => local_client(data),
    }
}

pub(crate) fn local_client(data: &std::path::Path) -> zlayer_api::Client {
    zlayer_api::Client::new(data.join("zlayer.sock"))
}

/// Sends a cluster request to the local node.
pub(crate) fn cluster(
    data: &std::path::Path,
    req: zlayer_api::ClusterRequest,
) -> Result<zlayer_api::ClusterReply> {
    Ok(block_on(client(data).cluster(&req))?)
}

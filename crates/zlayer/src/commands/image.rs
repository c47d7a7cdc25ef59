//! `zlayer image …`, `pull`, `push`, `login` and `logout`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{bail, Context, Result};
use zlayer_image::{ImageStore, RegistryOptions};

use super::progress::reporter;
use crate::cli::{Format, ImageCommand, PullArgs, PushArgs};
use crate::output::render;

pub fn image(data: &Path, registries: &RegistryOptions, cmd: ImageCommand) -> Result<i32> {
    let store = ImageStore::open(data.join("images"))?;
    match cmd {
        ImageCommand::Import { file } => {
            for name in store.import(&file)? {
                println!("imported {name}");
            }
        }
        ImageCommand::Ls { output } => {
            let rows = store.list()?;
            render(
                output,
                &rows,
                &["NAME", "DIGEST", "LAYERS", "SIZE", "CONTAINERS"],
                |i| {
                    vec![
                        i.name.clone(),
                        i.digest.chars().take(19).collect(),
                        i.layers.to_string(),
                        format!("{:.1}MB", i.size as f64 / 1e6),
                        i.containers.to_string(),
                    ]
                },
            )?;
        }
        ImageCommand::Rm { name } => println!("removed {}", store.remove(&name)?),
        ImageCommand::Inspect { name, output } => {
            let inspected = store.inspect(&name)?;
            let format = match output {
                Format::Table => Format::Json,
                f => f,
            };
            crate::output::print_value(format, &inspected)?;
        }
        ImageCommand::Pull(args) => return pull(data, registries, args),
        ImageCommand::Push(args) => return push(data, registries, args),
        ImageCommand::Save { images, output } => {
            for name in store.save(&images, &output)? {
                println!("saved {name}");
            }
            println!("wrote {}", output.display());
        }
        ImageCommand::Prune { all, output } => {
            let r = store.prune(all)?;
            match output {
                Format::Table => {
                    for n in &r.untagged {
                        println!("untagged {n}");
                    }
                    println!(
                        "removed {} blobs and {} layers, {:.1} MB freed",
                        r.blobs,
                        r.layers,
                        r.bytes as f64 / 1e6
                    );
                }
                f => crate::output::print_value(f, &r)?,
            }
        }
    }
    Ok(0)
}

pub fn pull(data: &Path, registries: &RegistryOptions, args: PullArgs) -> Result<i32> {
    let store = ImageStore::open(data.join("images"))?;
    let progress = reporter(args.quiet || !matches!(args.output, Format::Table));
    let pulled = super::block_on(store.pull(&args.reference, registries, progress))?;
    match args.output {
        Format::Table => {
            let from = pulled
                .index_digest
                .as_ref()
                .map(|i| format!(", {} from index {i}", pulled.platform))
                .unwrap_or_default();
            println!(
                "pulled {} ({}{from}); {} layers, {} already stored",
                pulled.name, pulled.digest, pulled.layers, pulled.cached_layers
            );
        }
        f => crate::output::print_value(f, &pulled)?,
    }
    Ok(0)
}

pub fn push(data: &Path, registries: &RegistryOptions, args: PushArgs) -> Result<i32> {
    let store = ImageStore::open(data.join("images"))?;
    let pushed = super::block_on(store.push(
        &args.image,
        args.destination.as_deref(),
        registries,
        reporter(args.quiet),
    ))?;
    println!(
        "pushed {} ({}); {} blobs, {} already in the registry",
        pushed.destination, pushed.digest, pushed.blobs, pushed.skipped
    );
    Ok(0)
}

pub fn login(
    registries: &RegistryOptions,
    registry: &str,
    username: &str,
    password_stdin: bool,
    password: Option<String>,
) -> Result<i32> {
    let password = match (password, password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
        (None, false) if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(format!("password for {username}@{registry}: "))?
        }
        (None, false) => bail!("no password: pass --password-stdin and pipe it in"),
        (Some(_), true) => bail!("give the password either with -p or on stdin, not both"),
    };
    super::block_on(zlayer_image::check_login(
        registry, username, &password, registries,
    ))?;
    let file = zlayer_image::default_auth_file();
    zlayer_image::store_credentials(&file, registry, username, &password)
        .with_context(|| format!("saving credentials to {}", file.display()))?;
    println!(
        "login succeeded; credentials for {registry} stored in {}",
        file.display()
    );
    Ok(0)
}

pub fn logout(registry: &str) -> Result<i32> {
    let file = zlayer_image::default_auth_file();
    if zlayer_image::remove_credentials(&file, registry)? {
        println!(
            "removed the credentials for {registry} from {}",
            file.display()
        );
    } else {
        println!("no credentials for {registry} in {}", file.display());
    }
    Ok(0)
}

/// `zlayer run IMG` pulls IMG first when the store lacks it, as `docker run` does.
pub fn pull_if_absent(data: &Path, registries: &RegistryOptions, image: &str) -> Result<()> {
    let store = ImageStore::open(data.join("images"))?;
    if store.contains(image) {
        return Ok(());
    }
    eprintln!("{image} is not in the local store; pulling it");
    super::block_on(store.pull(image, registries, reporter(false)))?;
    Ok(())
}

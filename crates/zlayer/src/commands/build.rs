//! `zlayer build`: a Dockerfile to an image in the node's store.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use zlayer_build::{BuildOptions, Network};

use crate::cli::{BuildArgs, BuildNetwork};

/// `zlayer build`: runs in this process (RUN steps fork containers, so no
/// async runtime is started) and needs no node.
pub fn build(data: &Path, args: BuildArgs) -> Result<i32> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match std::env::var(a) {
                Ok(v) => (a.clone(), v),
                Err(_) => continue,
            },
        };
        if k.is_empty() {
            bail!(zlayer_build::BuildError::BuildArg(a.clone()));
        }
        build_args.insert(k, v);
    }
    let options = BuildOptions {
        dockerfile: args.file.clone().unwrap_or_default(),
        context: args.context.clone(),
        tags: args.tags.clone(),
        build_args,
        no_cache: args.no_cache,
        network: match args.network {
            BuildNetwork::Host => Network::Host,
            BuildNetwork::None => Network::None,
        },
        quiet: args.quiet,
    };
    let reads_stdin = args.file.as_deref() == Some(Path::new("-"));
    if !reads_stdin {
        detach_stdin()?;
    }
    let built = if args.quiet {
        zlayer_build::build(data, options, &mut std::io::sink())?
    } else {
        zlayer_build::build(data, options, &mut std::io::stdout())?
    };
    if args.quiet {
        println!("{}", built.digest);
    }
    Ok(0)
}

/// RUN commands inherit stdio; like `docker build`, they get no stdin.
fn detach_stdin() -> Result<()> {
    let null = std::fs::File::open("/dev/null").context("/dev/null")?;
    nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0).context("redirecting stdin")?;
    Ok(())
}

//! One module per command; each parses nothing and decides nothing, it calls
//! a library entry point and formats the answer.

mod image;
mod run;
mod spec;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> Result<i32> {
    let data = cli.data_dir;
    match cli.command {
        Command::Validate { file } => spec::validate(&file),
        Command::Spec { command } => spec::spec(command),
        Command::Image { command } => image::image(&data, command),
        Command::Run {
            image,
            env,
            memory,
            cpus,
            user,
            command,
            rm: _,
        } => run::run(&data, &image, env, memory, cpus, user, command),
        Command::Shim { dir } => zlayer_runtime::shim_main(&dir, &data),
        _ => anyhow::bail!("this command needs the node, which is not built yet"),
    }
}

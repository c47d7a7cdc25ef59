//! `zlayer validate` and `zlayer spec schema`.

use std::path::Path;

use anyhow::Result;

use crate::cli::SpecCommand;

pub fn validate(file: &Path) -> Result<i32> {
    match zlayer_spec::load_file(file) {
        Ok(spec) => {
            let replicas: u32 = spec
                .services
                .values()
                .map(|s| s.scale.initial_replicas())
                .sum();
            println!(
                "{}: valid (deployment `{}`, {} services, {replicas} replicas)",
                file.display(),
                spec.deployment,
                spec.services.len()
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(2)
        }
    }
}

pub fn spec(cmd: SpecCommand) -> Result<i32> {
    match cmd {
        SpecCommand::Schema => println!("{}", zlayer_spec::json_schema()),
    }
    Ok(0)
}

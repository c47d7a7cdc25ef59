//! `zlayer validate` and `zlayer spec schema`.

use std::path::Path;

use anyhow::Result;

use crate::cli::SpecCommand;

pub fn validate(file: &Path) -> Result<i32> {
    match zlayer_spec::load_file(file) {
        Ok(spec) => {
            print_warnings(&file.display().to_string(), &spec);
            let replicas: u32 = spec.services.values().map(|s| s.replica_count()).sum();
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

/// `FILE:LINE:COL: path: warning: ...` on stderr for what passes but looks wrong.
pub fn print_warnings(file: &str, spec: &zlayer_spec::Spec) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    for (path, why) in zlayer_spec::warnings(spec) {
        let (line, col) = zlayer_spec::position(&text, &path);
        eprintln!("{file}:{line}:{col}: {path}: warning: {why}");
    }
}

pub fn spec(cmd: SpecCommand) -> Result<i32> {
    match cmd {
        SpecCommand::Schema => println!("{}", zlayer_spec::json_schema()),
    }
    Ok(0)
}

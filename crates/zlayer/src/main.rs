//! The `zlayer` binary: command-line parsing, output formatting, and wiring
//! the library crates into a node. Each command lives in `commands/` and
//! calls one library entry point; no orchestration logic lives here.

mod cli;
mod commands;
mod output;

use clap::Parser;

fn main() {
    shim_wait_fast_path();
    let cli = cli::Cli::parse();
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// `zlayer shim DIR --data-dir D --wait PID` is written only by the shim
/// itself and lives as long as its container: it skips clap so that the
/// waiting process touches as little of the binary as possible (memory per
/// container is a promised figure, see docs/benchmarks.md).
fn shim_wait_fast_path() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let [_, shim, dir, data_flag, data, wait_flag, pid] = args.as_slice() {
        if shim == "shim" && data_flag == "--data-dir" && wait_flag == "--wait" {
            if let Some(pid) = pid.to_str().and_then(|p| p.parse().ok()) {
                zlayer_runtime::shim_wait(
                    std::path::Path::new(dir),
                    std::path::Path::new(data),
                    pid,
                );
            }
        }
    }
}

//! The `zlayer` binary: command-line parsing, output formatting, and wiring
//! the library crates into a node. Each command lives in `commands/` and
//! calls one library entry point; no orchestration logic lives here.

mod cli;
mod commands;
mod output;

use clap::Parser;

fn main() {
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

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
            eprintln!("error: {}", error_text(&e));
            1
        }
    };
    std::process::exit(code);
}

/// `zlayer shim DIR --data-dir D --wait PID --log-fd FD` is written only by the shim
/// itself and lives as long as its container: it skips clap so that the
/// waiting process touches as little of the binary as possible (memory per
/// container is a promised figure, see docs/benchmarks.md).
fn shim_wait_fast_path() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let number = |s: &std::ffi::OsString| s.to_str().and_then(|p| p.parse().ok());
    if let [_, shim, dir, data_flag, data, wait_flag, pid, log_flag, fd] = args.as_slice() {
        if shim == "shim"
            && data_flag == "--data-dir"
            && wait_flag == "--wait"
            && log_flag == "--log-fd"
        {
            if let (Some(pid), Some(fd)) = (number(pid), number(fd)) {
                zlayer_runtime::shim_wait(
                    std::path::Path::new(dir),
                    std::path::Path::new(data),
                    pid,
                    Some(fd),
                );
            }
        }
    }
}

/// The error and its causes, joined by `: ` as `{:#}` does, except a cause
/// its parent's message already includes (library errors often say
/// "PATH: {source}" and also expose `source`), which would repeat it.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("/x: No such file");
        assert_eq!(error_text(&e), "/x: No such file");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&e), "outer: inner");
    }
}

//! Drawing transfer progress: one bar per blob on a terminal (indicatif),
//! plain lines otherwise (logs, CI), nothing with --quiet.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use zlayer_image::{Progress, Silent, TransferEvent};

pub fn reporter(quiet: bool) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::default())
    } else {
        Arc::new(Lines)
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// "REF: [PLATFORM ]manifest DIGEST" for a `Resolved` event.
fn resolved(e: &TransferEvent) -> String {
    match e {
        TransferEvent::Resolved {
            reference,
            digest,
            platform,
        } => {
            let p = platform
                .as_ref()
                .map(|p| format!("{p} "))
                .unwrap_or_default();
            format!("{reference}: {p}manifest {digest}")
        }
        _ => String::new(),
    }
}

struct Lines;

impl Progress for Lines {
    fn event(&self, e: TransferEvent) {
        match e {
            TransferEvent::Resolved { .. } => eprintln!("{}", resolved(&e)),
            TransferEvent::Start { digest, size, .. } => {
                eprintln!("{}: transferring {}", short(&digest), mb(size))
            }
            TransferEvent::Progress { .. } => {}
            TransferEvent::Retry {
                digest,
                attempt,
                offset,
                error,
            } => eprintln!(
                "{}: broke at byte {offset} ({error}); retry {attempt}, resuming",
                short(&digest)
            ),
            TransferEvent::Done { digest, cached } => {
                let what = if cached { "already there" } else { "done" };
                eprintln!("{}: {what}", short(&digest))
            }
            TransferEvent::Unpacked { digest } => eprintln!("{}: unpacked", short(&digest)),
        }
    }
}

#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn bar(&self, digest: &str, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(digest.to_string())
            .or_insert_with(|| {
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let b = self.multi.add(ProgressBar::new(size).with_style(style));
                b.set_prefix(short(digest).to_string());
                b
            })
            .clone()
    }
}

impl Progress for Bars {
    fn event(&self, e: TransferEvent) {
        match e {
            TransferEvent::Resolved { .. } => {
                let _ = self.multi.println(resolved(&e));
            }
            TransferEvent::Start { digest, size, done } => {
                self.bar(&digest, size).set_position(done)
            }
            TransferEvent::Progress { digest, done } => self.bar(&digest, 0).set_position(done),
            TransferEvent::Retry {
                digest,
                attempt,
                offset,
                ..
            } => self
                .bar(&digest, 0)
                .set_message(format!("retry {attempt} from byte {offset}")),
            TransferEvent::Done { digest, cached } => {
                let b = self.bar(&digest, 0);
                if cached {
                    b.finish_with_message("already there");
                } else {
                    b.set_message("verified");
                }
            }
            TransferEvent::Unpacked { digest } => {
                self.bar(&digest, 0).finish_with_message("unpacked")
            }
        }
    }
}

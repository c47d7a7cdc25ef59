//! What a pull or push reports while it runs. The library only emits
//! events; the CLI draws them (bars on a TTY, lines otherwise).

#[derive(Clone, Debug)]
pub enum TransferEvent {
    /// The reference resolved to this manifest (after platform selection).
    Resolved {
        reference: String,
        digest: String,
        platform: Option<String>,
    },
    /// A blob transfer begins; `done` bytes were already there (resume).
    Start {
        digest: String,
        size: u64,
        done: u64,
    },
    /// `done` of the blob's bytes have been transferred so far.
    Progress { digest: String, done: u64 },
    /// The transfer broke and will be retried from byte `offset`.
    Retry {
        digest: String,
        attempt: usize,
        offset: u64,
        error: String,
    },
    /// The blob is in place; `cached` when it was already stored (or, for a
    /// push, already in the registry).
    Done { digest: String, cached: bool },
    /// The layer is unpacked and ready for snapshots.
    Unpacked { digest: String },
}

pub trait Progress: Send + Sync {
    fn event(&self, event: TransferEvent);
}

/// Reports nothing (the node's own pulls log through `tracing` instead).
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: TransferEvent) {}
}

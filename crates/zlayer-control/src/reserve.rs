//! The space a node keeps free for its state store. sled treats a failed
//! write as fatal (Raft stops with it), so commands that add data are
//! refused, with the reason, while the data dir's filesystem has less than
//! [`STORE_RESERVE`] free; the small writes that keep the cluster going
//! (heartbeats, placements, removals) still fit in the reserve.

use std::path::Path;

/// Free space below which new specs and tokens are refused.
pub const STORE_RESERVE: u64 = 64 << 20;

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// `Err` with what to do when `dir` has less than the reserve free.
pub(crate) fn ensure_room(dir: &Path) -> Result<(), String> {
    match free_bytes(dir) {
        Some(free) if free < STORE_RESERVE => Err(format!(
            "{} has {} MiB free, under the {} MiB this node keeps free for its state store; \
             nothing was written. Free space on that filesystem and retry",
            dir.display(),
            free >> 20,
            STORE_RESERVE >> 20
        )),
        _ => Ok(()),
    }
}

//! The wall clock replica records use, and the restart backoff.

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn backoff_ms(restarts: u32) -> u64 {
    (250u64 << restarts.min(7)).min(30_000)
}

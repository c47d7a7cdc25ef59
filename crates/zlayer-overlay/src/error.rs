//! Overlay errors.

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("WireGuard key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("WireGuard device {ifname}: {reason}")]
    Device { ifname: String, reason: String },
    #[error(
        "WireGuard device {ifname}: `{call}` did not answer within {secs}s (a stale UAPI socket?)"
    )]
    Timeout {
        ifname: String,
        call: &'static str,
        secs: u64,
    },
    #[error("routes on {ifname}: {reason}")]
    Route { ifname: String, reason: String },
    #[error("peer {peer}: {reason}")]
    Peer { peer: String, reason: String },
}

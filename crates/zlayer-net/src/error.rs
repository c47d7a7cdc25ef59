//! Network errors.

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("nftables: {0}")]
    Nftables(String),
    #[error("network namespace {path}: {reason}")]
    Netns { path: String, reason: String },
    #[error("invalid CIDR `{0}`: write it like 10.231.0.0/24")]
    Cidr(String),
    #[error("no free address left in {0}")]
    Exhausted(String),
    #[error("cannot publish port {port}: {reason}")]
    Publish { port: u16, reason: String },
    #[error("dns: {0}")]
    Dns(String),
}

impl From<rtnetlink::Error> for NetError {
    fn from(e: rtnetlink::Error) -> Self {
        NetError::Netlink(e.to_string())
    }
}

//! What one request or connection may take before the proxy refuses it.
//! Each breach has one clean answer: 413 for a body, 431 for headers, 408
//! or a closed connection for a client that is too slow, 504 for a replica
//! that does not answer in time.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest request body forwarded (413 above it).
    pub max_body_bytes: u64,
    /// The most bytes of request line and headers (431 above it; at least 8 KiB).
    pub max_header_bytes: usize,
    /// The most header fields in one request (431 above it).
    pub max_headers: usize,
    /// A client must send a request's whole head within this (slowloris).
    pub header_timeout: Duration,
    /// A replica must start its answer within this (504 after).
    pub upstream_timeout: Duration,
    /// How long a connect to a replica may take before the next one is tried.
    pub connect_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_streams: u32,
    /// Connections the listeners hold at once; a new one over the cap
    /// closes the idlest.
    pub max_connections: usize,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            header_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            h2_max_streams: 256,
            max_connections: 16_384,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

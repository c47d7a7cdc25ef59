//! Accepting TCP connections without spinning: an accept error (out of
//! descriptors, most often) is logged and retried after a pause that doubles
//! up to a second, because the failed connection stays in the backlog and a
//! loop that retries at once burns a core the node needs for heartbeats.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// Accepts from one listener; the pause grows with each error in a row.
pub struct Acceptor {
    listener: TcpListener,
    pause: Duration,
}

impl Acceptor {
    pub fn new(listener: TcpListener) -> Acceptor {
        Acceptor {
            listener,
            pause: FIRST_PAUSE,
        }
    }

    /// The next connection; errors are waited out, never returned.
    pub async fn next(&mut self) -> TcpStream {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    self.pause = FIRST_PAUSE;
                    return stream;
                }
                Err(e) => {
                    let port = self.listener.local_addr().map(|a| a.port()).unwrap_or(0);
                    tracing::warn!("accept on port {port}: {e}; retrying in {:?}", self.pause);
                    tokio::time::sleep(self.pause).await;
                    self.pause = (self.pause * 2).min(LONGEST_PAUSE);
                }
            }
        }
    }
}

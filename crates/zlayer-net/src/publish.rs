//! Published ports: a TCP listener on the host port that forwards each
//! connection to one of the service's healthy replicas, round robin. The
//! agent updates the backend list as replicas come, go and change health,
//! so traffic only reaches replicas that pass their checks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::NetError;

/// The current healthy backends of one published port.
pub type Backends = watch::Sender<Vec<SocketAddr>>;

pub struct PortPublisher {
    task: tokio::task::JoinHandle<()>,
    pub backends: Backends,
}

impl Drop for PortPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PortPublisher {
    pub async fn bind(listen: SocketAddr) -> Result<PortPublisher, NetError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| NetError::Publish {
                port: listen.port(),
                reason: e.to_string(),
            })?;
        let (tx, rx) = watch::channel(Vec::new());
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let backends = rx.borrow().clone();
                let start = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(forward(client, backends, start));
            }
        });
        Ok(PortPublisher { task, backends: tx })
    }
}

/// Tries backends in round-robin order from `start` until one accepts.
async fn forward(mut client: TcpStream, backends: Vec<SocketAddr>, start: usize) {
    for i in 0..backends.len() {
        let addr = backends[(start + i) % backends.len()];
        if let Ok(Ok(mut upstream)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
    }
}

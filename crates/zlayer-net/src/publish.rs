//! Published ports: a TCP listener on the host port that forwards each
//! connection to one of the service's healthy replicas, round robin (UDP
//! ports, flow by flow, are in `publish_udp`). The
//! agent updates the backend list as replicas come, go and change health,
//! so traffic only reaches replicas that pass their checks.
//!
//! Each port forwards at most `max_connections` at once (two descriptors
//! each), in a [`ConnectionTable`] that evicts the idlest connection when
//! it is full.
//!
//! Each open connection remembers which backend it reaches (or, until it
//! has connected, which it may reach), so the agent can wait for a replica's
//! connections to finish after taking it out of the list and before it
//! stops it: a rolling update or a scale-down fails no request in flight.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::accept::Acceptor;
use crate::conns::{Activity, Admitted, ConnectionTable, Watched};
use crate::error::NetError;

/// The current healthy backends of one published port.
pub type Backends = watch::Sender<Vec<SocketAddr>>;

/// Connections a published port forwards at once unless the node says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

pub struct PortPublisher {
    task: tokio::task::JoinHandle<()>,
    pub backends: Backends,
    open: Arc<ConnectionTable>,
}

impl Drop for PortPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PortPublisher {
    pub async fn bind(
        listen: SocketAddr,
        max_connections: usize,
    ) -> Result<PortPublisher, NetError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| NetError::Publish {
                port: listen.port(),
                reason: e.to_string(),
            })?;
        let (tx, rx) = watch::channel(Vec::new());
        let next = AtomicUsize::new(0);
        let open = Arc::new(ConnectionTable::new(max_connections));
        let mut acceptor = Acceptor::new(listener);
        let accepting = open.clone();
        let task = tokio::spawn(async move {
            loop {
                let client = acceptor.next().await;
                // Registered while the list is read, so a backend taken out
                // after this sees the connection when it waits to drain.
                let (backends, admitted) = {
                    let current = rx.borrow();
                    (current.clone(), accepting.admit(current.clone()))
                };
                let Admitted {
                    id,
                    activity,
                    evicted,
                } = admitted;
                let start = next.fetch_add(1, Ordering::Relaxed);
                let open = accepting.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = forward(client, backends, start, activity) => {}
                        _ = evicted => {}
                    }
                    open.forget(id);
                });
            }
        });
        Ok(PortPublisher {
            task,
            backends: tx,
            open,
        })
    }

    /// Resolves once no connection on this port reaches, or may still
    /// reach, a backend at `ip`. Take the backend out of the list first;
    /// the caller bounds the wait.
    pub fn drained(&self, ip: IpAddr) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.open.clone().drained(ip)
    }
}

/// Which transport a published port forwards; TCP and UDP ports of one
/// number are separate ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

/// A published port of either transport.
pub enum Published {
    Tcp(PortPublisher),
    Udp(crate::publish_udp::UdpPublisher),
}

impl Published {
    pub async fn bind(
        transport: Transport,
        listen: SocketAddr,
        max_connections: usize,
    ) -> Result<Published, NetError> {
        Ok(match transport {
            Transport::Tcp => Published::Tcp(PortPublisher::bind(listen, max_connections).await?),
            Transport::Udp => Published::Udp(
                crate::publish_udp::UdpPublisher::bind(listen, max_connections).await?,
            ),
        })
    }

    pub fn backends(&self) -> &Backends {
        match self {
            Published::Tcp(p) => &p.backends,
            Published::Udp(p) => &p.backends,
        }
    }

    /// See [`PortPublisher::drained`] and [`crate::publish_udp::UdpPublisher::drained`].
    pub fn drained(&self, ip: IpAddr) -> impl std::future::Future<Output = ()> + Send + 'static {
        match self {
            Published::Tcp(p) => p.open.clone().drained(ip),
            Published::Udp(p) => p.open.clone().drained(ip),
        }
    }
}

/// Tries backends in round-robin order from `start` until one accepts.
async fn forward(client: TcpStream, backends: Vec<SocketAddr>, start: usize, activity: Activity) {
    for i in 0..backends.len() {
        let addr = backends[(start + i) % backends.len()];
        if let Ok(Ok(upstream)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            activity.connected(addr);
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let mut client = Watched::new(client, activity.clone());
            let mut upstream = Watched::new(upstream, activity);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server on loopback, the published port's only backend.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> bool {
        let mut buf = vec![0u8; msg.len()];
        s.write_all(msg).await.is_ok() && s.read_exact(&mut buf).await.is_ok() && buf == msg
    }

    #[tokio::test]
    async fn a_full_port_evicts_its_longest_idle_connection_and_serves_the_new_one() {
        let backend = echo().await;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let publisher = PortPublisher::bind(port, 3).await.unwrap();
        publisher.backends.send_replace(vec![backend]);
        // Three connections fill the port; the first stays idle, the other two talk.
        let mut idle = TcpStream::connect(port).await.unwrap();
        assert!(round_trip(&mut idle, b"hello").await);
        let mut busy = Vec::new();
        for _ in 0..2 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let mut s = TcpStream::connect(port).await.unwrap();
            assert!(round_trip(&mut s, b"x").await);
            busy.push(s);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        for s in &mut busy {
            assert!(round_trip(s, b"still here").await);
        }
        // A fourth is served; the idle one is closed, the busy ones are not.
        let mut late = TcpStream::connect(port).await.unwrap();
        assert!(round_trip(&mut late, b"let me in").await);
        let mut buf = [0u8; 1];
        assert_eq!(
            idle.read(&mut buf).await.unwrap_or(0),
            0,
            "the idlest connection is closed"
        );
        for s in &mut busy {
            assert!(round_trip(s, b"unaffected").await);
        }
    }

    #[tokio::test]
    async fn a_backend_taken_out_drains_only_after_its_open_connections_close() {
        let leaving = echo().await;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let publisher = PortPublisher::bind(port, 16).await.unwrap();
        publisher.backends.send_replace(vec![leaving]);
        let mut in_flight = TcpStream::connect(port).await.unwrap();
        assert!(round_trip(&mut in_flight, b"hello").await);
        publisher.backends.send_replace(Vec::new());
        let drained = publisher.drained(leaving.ip());
        tokio::pin!(drained);
        let wait = tokio::time::timeout(std::time::Duration::from_millis(200), &mut drained);
        assert!(wait.await.is_err(), "an open connection holds the drain");
        assert!(round_trip(&mut in_flight, b"still served").await);
        drop(in_flight);
        tokio::time::timeout(std::time::Duration::from_secs(5), drained)
            .await
            .expect("drained once its connection closed");
    }
}

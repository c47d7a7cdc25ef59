//! Published ports: a TCP listener on the host port that forwards each
//! connection to one of the service's healthy replicas, round robin. The
//! agent updates the backend list as replicas come, go and change health,
//! so traffic only reaches replicas that pass their checks.
//!
//! Each port forwards at most `max_connections` at once (two descriptors
//! each). A connection over the cap evicts the one that has been idle the
//! longest, so a flood of idle sockets cannot lock real clients out or use
//! up the node's descriptors.
//!
//! Each open connection remembers which backend it reaches (or, until it
//! has connected, which it may reach), so the agent can wait for a replica's
//! connections to finish after taking it out of the list and before it
//! stops it: a rolling update or a scale-down fails no request in flight.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::accept::Acceptor;
use crate::error::NetError;

/// The current healthy backends of one published port.
pub type Backends = watch::Sender<Vec<SocketAddr>>;

/// Connections a published port forwards at once unless the node says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

pub struct PortPublisher {
    task: tokio::task::JoinHandle<()>,
    pub backends: Backends,
    open: Arc<OpenConnections>,
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
        let open = Arc::new(OpenConnections::new(max_connections.max(1)));
        let mut acceptor = Acceptor::new(listener);
        let accepting = open.clone();
        let task = tokio::spawn(async move {
            loop {
                let client = acceptor.next().await;
                // Registered while the list is read, so a backend taken out
                // after this sees the connection when it waits to drain.
                let (backends, (id, route, evicted)) = {
                    let current = rx.borrow();
                    (current.clone(), accepting.admit(current.clone()))
                };
                let start = next.fetch_add(1, Ordering::Relaxed);
                let open = accepting.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = forward(client, backends, start, route) => {}
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
        let open = self.open.clone();
        async move {
            while open.reaches(ip) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

/// The connections one port forwards, each with when it last moved a byte.
struct OpenConnections {
    max: usize,
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Open>,
}

struct Open {
    last_active: Arc<AtomicU64>,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    evict: oneshot::Sender<()>,
}

/// Where one connection goes: the backends it may still reach (one, once
/// connected) and the milliseconds since the table's epoch at which it last
/// moved data.
#[derive(Clone)]
struct Route {
    epoch: Instant,
    last: Arc<AtomicU64>,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Route {
    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    fn connected(&self, to: SocketAddr) {
        *self.targets.lock().unwrap_or_else(|e| e.into_inner()) = vec![to];
    }
}

impl OpenConnections {
    fn new(max: usize) -> OpenConnections {
        OpenConnections {
            max,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        }
    }

    /// Registers a new connection that may reach `targets`, evicting the
    /// longest idle one when the port is full; returns its id, its route and
    /// its eviction.
    fn admit(&self, targets: Vec<SocketAddr>) -> (u64, Route, oneshot::Receiver<()>) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.open.len() >= self.max {
            let idlest = t
                .open
                .iter()
                .min_by_key(|(_, o)| o.last_active.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(gone) = idlest.and_then(|id| t.open.remove(&id)) {
                let _ = gone.evict.send(());
            }
        }
        let route = Route {
            epoch: self.epoch,
            last: Arc::new(AtomicU64::new(0)),
            targets: Arc::new(Mutex::new(targets)),
        };
        route.touch();
        let (evict, evicted) = oneshot::channel();
        let id = t.next_id;
        t.next_id += 1;
        t.open.insert(
            id,
            Open {
                last_active: route.last.clone(),
                targets: route.targets.clone(),
                evict,
            },
        );
        (id, route, evicted)
    }

    fn reaches(&self, ip: IpAddr) -> bool {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.open.values().any(|o| {
            o.targets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|a| a.ip() == ip)
        })
    }

    fn forget(&self, id: u64) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.open.remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap().open.len()
    }
}

/// Tries backends in round-robin order from `start` until one accepts.
async fn forward(client: TcpStream, backends: Vec<SocketAddr>, start: usize, route: Route) {
    for i in 0..backends.len() {
        let addr = backends[(start + i) % backends.len()];
        if let Ok(Ok(upstream)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            route.connected(addr);
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let mut client = Watched {
                inner: client,
                route: route.clone(),
            };
            let mut upstream = Watched {
                inner: upstream,
                route,
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
    }
}

/// A stream that records when it last read data.
struct Watched {
    inner: TcpStream,
    route: Route,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.route.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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

    #[test]
    fn the_table_never_holds_more_than_its_cap() {
        let open = OpenConnections::new(2);
        let mut evictions = Vec::new();
        for _ in 0..5 {
            let (_, _, evicted) = open.admit(Vec::new());
            evictions.push(evicted);
        }
        assert_eq!(open.len(), 2);
        let evicted = evictions
            .into_iter()
            .filter_map(|mut e| e.try_recv().ok())
            .count();
        assert_eq!(evicted, 3);
    }
}

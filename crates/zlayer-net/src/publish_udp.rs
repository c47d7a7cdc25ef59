//! Published UDP ports. Datagrams from one client address are a flow: the
//! flow's first datagram picks one of the service's serving replicas
//! (round robin), and the flow gets a socket of its own connected to it;
//! the replica's answers go back to the client from the published port.
//! A flow ends after [`UDP_IDLE`] with no datagram either way, or when the
//! replica refuses (nothing listens there any more). Flows are capped like
//! TCP connections, in the same [`ConnectionTable`] (the idlest goes), so
//! a flood from many source addresses cannot use up the node's descriptors.
//!
//! UDP has no end of a request to wait for, so a replica taken out of the
//! list is drained this way: its flows take no new datagrams (the client's
//! next one starts a flow to another replica) and stay open [`LINGER`]
//! after their last datagram for answers still on their way. `drained`
//! waits for that.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::conns::{Activity, Admitted, ConnectionTable};
use crate::error::NetError;
use crate::publish::Backends;

/// A flow with no datagram either way for this long ends (as conntrack's
/// timeout for a UDP flow that has seen answers, 30 s).
pub const UDP_IDLE: Duration = Duration::from_secs(30);
/// How long a flow whose replica left the list still relays answers.
pub const LINGER: Duration = Duration::from_secs(2);
/// How often a flow's relay looks at its clock when nothing arrives.
const TICK: Duration = Duration::from_millis(250);
const MAX_DATAGRAM: usize = 65_535;

thread_local! {
    /// One buffer per runtime thread that every flow receives answers
    /// into, never held across an await: an idle flow costs no buffer.
    static ANSWER: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
}

pub struct UdpPublisher {
    task: tokio::task::JoinHandle<()>,
    pub backends: Backends,
    pub(crate) open: Arc<ConnectionTable>,
}

impl Drop for UdpPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpPublisher {
    pub async fn bind(listen: SocketAddr, max_flows: usize) -> Result<UdpPublisher, NetError> {
        let socket = UdpSocket::bind(listen)
            .await
            .map_err(|e| NetError::Publish {
                port: listen.port(),
                reason: format!("udp: {e}"),
            })?;
        let (backends, rx) = watch::channel(Vec::new());
        let open = Arc::new(ConnectionTable::new(max_flows));
        let task = tokio::spawn(serve(Arc::new(socket), rx, open.clone()));
        Ok(UdpPublisher {
            task,
            backends,
            open,
        })
    }

    /// Resolves once no flow on this port reaches a backend at `ip` (take
    /// it out of the list first; the caller bounds the wait).
    pub fn drained(&self, ip: IpAddr) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.open.clone().drained(ip)
    }

    /// Flows open now.
    pub fn flows(&self) -> usize {
        self.open.len()
    }
}

/// One client's flow, as the port's loop sees it.
struct Flow {
    id: u64,
    backend: SocketAddr,
    upstream: Arc<UdpSocket>,
    activity: Activity,
    retired: Arc<AtomicBool>,
}

/// What a flow's relay needs besides its socket.
struct Relay {
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    id: u64,
    activity: Activity,
    retired: Arc<AtomicBool>,
    evicted: oneshot::Receiver<()>,
    open: Arc<ConnectionTable>,
    ended: mpsc::UnboundedSender<(SocketAddr, u64)>,
}

async fn serve(
    listener: Arc<UdpSocket>,
    mut backends: watch::Receiver<Vec<SocketAddr>>,
    open: Arc<ConnectionTable>,
) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
    let mut next = 0usize;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            got = listener.recv_from(&mut buf) => {
                let (n, client) = match got {
                    Ok(got) => got,
                    Err(e) => {
                        tracing::debug!("udp port {:?}: {e}", listener.local_addr().ok());
                        tokio::time::sleep(TICK).await;
                        continue;
                    }
                };
                let flow = match flows.entry(client) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        let current = backends.borrow().clone();
                        if current.is_empty() {
                            continue;
                        }
                        let backend = current[next % current.len()];
                        next = next.wrapping_add(1);
                        match start_flow(&listener, client, backend, &open, &ended_tx).await {
                            Ok(f) => v.insert(f),
                            Err(e) => {
                                tracing::debug!("udp flow from {client} to {backend}: {e}");
                                continue;
                            }
                        }
                    }
                };
                flow.activity.touch();
                let _ = flow.upstream.send(&buf[..n]).await;
            }
            changed = backends.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = backends.borrow_and_update().clone();
                flows.retain(|_, f| {
                    let stays = current.contains(&f.backend);
                    if !stays {
                        f.retired.store(true, Ordering::Release);
                    }
                    stays
                });
            }
            Some((client, id)) = ended_rx.recv() => {
                if flows.get(&client).is_some_and(|f| f.id == id) {
                    flows.remove(&client);
                }
            }
        }
    }
}

async fn start_flow(
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    backend: SocketAddr,
    open: &Arc<ConnectionTable>,
    ended: &mpsc::UnboundedSender<(SocketAddr, u64)>,
) -> std::io::Result<Flow> {
    let any: SocketAddr = match backend {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let upstream = UdpSocket::bind(any).await?;
    upstream.connect(backend).await?;
    let upstream = Arc::new(upstream);
    let Admitted {
        id,
        activity,
        evicted,
    } = open.admit(vec![backend]);
    let retired = Arc::new(AtomicBool::new(false));
    tokio::spawn(relay_answers(
        upstream.clone(),
        Relay {
            listener: listener.clone(),
            client,
            id,
            activity: activity.clone(),
            retired: retired.clone(),
            evicted,
            open: open.clone(),
            ended: ended.clone(),
        },
    ));
    Ok(Flow {
        id,
        backend,
        upstream,
        activity,
        retired,
    })
}

/// Sends the replica's answers to the client until the flow ends.
async fn relay_answers(upstream: Arc<UdpSocket>, mut r: Relay) {
    loop {
        let limit = if r.retired.load(Ordering::Acquire) {
            LINGER
        } else {
            UDP_IDLE
        };
        if r.activity.idle_for() >= limit {
            break;
        }
        tokio::select! {
            ready = tokio::time::timeout(TICK, upstream.readable()) => match ready {
                Ok(Ok(())) => {
                    let got = ANSWER.with_borrow_mut(|buf| {
                        upstream.try_recv(buf).map(|n| buf[..n].to_vec())
                    });
                    match got {
                        Ok(answer) => {
                            r.activity.touch();
                            let _ = r.listener.send_to(&answer, r.client).await;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // Refused: nothing listens at the replica's port any more.
                        Err(_) => break,
                    }
                }
                Ok(Err(_)) => break,
                Err(_) => {}
            },
            _ = &mut r.evicted => break,
        }
    }
    r.open.forget(r.id);
    let _ = r.ended.send((r.client, r.id));
}

#[cfg(test)]
#[path = "publish_udp_tests.rs"]
mod tests;

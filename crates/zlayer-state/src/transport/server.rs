//! The HTTPS listener. It completes the TLS handshake, notes whether the
//! caller presented a certificate the cluster CA signed, and hands each
//! request to a [`Handler`] with that fact.
//!
//! Raw connections are hostile until proven otherwise. At most
//! [`MAX_HANDSHAKES`] may be in their TLS handshake at once; a new one
//! evicts the oldest, so a flood of idle sockets cannot keep a member's
//! call (a handshake of a few milliseconds) out. A handshake or a request's
//! headers that take longer than [`SLOW_CLIENT`] end the connection, at
//! most [`MAX_CONNECTIONS`] may be established, and accept errors (out of
//! file descriptors) back off instead of spinning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Who is calling. A `Member` presented a certificate signed by the cluster
/// CA (its fingerprint is given); an `Anonymous` caller did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Member { cert_fingerprint: String },
    Anonymous,
}

pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        req: Request<Incoming>,
        caller: Caller,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<super::Body>> + Send;
}

pub const MAX_CONNECTIONS: usize = 1024;
pub const MAX_HANDSHAKES: usize = 256;
pub const SLOW_CLIENT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `listener` until the returned task is aborted.
pub fn serve<H: Handler>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    handler: Arc<H>,
) -> tokio::task::JoinHandle<()> {
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        // Connections still in their handshake, oldest first, with a flag
        // each sets once its handshake is over.
        type Handshake = (tokio::task::AbortHandle, Arc<AtomicBool>);
        let mut handshaking: std::collections::VecDeque<Handshake> =
            std::collections::VecDeque::new();
        let mut backoff = std::time::Duration::from_millis(5);
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => {
                    backoff = std::time::Duration::from_millis(5);
                    c
                }
                Err(e) => {
                    tracing::warn!("accept: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                    continue;
                }
            };
            handshaking.retain(|(task, shaken)| !task.is_finished() && !shaken.load(Relaxed));
            if handshaking.len() >= MAX_HANDSHAKES {
                if let Some((oldest, _)) = handshaking.pop_front() {
                    oldest.abort();
                }
            }
            let slots = slots.clone();
            let shaken = Arc::new(AtomicBool::new(false));
            let shaken_here = shaken.clone();
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            // Connections die with the server: aborting this task drops the set.
            let task = conns.spawn(async move {
                let tls = match tokio::time::timeout(SLOW_CLIENT, acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake from {remote}: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(
                            "TLS handshake from {remote}: no handshake in {SLOW_CLIENT:?}"
                        );
                        return;
                    }
                };
                shaken_here.store(true, Relaxed);
                let Ok(_slot) = slots.try_acquire_owned() else {
                    tracing::debug!(
                        "{remote}: {MAX_CONNECTIONS} connections open; closing this one"
                    );
                    return;
                };
                let caller = match tls.get_ref().1.peer_certificates() {
                    Some([leaf, ..]) => Caller::Member {
                        cert_fingerprint: crate::pki::fingerprint_der(leaf),
                    },
                    _ => Caller::Anonymous,
                };
                let svc = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    let caller = caller.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(handler.handle(req, caller, remote).await)
                    }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(SLOW_CLIENT)
                    .serve_connection(TokioIo::new(tls), svc)
                    .await
                {
                    tracing::debug!("connection from {remote}: {e}");
                }
            });
            handshaking.push_back((task, shaken));
            while conns.try_join_next().is_some() {}
        }
    })
}

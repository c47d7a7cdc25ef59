//! The HTTPS listener. It completes the TLS handshake, notes whether the
//! caller presented a certificate the cluster CA signed, and hands each
//! request to a [`Handler`] with that fact.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
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
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Serves `listener` until the returned task is aborted.
pub fn serve<H: Handler>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    handler: Arc<H>,
) -> tokio::task::JoinHandle<()> {
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            // Connections die with the server: aborting this task drops the set.
            conns.spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!("TLS handshake from {remote}: {e}");
                        return;
                    }
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
                    .serve_connection(TokioIo::new(tls), svc)
                    .await
                {
                    tracing::debug!("connection from {remote}: {e}");
                }
            });
            while conns.try_join_next().is_some() {}
        }
    })
}

//! The HTTP and HTTPS listeners. Every connection is admitted to the node's
//! connection table (the idlest goes when it is full), TLS is ended with a
//! time limit on the handshake, and hyper serves HTTP/1.1 and HTTP/2 on it:
//! by ALPN over TLS, by the client's preface (h2c prior knowledge) in plain.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use zlayer_net::{Acceptor, Admitted, Watched};

use crate::forward::{handle, Downstream};
use crate::upstream::Conns;
use crate::Shared;

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let builder = Arc::new(http_builder(&shared));
    let mut acceptor = Acceptor::new(listener);
    loop {
        let stream = acceptor.next().await;
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, builder, tls) = (shared.clone(), builder.clone(), tls.clone());
        tokio::spawn(async move {
            let Admitted {
                id,
                activity,
                evicted,
            } = shared.conns.admit(Vec::new());
            let watched = Watched::new(stream, activity);
            let down = Downstream {
                peer,
                tls: tls.is_some(),
            };
            tokio::select! {
                _ = connection(&shared, &builder, watched, tls, down) => {}
                _ = evicted => {}
            }
            shared.conns.forget(id);
        });
    }
}

async fn connection(
    shared: &Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    stream: Watched<TcpStream>,
    tls: Option<TlsAcceptor>,
    down: Downstream,
) {
    match tls {
        None => serve_http(shared, builder, stream, down).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(stream))
                    .await;
            match handshake {
                // A TLS-ALPN-01 validation ends with the handshake.
                Ok(Ok(s)) if s.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) => {}
                Ok(Ok(s)) => serve_http(shared, builder, s, down).await,
                Ok(Err(e)) => tracing::debug!(peer = %down.peer, "TLS handshake: {e}"),
                Err(_) => tracing::debug!(peer = %down.peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_http<S>(
    shared: &Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    io: S,
    down: Downstream,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = shared.clone();
    // The connections to replicas this connection's requests use.
    let conns = Arc::new(Conns::default());
    let svc = service_fn(move |req| {
        let (shared, conns) = (shared.clone(), conns.clone());
        async move { Ok::<_, std::convert::Infallible>(handle(shared, conns, down, req).await) }
    });
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await
    {
        tracing::debug!(peer = %down.peer, "connection: {e}");
    }
}

fn http_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let l = &shared.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(l.header_timeout)
        .max_buf_size(l.max_header_bytes.max(8192))
        .max_headers(l.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(l.h2_max_streams)
        .max_header_list_size(u32::try_from(l.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256));
    b
}

/// Binds one listener, naming the port and what it is for when that
/// fails; the socket comes back in std form, for every thread to clone.
pub(crate) async fn bind(
    addr: SocketAddr,
    what: &str,
) -> Result<(std::net::TcpListener, SocketAddr), crate::ProxyError> {
    let refused = |e: std::io::Error| crate::ProxyError::Bind {
        what: what.to_string(),
        addr,
        reason: e.to_string(),
    };
    let listener = TcpListener::bind(addr).await.map_err(refused)?;
    let at = listener.local_addr().unwrap_or(addr);
    Ok((listener.into_std().map_err(refused)?, at))
}

//! HTTP/1.1 connections to replicas, held by the downstream connection that
//! opened them and driven from the task that serves it. A request's trip to
//! a replica and back then never leaves that task: no shared pool to lock,
//! no connection task to wake, no channel hop between tasks. With the
//! ingress's own threads (`workers`), that took 9-20% off its CPU per
//! request (docs/benchmarks.md).
//!
//! A connection is lent to one request at a time and comes back when the
//! answer's body has ended; one closed by the replica while idle is noticed
//! and dropped at the next take. A request that could not be handed to a
//! reused connection (it closed first) goes once more on a new one, so a
//! replica's keep-alive timeout never surfaces as an error. Upgrades
//! (WebSocket) get a connection of their own, spawned, that is never reused.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{BoxError, ProxyBody};

/// Idle connections one downstream connection keeps (an h2 client with
/// many streams open may use more at once; the rest close when done).
const MAX_IDLE: usize = 32;

type Io = TokioIo<TcpStream>;

/// One connection to a replica.
pub(crate) struct Conn {
    send: http1::SendRequest<ProxyBody>,
    /// `None` once the connection has ended.
    driver: Option<http1::Connection<Io, ProxyBody>>,
}

impl Conn {
    /// Moves the connection's I/O on; false once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(d) = self.driver.as_mut() {
            if Pin::new(d).poll(cx).is_ready() {
                // Dropping it fails any request still waiting on it.
                self.driver = None;
            }
        }
        self.driver.is_some()
    }

    /// True when nothing has closed the connection while it sat idle.
    fn still_open(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop())) && !self.send.is_closed()
    }
}

/// Why a request did not get an answer's head from a replica.
pub(crate) enum SendError {
    /// No connection could be made, so nothing was sent; the request is
    /// handed back where it can go to another replica.
    Connect(std::io::Error, Option<Box<Request<ProxyBody>>>),
    Failed(BoxError),
}

/// The idle connections of one downstream connection.
#[derive(Default)]
pub(crate) struct Conns {
    idle: Mutex<Vec<(SocketAddr, Conn)>>,
}

impl Conns {
    fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain_mut(|(_, c)| c.still_open());
        let at = idle.iter().position(|(a, _)| *a == addr)?;
        Some(idle.swap_remove(at).1)
    }

    /// Keeps `conn` for the next request if it is idle: one still sending
    /// the last request's body (the replica answered before the upload
    /// ended) would hold the next request behind it, so it is closed.
    fn give_back(&self, addr: SocketAddr, mut conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Driven first: that is what makes an idle connection ask for more.
        if idle.len() < MAX_IDLE && conn.still_open() && conn.send.is_ready() {
            idle.push((addr, conn));
        }
    }

    /// Sends `req` to `addr` on an idle connection or a new one, driving it
    /// from this task until the answer's head is in. The connection comes
    /// back with the answer; lend it to the body as [`Lent`].
    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Conn), SendError> {
        if let Some(conn) = self.take(addr) {
            match send_on(conn, req).await {
                Ok(answer) => return Ok(answer),
                Err(Unsent::Closed(r)) => req = *r,
                Err(Unsent::Failed(e)) => return Err(SendError::Failed(Box::new(e))),
            }
        }
        let conn = match connect(addr, connect_timeout).await {
            Ok(c) => c,
            Err(e) => return Err(SendError::Connect(e, Some(Box::new(req)))),
        };
        match send_on(conn, req).await {
            Ok(answer) => Ok(answer),
            Err(Unsent::Failed(e)) => Err(SendError::Failed(Box::new(e))),
            // It closed before taking the request: nothing was sent.
            Err(Unsent::Closed(r)) => Err(SendError::Connect(
                std::io::ErrorKind::ConnectionAborted.into(),
                Some(r),
            )),
        }
    }
}

/// A request that never reached the connection, or a failure after it did.
enum Unsent {
    Closed(Box<Request<ProxyBody>>),
    Failed(hyper::Error),
}

async fn send_on(
    mut conn: Conn,
    req: Request<ProxyBody>,
) -> Result<(Response<Incoming>, Conn), Unsent> {
    let ready = poll_fn(|cx| {
        if !conn.drive(cx) {
            return Poll::Ready(false);
        }
        conn.send.poll_ready(cx).map(|r| r.is_ok())
    })
    .await;
    if !ready {
        return Err(Unsent::Closed(Box::new(req)));
    }
    let mut answer = std::pin::pin!(conn.send.try_send_request(req));
    let got = poll_fn(|cx| {
        conn.drive(cx);
        answer.as_mut().poll(cx)
    })
    .await;
    match got {
        Ok(resp) => Ok((resp, conn)),
        Err(mut e) => match e.take_message() {
            Some(req) => Err(Unsent::Closed(Box::new(req))),
            None => Err(Unsent::Failed(e.into_error())),
        },
    }
}

/// A new connection to `addr`, its HTTP/1.1 handshake done (no I/O for
/// HTTP/1.1; hyper only sets up the two halves).
async fn open(
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<(
    http1::SendRequest<ProxyBody>,
    http1::Connection<Io, ProxyBody>,
)> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    tcp.set_nodelay(true)?;
    http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)
}

async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Conn> {
    let (send, driver) = open(addr, timeout).await?;
    Ok(Conn {
        send,
        driver: Some(driver),
    })
}

/// Sends an upgrade request (WebSocket) on a connection of its own, which
/// runs in its own task so the upgraded stream can outlive this request.
pub(crate) async fn send_upgrade(
    addr: SocketAddr,
    connect_timeout: Duration,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, SendError> {
    let (mut send, driver) = match open(addr, connect_timeout).await {
        Ok(c) => c,
        Err(e) => return Err(SendError::Connect(e, Some(Box::new(req)))),
    };
    tokio::spawn(driver.with_upgrades());
    send.send_request(req)
        .await
        .map_err(|e| SendError::Failed(Box::new(e)))
}

/// A connection lent to one answer: it is driven while the body is read,
/// and goes back to its downstream connection when the body has ended.
pub(crate) struct Lent {
    pub(crate) conn: Conn,
    pub(crate) addr: SocketAddr,
    pub(crate) conns: Arc<Conns>,
}

impl Lent {
    /// Drives the connection; false once it has ended.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.conn.drive(cx)
    }

    pub(crate) fn give_back(self) {
        self.conns.give_back(self.addr, self.conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::{Bytes, BytesMut};
    use hyper::body::Body;

    /// A replica on a loopback port, counting the connections it accepts
    /// and handing each to `serve` in a task of its own.
    async fn counting<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s));
            }
        });
        (addr, accepted)
    }

    /// A replica answering `ok` to every request; with `close`, it asks
    /// for each connection to be closed after one.
    async fn replica(close: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        counting(move |s| async move {
            let svc = hyper::service::service_fn(move |_req| async move {
                let mut r = Response::new(http_body_util::Full::new(Bytes::from("ok")));
                if close {
                    r.headers_mut()
                        .insert(http::header::CONNECTION, "close".parse().unwrap());
                }
                Ok::<_, std::convert::Infallible>(r)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        })
        .await
    }

    /// A replica that answers each request as soon as its head is in and
    /// keeps the connection open, reading nothing more.
    async fn answers_before_the_body() -> (SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        counting(|mut s| async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            std::future::pending::<()>().await;
            drop(s);
        })
        .await
    }

    fn get() -> Request<ProxyBody> {
        let mut r = Request::new(crate::forward::empty_body());
        *r.uri_mut() = "/".parse().unwrap();
        r.headers_mut()
            .insert(http::header::HOST, "replica".parse().unwrap());
        r
    }

    /// Reads an answer's body the way the proxy does (driving the lent
    /// connection), then gives the connection back.
    async fn body_of(
        conns: &Arc<Conns>,
        addr: SocketAddr,
        resp: Response<Incoming>,
        conn: Conn,
    ) -> Bytes {
        let mut lent = Lent {
            conn,
            addr,
            conns: conns.clone(),
        };
        let mut body = resp.into_body();
        let mut out = BytesMut::new();
        while let Some(frame) = poll_fn(|cx| {
            lent.drive(cx);
            Pin::new(&mut body).poll_frame(cx)
        })
        .await
        {
            if let Ok(data) = frame.unwrap().into_data() {
                out.extend_from_slice(&data);
            }
        }
        lent.give_back();
        out.freeze()
    }

    const SECOND: Duration = Duration::from_secs(1);

    /// Sends `n` GETs one after another through one client connection's
    /// held connections; returns how many connections the replica accepted.
    async fn connections_for(n: usize, close: bool) -> usize {
        let (addr, accepted) = replica(close).await;
        let conns = Arc::new(Conns::default());
        for _ in 0..n {
            let Ok((resp, conn)) = conns.send(addr, SECOND, get()).await else {
                panic!("no answer");
            };
            assert_eq!(body_of(&conns, addr, resp, conn).await, "ok");
        }
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn requests_one_after_another_share_one_connection() {
        assert_eq!(connections_for(3, false).await, 1);
    }

    #[tokio::test]
    async fn a_connection_the_replica_closes_is_not_used_again() {
        assert_eq!(connections_for(2, true).await, 2);
    }

    #[tokio::test]
    async fn a_connection_still_sending_a_request_body_is_not_lent_again() {
        // The replica answers at once, before the upload ends (a 401 or a
        // 413 does); the upload never ends. Lent again, the next request
        // would wait behind it for good.
        let (addr, accepted) = answers_before_the_body().await;
        let conns = Arc::new(Conns::default());
        let endless = http_body_util::StreamBody::new(futures::stream::pending::<
            Result<hyper::body::Frame<Bytes>, BoxError>,
        >());
        let mut upload = Request::new(http_body_util::BodyExt::boxed(endless));
        *upload.method_mut() = http::Method::POST;
        *upload.uri_mut() = "/".parse().unwrap();
        let Ok((resp, conn)) = conns.send(addr, SECOND, upload).await else {
            panic!("no answer");
        };
        assert_eq!(body_of(&conns, addr, resp, conn).await, "ok");
        let next = tokio::time::timeout(Duration::from_secs(10), conns.send(addr, SECOND, get()));
        let Ok(Ok((resp, conn))) = next.await else {
            panic!("the next request waited behind the unfinished upload");
        };
        assert_eq!(body_of(&conns, addr, resp, conn).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connect_hands_the_request_back_unsent() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let conns = Conns::default();
        let mut req = get();
        *req.uri_mut() = "/kept?x=1".parse().unwrap();
        match conns.send(closed, SECOND, req).await {
            Err(SendError::Connect(_, Some(back))) => assert_eq!(back.uri(), "/kept?x=1"),
            _ => panic!("expected a connect error with the request handed back"),
        }
    }
}

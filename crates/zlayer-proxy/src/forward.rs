//! One request through the proxy: find its route, check its limits, pick a
//! replica, forward it (once more to another replica when an idempotent
//! request could not connect, so nothing was sent), and hand back the answer.
//! The replica's lease is held until the answer's body has been sent, so a
//! replica being drained is waited on until its last request is done.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use crate::balance::Lease;
use crate::respond::Refusal;
use crate::route::{normalize_host, Route, UpstreamProtocol};
use crate::upstream::{self, Conns, Lent, SendError};
use crate::{BoxError, ProxyBody, Shared};

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug)]
pub struct Downstream {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Headers that describe one hop's connection, never forwarded.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Where an ACME CA fetches an HTTP-01 answer (RFC 8555, 8.3).
const ACME_HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

pub(crate) async fn handle(
    shared: Arc<Shared>,
    conns: Arc<Conns>,
    down: Downstream,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let host = request_host(&req);
    let path = shared.access_log.then(|| req.uri().path().to_string());
    let (answer, route, upstream) =
        route_and_forward(&shared, &conns, down, host.as_deref(), req).await;
    let status = answer.status();
    if let Some(m) = route.as_ref().and_then(|r| r.metrics.as_ref()) {
        m.latency.observe(started.elapsed().as_secs_f64());
        m.answered(status);
    }
    if let Some(path) = path {
        tracing::info!(
            target: "zlayer::access",
            peer = %down.peer,
            host = host.as_deref().unwrap_or("-"),
            path = %path,
            route = route.as_ref().map_or("-", |r| r.name.as_str()),
            upstream = %upstream.map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
            status = status.as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    answer
}

type Answer = (Response<ProxyBody>, Option<Arc<Route>>, Option<SocketAddr>);

async fn route_and_forward(
    shared: &Arc<Shared>,
    conns: &Arc<Conns>,
    down: Downstream,
    host: Option<&str>,
    req: Request<Incoming>,
) -> Answer {
    let refuse = |shared: &Shared, r: Refusal, route: Option<&Arc<Route>>| -> Answer {
        shared
            .metrics
            .refusals
            .with_label_values(&[route.map_or("", |r| r.name.as_str()), r.kind()])
            .inc();
        (r.respond(None), route.cloned(), None)
    };
    if !down.tls {
        if let Some(answer) = req
            .uri()
            .path()
            .strip_prefix(ACME_HTTP01_PREFIX)
            .and_then(|token| shared.acme_http01(token))
        {
            return (crate::respond::acme_http01(answer), None, None);
        }
    }
    let Some(host) = host else {
        return refuse(shared, Refusal::NoHost, None);
    };
    let table = shared.routes(down.tls);
    let Some(route) = table.lookup(host, req.uri().path()) else {
        if !down.tls && shared.routes(true).lookup(host, req.uri().path()).is_some() {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let to = format!("https://{host}{}{pq}", shared.https_port_suffix());
            return (Refusal::RedirectToHttps.respond(Some(&to)), None, None);
        }
        return refuse(shared, Refusal::UnknownRoute, None);
    };
    if req.headers().len() > shared.limits.max_headers {
        return refuse(shared, Refusal::TooManyHeaders, Some(&route));
    }
    if declared_length(req.headers()).is_some_and(|n| n > shared.limits.max_body_bytes) {
        return refuse(shared, Refusal::BodyTooLarge, Some(&route));
    }
    let Some(lease) = route.balancer.pick(None) else {
        return refuse(shared, Refusal::NoHealthyReplica, Some(&route));
    };
    let gauge = route
        .metrics
        .as_ref()
        .map(|m| InFlight::new(m.in_flight.clone()));
    match forward(shared, conns, down, host, &route, lease, gauge, req).await {
        Ok((resp, addr)) => (resp, Some(route), Some(addr)),
        Err((r, addr)) => {
            let (resp, route, _) = refuse(shared, r, Some(&route));
            (resp, route, addr)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    shared: &Arc<Shared>,
    conns: &Arc<Conns>,
    down: Downstream,
    host: &str,
    route: &Arc<Route>,
    mut lease: Lease,
    gauge: Option<InFlight>,
    mut req: Request<Incoming>,
) -> Result<(Response<ProxyBody>, SocketAddr), (Refusal, Option<SocketAddr>)> {
    let upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let empty = body.is_end_stream();
    let retryable = upgrade.is_none() && is_idempotent(&parts.method);
    rewrite_headers(&mut parts, down, host, upgrade.is_some());
    let limit = usize::try_from(shared.limits.max_body_bytes).unwrap_or(usize::MAX);
    let body: ProxyBody = if empty {
        empty_body()
    } else {
        Limited::new(body, limit).boxed()
    };
    let mut outgoing = Request::from_parts(parts, body);
    let mut tried_another = false;
    loop {
        let addr = lease.addr();
        aim(&mut outgoing, route.upstream, &lease);
        let sent = tokio::time::timeout(
            shared.limits.upstream_timeout,
            send(
                shared,
                conns,
                route.upstream,
                addr,
                outgoing,
                upgrade.is_some(),
            ),
        )
        .await;
        match sent {
            Err(_) => return Err((Refusal::UpstreamTimeout, Some(addr))),
            Ok(Ok((mut resp, lent))) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_side) = upgrade {
                        let upstream_side = hyper::upgrade::on(&mut resp);
                        tokio::spawn(tunnel(client_side, upstream_side, lease, gauge));
                        let (mut p, _) = resp.into_parts();
                        p.headers.remove(header::CONTENT_LENGTH);
                        return Ok((Response::from_parts(p, empty_body()), addr));
                    }
                }
                let (mut p, b) = resp.into_parts();
                strip_hop_by_hop(&mut p.headers);
                let body = Held {
                    inner: b,
                    lease: Some(lease),
                    gauge,
                    lent,
                };
                return Ok((Response::from_parts(p, body.boxed()), addr));
            }
            Ok(Err(SendError::Connect(e, unsent))) => {
                let again = unsent.filter(|_| retryable && !tried_another);
                if let Some((again, next)) =
                    again.and_then(|r| Some((r, route.balancer.pick(Some(addr))?)))
                {
                    tracing::debug!(route = %route.name, %addr, "connect failed ({e}); retrying on {}", next.addr());
                    lease = next;
                    tried_another = true;
                    outgoing = *again;
                    continue;
                }
                tracing::debug!(route = %route.name, %addr, "upstream: connect: {e}");
                return Err((Refusal::UpstreamFailed, Some(addr)));
            }
            Ok(Err(SendError::Failed(e))) => {
                if is_body_limit(e.as_ref()) {
                    return Err((Refusal::BodyTooLarge, Some(addr)));
                }
                tracing::debug!(route = %route.name, %addr, "upstream: {e}");
                return Err((Refusal::UpstreamFailed, Some(addr)));
            }
        }
    }
}

/// Sends a request to the replica at `addr`: HTTP/1.1 on a connection this
/// downstream connection holds (an upgrade on one of its own), h2c through
/// the shared client, which multiplexes one connection per replica.
async fn send(
    shared: &Shared,
    conns: &Arc<Conns>,
    protocol: UpstreamProtocol,
    addr: SocketAddr,
    req: Request<ProxyBody>,
    upgrade: bool,
) -> Result<(Response<Incoming>, Option<Lent>), SendError> {
    let connect_timeout = shared.limits.connect_timeout;
    match protocol {
        UpstreamProtocol::Http1 if upgrade => upstream::send_upgrade(addr, connect_timeout, req)
            .await
            .map(|r| (r, None)),
        UpstreamProtocol::Http1 => {
            let (resp, conn) = conns.send(addr, connect_timeout, req).await?;
            let lent = Lent {
                conn,
                addr,
                conns: conns.clone(),
            };
            Ok((resp, Some(lent)))
        }
        UpstreamProtocol::H2c => {
            // The shared client keeps no request it could not send: keep
            // the head of one that may go to another replica.
            let again = req.body().is_end_stream().then(|| {
                let mut r = Request::new(empty_body());
                *r.method_mut() = req.method().clone();
                *r.uri_mut() = req.uri().clone();
                *r.version_mut() = req.version();
                *r.headers_mut() = req.headers().clone();
                Box::new(r)
            });
            match shared.h2c.request(req).await {
                Ok(resp) => Ok((resp, None)),
                Err(e) if e.is_connect() => {
                    Err(SendError::Connect(std::io::Error::other(e), again))
                }
                Err(e) => Err(SendError::Failed(Box::new(e))),
            }
        }
    }
}

pub(crate) fn empty_body() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Points the request at the leased replica: origin-form for HTTP/1.1 on
/// a connection already made to it, the replica's address for h2c.
fn aim(req: &mut Request<ProxyBody>, protocol: UpstreamProtocol, lease: &Lease) {
    let path_and_query = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    if protocol == UpstreamProtocol::H2c {
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(lease.authority().clone());
    }
    uri.path_and_query = Some(path_and_query);
    *req.uri_mut() = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
    *req.version_mut() = match protocol {
        UpstreamProtocol::Http1 => Version::HTTP_11,
        UpstreamProtocol::H2c => Version::HTTP_2,
    };
}

/// The request's headers as the replica sees them: hop-by-hop fields gone
/// (but for an upgrade's), the original host kept, and X-Forwarded-For,
/// -Proto and -Host added.
fn rewrite_headers(parts: &mut http::request::Parts, down: Downstream, host: &str, upgrade: bool) {
    let h = &mut parts.headers;
    let upgrade_to = upgrade.then(|| h.get(header::UPGRADE).cloned()).flatten();
    strip_hop_by_hop(h);
    if let Some(u) = upgrade_to {
        h.insert(header::UPGRADE, u);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let original_host = h
        .get(header::HOST)
        .cloned()
        .or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        })
        .or_else(|| HeaderValue::from_str(host).ok());
    if let Some(v) = original_host {
        h.insert(header::HOST, v.clone());
        h.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
    let peer = down.peer.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {peer}"),
        None => peer,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if down.tls { "https" } else { "http" }),
    );
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Fields the Connection header names are this hop's too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP) {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn declared_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn request_host(req: &Request<Incoming>) -> Option<String> {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })?;
    let raw = raw
        .rsplit_once('@')
        .map_or(raw.as_str(), |(_, h)| h)
        .to_string();
    let host = normalize_host(&raw);
    (!host.is_empty()).then_some(host)
}

fn is_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Bytes both ways between an upgraded client and replica, holding the
/// replica's lease until either side closes.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    lease: Lease,
    gauge: Option<InFlight>,
) {
    let (Ok(c), Ok(u)) = tokio::join!(client, upstream) else {
        return;
    };
    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
    drop((lease, gauge));
}

/// A route's in-flight gauge, raised now and lowered when dropped.
pub(crate) struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(g: prometheus::IntGauge) -> InFlight {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A replica's answer body, holding its lease and the route's in-flight
/// gauge until it ends or is dropped, and driving the connection it came
/// on, which goes back to the downstream connection when the body ends.
struct Held {
    inner: Incoming,
    lease: Option<Lease>,
    gauge: Option<InFlight>,
    lent: Option<Lent>,
}

impl Held {
    fn end(&mut self, cleanly: bool) {
        self.lease = None;
        self.gauge = None;
        if let Some(lent) = self.lent.take() {
            if cleanly {
                lent.give_back();
            }
        }
    }
}

impl Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(lent) = self.lent.as_mut() {
            lent.drive(cx);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.end(true),
            Poll::Ready(Some(Err(_))) => self.end(false),
            _ => {}
        }
        polled.map(|f| f.map(|r| r.map_err(|e| Box::new(e) as BoxError)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // An empty body (204, HEAD, Content-Length: 0) may never be polled.
        let done = self.inner.is_end_stream();
        self.end(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_fields_and_hop_by_hop_fields_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn only_methods_safe_to_repeat_are_retried() {
        assert!(is_idempotent(&Method::GET) && is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST) && !is_idempotent(&Method::PATCH));
    }
}

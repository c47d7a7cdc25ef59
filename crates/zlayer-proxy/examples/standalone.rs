//! The node's ingress alone, in front of one upstream, for benchmarks
//! (`scripts/bench-proxy`): every host and path goes to UPSTREAM, on the
//! HTTP listener and on the HTTPS one (with CERT and KEY, served to every
//! client). The same code the node runs; only the routes are fixed.
//!
//! Usage: standalone HTTP_ADDR HTTPS_ADDR UPSTREAM CERT KEY

use std::sync::Arc;

use zlayer_proxy::{HostPattern, Policy, Proxy, ProxyConfig, RouteSpec, UpstreamProtocol};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [http, https, upstream, cert, key] = args.as_slice() else {
        return Err("usage: standalone HTTP_ADDR HTTPS_ADDR UPSTREAM CERT KEY".into());
    };
    let (proxy, refused) = Proxy::start(ProxyConfig {
        http: Some(http.parse()?),
        https: Some(https.parse()?),
        ..Default::default()
    })
    .await?;
    if let Some(e) = refused.first() {
        return Err(e.to_string().into());
    }
    let backend: std::net::SocketAddr = upstream.parse()?;
    let route = |tls| RouteSpec {
        name: "bench".into(),
        host: HostPattern::any(),
        path: "/".into(),
        tls,
        upstream: UpstreamProtocol::Http1,
        policy: Policy::PowerOfTwo,
        backends: vec![backend],
    };
    proxy.set_routes(vec![route(false), route(true)]);
    let key = zlayer_proxy::certified_key_from_files(cert.as_ref(), key.as_ref())?;
    proxy.set_certificates(vec![(HostPattern::parse("bench.test")?, Arc::new(key))]);
    eprintln!("standalone ingress on {http} and {https} -> {upstream}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

//! The remote CLI: the node API served on this node's HTTPS endpoint to
//! callers holding an API token, and the client side that reaches it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use zlayer_state::token::JoinToken;

use zlayer_control::{Control, ControlError, DEFAULT_PORT};

struct NodeApi<B>(Arc<B>);

impl<B: zlayer_api::Backend> zlayer_state::RemoteApi for NodeApi<B> {
    fn call(
        &self,
        req: Request<Incoming>,
        forwarded: bool,
    ) -> Pin<Box<dyn Future<Output = Response<zlayer_api::Body>> + Send>> {
        let origin = if forwarded {
            zlayer_api::Origin::Forwarded
        } else {
            zlayer_api::Origin::Remote
        };
        Box::pin(zlayer_api::answer(self.0.clone(), req, origin))
    }
}

/// Serves `backend` (the node API) under `/api/` on the control plane's
/// endpoint, for remote CLIs with an API token.
pub(crate) fn serve_api<B: zlayer_api::Backend>(control: &Control, backend: Arc<B>) {
    control.member.serve_api(Arc::new(NodeApi(backend)));
}

/// A client for the node API over HTTPS, authenticated by an API token
/// (`zla1.…`, from `zlayer token create --api`). It connects to `addr`
/// (`IP` or `IP:PORT`), else to the first member the token names, and
/// trusts only a server whose chain holds the cluster CA the token pins.
pub fn remote_client(token: &str, addr: Option<&str>) -> Result<zlayer_api::Client, ControlError> {
    let t = JoinToken::decode_api(token).map_err(|e| ControlError::Refused(e.to_string()))?;
    let addr = match addr {
        Some(a) if a.parse::<std::net::SocketAddr>().is_ok() => a.to_string(),
        Some(a) => format!("{a}:{DEFAULT_PORT}"),
        None => t.addrs.first().cloned().ok_or_else(|| {
            ControlError::Refused("the API token names no member; pass --remote ADDR".into())
        })?,
    };
    let (tls, _) = zlayer_state::transport::tls::pinned_client_config(&t.ca)
        .map_err(|e| ControlError::Refused(e.to_string()))?;
    Ok(zlayer_api::Client::remote(
        addr,
        tls,
        format!("{}.{}", t.id, t.secret),
    ))
}

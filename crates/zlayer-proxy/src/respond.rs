//! The one place where a failure becomes an HTTP answer.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::ProxyBody;

/// Why the proxy answered instead of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoHost,
    UnknownRoute,
    NoHealthyReplica,
    BodyTooLarge,
    TooManyHeaders,
    UpstreamTimeout,
    UpstreamFailed,
    RedirectToHttps,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NoHost => StatusCode::BAD_REQUEST,
            Refusal::UnknownRoute => StatusCode::NOT_FOUND,
            Refusal::NoHealthyReplica => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Refusal::RedirectToHttps => StatusCode::PERMANENT_REDIRECT,
        }
    }

    /// The label in metrics and the access log.
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::NoHost => "no_host",
            Refusal::UnknownRoute => "unknown_route",
            Refusal::NoHealthyReplica => "no_healthy_replica",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::TooManyHeaders => "too_many_headers",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::UpstreamFailed => "upstream_failed",
            Refusal::RedirectToHttps => "redirect_to_https",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::NoHost => "the request names no host\n",
            Refusal::UnknownRoute => "no route for this host and path\n",
            Refusal::NoHealthyReplica => "no healthy replica serves this route; retry shortly\n",
            Refusal::BodyTooLarge => "request body too large\n",
            Refusal::TooManyHeaders => "too many request header fields\n",
            Refusal::UpstreamTimeout => "the replica did not answer in time\n",
            Refusal::UpstreamFailed => "the replica could not be reached\n",
            Refusal::RedirectToHttps => "this host is served over https\n",
        }
    }

    /// The answer; `location` only matters for a redirect.
    pub fn respond(self, location: Option<&str>) -> Response<ProxyBody> {
        let mut r = Response::new(
            Full::new(Bytes::from_static(self.message().as_bytes()))
                .map_err(|never| match never {})
                .boxed(),
        );
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self == Refusal::NoHealthyReplica {
            h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if let Some(v) = location.and_then(|l| header::HeaderValue::from_str(l).ok()) {
            h.insert(header::LOCATION, v);
        }
        r
    }
}

/// An HTTP-01 key authorization, as the CA expects it.
pub fn acme_http01(key_authorization: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(key_authorization))
            .map_err(|never| match never {})
            .boxed(),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    r
}

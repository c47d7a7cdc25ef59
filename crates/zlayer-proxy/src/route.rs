//! Routes: which service answers a request, by host (exact first, then the
//! longest wildcard suffix) and then by the longest path prefix that ends on
//! a segment boundary (`/api` matches `/api` and `/api/x`, not `/apix`).
//! Pure: no I/O, so every rule is tested here.

use std::collections::HashMap;
use std::sync::Arc;

use crate::balance::Balancer;

/// A route's host as written in a spec: `shop.example.test` or `*.example.test`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// The suffix after `*`, with its leading dot: `.example.test`.
    Wildcard(String),
}

impl HostPattern {
    /// Lowercases and checks the name; `*` may only be the whole first label.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, s.clone()),
        };
        let labels_ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !labels_ok {
            return Err(format!(
                "`{s}` is not a host name (or `*.` and a host name for a wildcard)"
            ));
        }
        Ok(if wild {
            HostPattern::Wildcard(format!(".{name}"))
        } else {
            HostPattern::Exact(name)
        })
    }

    /// Every host: a route with a path and no host.
    pub fn any() -> HostPattern {
        HostPattern::Wildcard(String::new())
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            // One label or more in front of the suffix, as certificates do for one.
            HostPattern::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

/// How the proxy speaks to a route's replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 without TLS, by prior knowledge.
    H2c,
}

/// One route as the agent hands it over.
pub struct Route {
    /// `deployment/service/endpoint`: the label in metrics and the access log.
    pub name: String,
    pub host: HostPattern,
    /// Starts with `/`; `/` matches every path.
    pub path: String,
    pub upstream: UpstreamProtocol,
    pub balancer: Balancer,
    /// Its metric handles; `None` in tests.
    pub metrics: Option<crate::metrics::RouteMetrics>,
}

/// Every route of one listener, indexed for lookup.
#[derive(Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<Arc<Route>>>,
    /// Longest suffix first.
    wildcard: Vec<(String, Vec<Arc<Route>>)>,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<Route>>) -> RouteTable {
        let mut t = RouteTable::default();
        let mut wild: HashMap<String, Vec<Arc<Route>>> = HashMap::new();
        for r in routes {
            match &r.host {
                HostPattern::Exact(h) => t.exact.entry(h.clone()).or_default().push(r.clone()),
                HostPattern::Wildcard(s) => wild.entry(s.clone()).or_default().push(r.clone()),
            }
        }
        t.wildcard = wild.into_iter().collect();
        t.wildcard
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        for routes in t
            .exact
            .values_mut()
            .chain(t.wildcard.iter_mut().map(|(_, r)| r))
        {
            routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        }
        t
    }

    /// The route for `host` (lowercase, no port) and `path`.
    pub fn lookup(&self, host: &str, path: &str) -> Option<Arc<Route>> {
        if let Some(routes) = self.exact.get(host) {
            return longest_prefix(routes, path);
        }
        self.wildcard
            .iter()
            .find(|(s, _)| wildcard_hit(s, host))
            .and_then(|(_, routes)| longest_prefix(routes, path))
    }
}

fn wildcard_hit(suffix: &str, host: &str) -> bool {
    host.len() > suffix.len() && host.ends_with(suffix)
}

fn longest_prefix(routes: &[Arc<Route>], path: &str) -> Option<Arc<Route>> {
    routes.iter().find(|r| path_matches(&r.path, path)).cloned()
}

pub fn path_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The request's host, lowercase, without port or trailing dot.
pub fn normalize_host(raw: &str) -> String {
    let without_port = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        raw.rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(raw, |(h, _)| h)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Policy;

    fn route(name: &str, host: &str, path: &str) -> Arc<Route> {
        Arc::new(Route {
            name: name.into(),
            host: HostPattern::parse(host).unwrap(),
            path: path.into(),
            upstream: UpstreamProtocol::Http1,
            balancer: Balancer::new(Policy::RoundRobin, Vec::new()),
            metrics: None,
        })
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            route("root", "shop.test", "/"),
            route("api", "shop.test", "/api"),
            route("api-v2", "shop.test", "/api/v2/"),
            route("wild", "*.test", "/"),
            route("deeper", "*.eu.test", "/"),
        ])
    }

    fn hit(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.lookup(host, path).map(|r| r.name.clone())
    }

    #[test]
    fn the_longest_path_prefix_on_a_segment_boundary_wins() {
        let t = table();
        assert_eq!(hit(&t, "shop.test", "/").as_deref(), Some("root"));
        assert_eq!(hit(&t, "shop.test", "/api").as_deref(), Some("api"));
        assert_eq!(hit(&t, "shop.test", "/api/x").as_deref(), Some("api"));
        assert_eq!(hit(&t, "shop.test", "/apix").as_deref(), Some("root"));
        assert_eq!(hit(&t, "shop.test", "/api/v2").as_deref(), Some("api-v2"));
        assert_eq!(
            hit(&t, "shop.test", "/api/v2/items").as_deref(),
            Some("api-v2")
        );
    }

    #[test]
    fn exact_hosts_beat_wildcards_and_longer_wildcards_beat_shorter() {
        let t = table();
        assert_eq!(hit(&t, "other.test", "/").as_deref(), Some("wild"));
        assert_eq!(hit(&t, "a.eu.test", "/").as_deref(), Some("deeper"));
        assert_eq!(
            hit(&t, "test", "/"),
            None,
            "a wildcard needs a label in front"
        );
        assert_eq!(hit(&t, "shop.example", "/"), None);
    }

    #[test]
    fn an_exact_host_without_a_matching_path_does_not_fall_back_to_a_wildcard() {
        let t = RouteTable::new(vec![
            route("api", "shop.test", "/api"),
            route("wild", "*.test", "/"),
        ]);
        assert_eq!(hit(&t, "shop.test", "/other"), None);
    }

    #[test]
    fn hosts_are_compared_without_port_case_or_trailing_dot() {
        assert_eq!(normalize_host("Shop.Test:8443"), "shop.test");
        assert_eq!(normalize_host("shop.test."), "shop.test");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn host_patterns_refuse_what_is_not_a_name() {
        for bad in [
            "",
            "*",
            "a.*.test",
            "sh op.test",
            "-a.test",
            "a..test",
            "*.",
            "a/b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            HostPattern::parse("*.Example.test").unwrap(),
            HostPattern::Wildcard(".example.test".into())
        );
    }
}

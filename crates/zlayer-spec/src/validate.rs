//! Semantic checks that serde cannot express: ranges, cross-references,
//! uniqueness and cycles. Each problem names the key path it is about.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use crate::error::did_you_mean;
use crate::types::*;

pub(crate) struct Problem {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
    /// Point at the key rather than its value (for names of map entries).
    pub at_key: bool,
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(path, message, None);
    }
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            hint,
            at_key: false,
        });
    }
    fn add_at_key(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
            hint: None,
            at_key: true,
        });
    }
}

pub(crate) const SIGNALS: &[&str] = &[
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGWINCH",
];

pub(crate) fn validate(spec: &Spec) -> Vec<Problem> {
    let mut p = Problems::default();
    if spec.version != "v1" {
        p.push(
            "version",
            format!("unsupported version `{}`", spec.version),
            Some("only `v1` exists".into()),
        );
    }
    if !is_dns_label(&spec.deployment) {
        p.push(
            "deployment",
            format!("`{}` is not a DNS label", spec.deployment),
            Some(DNS_HINT.into()),
        );
    }
    if spec.services.is_empty() {
        p.add("services", "at least one service is required");
    }
    let mut claimed: HashMap<Claim, String> = HashMap::new();
    for (name, svc) in &spec.services {
        let at = format!("services.{name}");
        if !is_dns_label(name) {
            p.0.push(Problem {
                path: at.clone(),
                message: format!("service name `{name}` is not a DNS label"),
                hint: Some(DNS_HINT.into()),
                at_key: true,
            });
        }
        check_service(&mut p, &at, svc);
        for (i, ep) in svc.endpoints.iter().enumerate() {
            let Some(claim) = claim(ep) else { continue };
            let Some(other) = claimed.insert(claim.clone(), format!("{name}/{}", ep.name)) else {
                continue;
            };
            let at = format!("{at}.endpoints[{i}]");
            match claim {
                Claim::Route(host, path) => p.push(
                    at,
                    format!("route {host}{path} is already served by `{other}`"),
                    Some("give one of them another `host` or `path`".into()),
                ),
                port => p.add(at, format!("{port} is already published by `{other}`")),
            }
        }
    }
    check_depends(&mut p, spec);
    check_network_policy(&mut p, spec);
    p.0
}

/// Spec paths that pass validation but look like a mistake, each with why:
/// an env name that looks secret (`*_KEY`, `*_TOKEN`, `*PASSWORD*`,
/// `*SECRET*`) whose value is a literal or `$E:`, which sit in plain text
/// in the cluster state and the container's bundle.
pub fn warnings(spec: &Spec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, svc) in &spec.services {
        for (k, v) in &svc.env {
            let upper = k.to_ascii_uppercase();
            let looks_secret = upper.ends_with("_KEY")
                || upper.ends_with("_TOKEN")
                || upper.contains("PASSWORD")
                || upper.contains("SECRET");
            if looks_secret && !v.starts_with("$S:") {
                let from = if v.starts_with("$E:") {
                    "`$E:`"
                } else {
                    "a literal"
                };
                out.push((
                    format!("services.{name}.env.{k}"),
                    format!("`{k}` looks like a secret but takes {from}, which is kept in plain text; `zlayer secret create` it and use `$S:NAME`"),
                ));
            }
        }
    }
    out
}

/// What an endpoint takes on every node, which no other endpoint of the
/// cluster may take too: an ingress route, or a published host port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Claim {
    /// `(scheme://host, path)`, see [`route_key`].
    Route(String, String),
    /// A host port; TCP and UDP ports of one number are different ports.
    Port { udp: bool, port: u16 },
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Route(host, path) => write!(f, "route {host}{path}"),
            Claim::Port { udp: false, port } => write!(f, "host port {port}"),
            Claim::Port { udp: true, port } => write!(f, "host port {port}/udp"),
        }
    }
}

/// What `ep` claims, if anything: a route, or a public port.
pub fn claim(ep: &Endpoint) -> Option<Claim> {
    if ep.is_ingress_route() {
        let (host, path) = route_key(ep);
        return Some(Claim::Route(host, path));
    }
    let port = ep.host_port.unwrap_or(ep.port);
    (ep.expose == Expose::Public && (1..=65535).contains(&port)).then(|| Claim::Port {
        udp: ep.protocol == Protocol::Udp,
        port: ep.published_port(),
    })
}

/// Every claim of a spec, with the `service/endpoint` that makes it.
pub fn claims(spec: &Spec) -> Vec<(Claim, String)> {
    spec.services
        .iter()
        .flat_map(|(svc, s)| {
            s.endpoints
                .iter()
                .filter_map(move |e| Some((claim(e)?, format!("{svc}/{}", e.name))))
        })
        .collect()
}

/// What makes an ingress route unique: (scheme://host, path), host
/// lowercased and path without its trailing `/`.
pub fn route_key(ep: &Endpoint) -> (String, String) {
    let scheme = if ep.protocol == Protocol::Https {
        "https"
    } else {
        "http"
    };
    let host = ep.host.as_deref().unwrap_or("*").to_ascii_lowercase();
    let path = ep.path.as_deref().unwrap_or("/").trim_end_matches('/');
    (
        format!("{scheme}://{host}"),
        if path.is_empty() {
            "/".into()
        } else {
            path.to_string()
        },
    )
}

/// Each `ingress_from` entry names a service of this spec, or
/// `DEPLOYMENT/SERVICE` of another deployment (checked when it runs).
fn check_network_policy(p: &mut Problems, spec: &Spec) {
    let names: Vec<&str> = spec.services.keys().map(String::as_str).collect();
    for (name, svc) in &spec.services {
        let Some(policy) = &svc.network_policy else {
            continue;
        };
        for (i, from) in policy.ingress_from.iter().enumerate() {
            let at = format!("services.{name}.network_policy.ingress_from[{i}]");
            match from.split_once('/') {
                Some((dep, other)) if is_dns_label(dep) && is_dns_label(other) => {}
                Some(_) => p.add(
                    at,
                    format!("`{from}` is not DEPLOYMENT/SERVICE: {DNS_HINT}"),
                ),
                None if spec.services.contains_key(from) => {}
                None => {
                    let hint = did_you_mean(from, names.iter().copied()).or_else(|| {
                        Some(format!(
                            "services in this spec: {}; another deployment's service is DEPLOYMENT/SERVICE",
                            names.join(", ")
                        ))
                    });
                    p.push(at, format!("unknown service `{from}`"), hint);
                }
            }
        }
    }
}

const DNS_HINT: &str = "use lowercase letters, digits and `-`, at most 63 characters, starting and ending with a letter or digit";

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_secret_files(p: &mut Problems, at: &str, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        let here = format!("{at}.secrets[{i}]");
        if !is_dns_label(name) {
            p.push(
                here,
                format!("secret name `{name}` is not a DNS label"),
                Some(DNS_HINT.into()),
            );
        } else if names[..i].contains(name) {
            p.add(here, format!("secret `{name}` is listed twice"));
        }
    }
}

fn check_file_mounts(p: &mut Problems, at: &str, files: &[FileMount]) {
    for (i, f) in files.iter().enumerate() {
        let here = format!("{at}.files[{i}]");
        if !f.target.starts_with('/') || f.target.split('/').any(|c| c == "..") || f.target == "/" {
            p.add(
                format!("{here}.target"),
                format!("`{}` must be an absolute file path without `..`", f.target),
            );
        } else if files[..i].iter().any(|o| o.target == f.target) {
            p.add(
                format!("{here}.target"),
                format!("`{}` is listed twice", f.target),
            );
        }
        match (&f.config, &f.content) {
            (Some(name), None) if !is_dns_label(name) => p.push(
                format!("{here}.config"),
                format!("config name `{name}` is not a DNS label"),
                Some(DNS_HINT.into()),
            ),
            (Some(_), None) | (None, Some(_)) => {}
            _ => p.push(
                here,
                "give a file exactly one of `config` and `content`",
                Some("e.g. `{ target: /etc/app.yaml, config: app-config }` or `{ target: /etc/motd, content: \"hi\" }`".into()),
            ),
        }
    }
}

fn check_service(p: &mut Problems, at: &str, svc: &Service) {
    check_image(p, at, &svc.image);
    for (k, v) in &svc.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            p.add_at_key(
                format!("{at}.env.{k}"),
                format!("`{k}` is not a valid environment variable name"),
            );
        }
        if let Some(secret) = v.strip_prefix("$S:") {
            if !is_dns_label(secret) {
                p.push(
                    format!("{at}.env.{k}"),
                    format!("secret name `{secret}` is not a DNS label"),
                    Some(DNS_HINT.into()),
                );
            }
        } else if let Some(var) = v.strip_prefix("$E:") {
            if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                p.add(
                    format!("{at}.env.{k}"),
                    format!("`{var}` is not a valid environment variable name"),
                );
            }
        }
    }
    check_secret_files(p, at, &svc.secrets);
    if let Some(name) = svc.image.pull_secret.as_ref().filter(|n| !is_dns_label(n)) {
        p.push(
            format!("{at}.image.pull_secret"),
            format!("secret name `{name}` is not a DNS label"),
            Some(DNS_HINT.into()),
        );
    }
    check_file_mounts(p, at, &svc.files);
    check_resources(p, at, &svc.resources);
    check_endpoints(p, at, &svc.endpoints);
    check_scale(p, &format!("{at}.scale"), &svc.scale);
    for (key, probe) in [
        ("health", &svc.health),
        ("readiness", &svc.readiness),
        ("liveness", &svc.liveness),
    ] {
        if let Some(h) = probe {
            check_health(p, &format!("{at}.{key}"), h);
        }
    }
    if svc.health.is_some() && (svc.readiness.is_some() || svc.liveness.is_some()) {
        p.push(
            format!("{at}.health"),
            "`health` is both the readiness and the liveness probe, so it cannot sit beside `readiness` or `liveness`",
            Some("rename it to the one of the two it should be".into()),
        );
    }
    check_storage(p, at, &svc.storage);
    if svc.update.parallelism < 1 {
        p.add(
            format!("{at}.update.parallelism"),
            format!(
                "parallelism must be at least 1, got {}",
                svc.update.parallelism
            ),
        );
    }
    if svc.update.timeout.0.is_zero() {
        p.add(
            format!("{at}.update.timeout"),
            "timeout must be more than 0",
        );
    }
    match (svc.rtype, &svc.schedule) {
        (ResourceType::Cron, None) => p.push(
            format!("{at}.schedule"),
            "`rtype: cron` needs a `schedule`",
            Some("add e.g. schedule: \"0 0 3 * * * *\"".into()),
        ),
        (ResourceType::Cron, Some(s)) => {
            if let Err(e) = cron::Schedule::from_str(s) {
                p.push(
                    format!("{at}.schedule"),
                    format!("invalid cron schedule `{s}`: {}", last_line(&e.to_string())),
                    Some(
                        "fields are: seconds minutes hours day-of-month month day-of-week [year]"
                            .into(),
                    ),
                );
            }
        }
        (_, Some(_)) => p.add(
            format!("{at}.schedule"),
            "`schedule` applies only to `rtype: cron`",
        ),
        _ => {}
    }
    check_job_fields(p, at, svc);
    if svc.concurrency.is_some() && svc.rtype != ResourceType::Cron {
        p.push(
            format!("{at}.concurrency"),
            "`concurrency` applies only to `rtype: cron`",
            Some("remove it, or set `rtype: cron`".into()),
        );
    }
    if let Some(sig) = &svc.stop.signal {
        if !SIGNALS.contains(&sig.as_str()) {
            let hint = did_you_mean(sig, SIGNALS.iter().copied())
                .unwrap_or_else(|| format!("use one of {}", SIGNALS.join(", ")));
            p.push(
                format!("{at}.stop.signal"),
                format!("unknown signal `{sig}`"),
                Some(hint),
            );
        }
    }
    if let Some(u) = &svc.user {
        if u.is_empty() || u.split(':').count() > 2 {
            p.add(
                format!("{at}.user"),
                format!("invalid user `{u}`: write `uid` or `uid:gid`"),
            );
        }
    }
}

fn check_image(p: &mut Problems, at: &str, image: &Image) {
    let n = &image.name;
    let ok = !n.is_empty()
        && !n.starts_with(['/', ':', '@', '.', '-'])
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        && !n
            .bytes()
            .any(|b| b.is_ascii_uppercase() && !n.contains('@'));
    if !ok {
        p.push(
            format!("{at}.image.name"),
            format!("`{n}` is not a valid image reference"),
            Some(
                "write e.g. `busybox`, `demo:latest` or `registry.local:5000/team/app:1.0`".into(),
            ),
        );
    }
}

/// A request is at most its limit (a node could not give a replica more
/// than the cgroup lets it use), as in Kubernetes.
fn check_requests(p: &mut Problems, at: &str, req: &Requests, r: &Resources) {
    if let Some(cpu) = req.cpu {
        if !(cpu > 0.0 && cpu <= 1024.0) {
            p.add(
                format!("{at}.resources.requests.cpu"),
                format!("a cpu request must be more than 0 and at most 1024 cores, got {cpu}"),
            );
        } else if let Some(limit) = r.cpu.filter(|limit| cpu > *limit) {
            p.push(
                format!("{at}.resources.requests.cpu"),
                format!("the cpu request {cpu} is more than the limit {limit}"),
                Some("lower the request, or raise `resources.cpu`".into()),
            );
        }
    }
    if let (Some(m), Some(limit)) = (req.memory, r.memory) {
        if m > limit {
            p.push(
                format!("{at}.resources.requests.memory"),
                format!("the memory request {m} is more than the limit {limit}"),
                Some("lower the request, or raise `resources.memory`".into()),
            );
        }
    }
}

fn check_resources(p: &mut Problems, at: &str, r: &Resources) {
    if let Some(cpu) = r.cpu {
        if !(cpu > 0.0 && cpu <= 1024.0) {
            p.add(
                format!("{at}.resources.cpu"),
                format!("cpu must be more than 0 and at most 1024 cores, got {cpu}"),
            );
        }
    }
    if let Some(m) = r.memory {
        if m.0 < 4 << 20 {
            p.add(
                format!("{at}.resources.memory"),
                format!("memory must be at least 4Mi, got {m}"),
            );
        }
    }
    if let Some(pids) = r.pids {
        if pids < 1 {
            p.add(
                format!("{at}.resources.pids"),
                format!("pids must be at least 1, got {pids}"),
            );
        }
    }
    if let Some(req) = &r.requests {
        check_requests(p, at, req, r);
    }
    if let Some(g) = &r.gpu {
        if g.count == 0 {
            p.add(
                format!("{at}.resources.gpu.count"),
                "gpu count must be at least 1 (leave out `gpu` for none)",
            );
        }
        const VENDORS: [&str; 3] = ["nvidia", "amd", "intel"];
        if !VENDORS.contains(&g.vendor.as_str()) {
            p.push(
                format!("{at}.resources.gpu.vendor"),
                format!("unknown gpu vendor `{}`", g.vendor),
                did_you_mean(&g.vendor, VENDORS).or(Some("use nvidia, amd or intel".into())),
            );
        }
    }
}

fn check_endpoints(p: &mut Problems, at: &str, eps: &[Endpoint]) {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ports: BTreeMap<(bool, i64), &str> = BTreeMap::new();
    for (i, ep) in eps.iter().enumerate() {
        let ep_at = format!("{at}.endpoints[{i}]");
        if !is_dns_label(&ep.name) {
            p.push(
                format!("{ep_at}.name"),
                format!("endpoint name `{}` is not a DNS label", ep.name),
                Some(DNS_HINT.into()),
            );
        }
        if let Some(prev) = names.insert(&ep.name, i) {
            p.add(
                format!("{ep_at}.name"),
                format!(
                    "duplicate endpoint name `{}` (also endpoints[{prev}])",
                    ep.name
                ),
            );
        }
        if !(1..=65535).contains(&ep.port) {
            p.add(
                format!("{ep_at}.port"),
                format!("port must be between 1 and 65535, got {}", ep.port),
            );
        } else if let Some(other) = (!ep.is_ingress_route())
            .then(|| ports.insert((ep.protocol == Protocol::Udp, ep.port), &ep.name))
            .flatten()
        {
            p.add(
                format!("{ep_at}.port"),
                format!(
                    "duplicate endpoint port {} (also used by endpoint `{other}`)",
                    ep.port
                ),
            );
        }
        if let Some(hp) = ep.host_port {
            if !(1..=65535).contains(&hp) {
                p.add(
                    format!("{ep_at}.host_port"),
                    format!("host_port must be between 1 and 65535, got {hp}"),
                );
            }
            if ep.expose != Expose::Public {
                p.add(
                    format!("{ep_at}.host_port"),
                    "`host_port` needs `expose: public`",
                );
            }
        }
        if let Some(path) = &ep.path {
            if !path.starts_with('/') {
                p.add(
                    format!("{ep_at}.path"),
                    format!("path must start with `/`, got `{path}`"),
                );
            }
        }
        if let Some(host) = &ep.host {
            let name = host.strip_prefix("*.").unwrap_or(host);
            if name.is_empty()
                || name.len() > 253
                || !name
                    .split('.')
                    .all(|l| is_dns_label(&l.to_ascii_lowercase()))
            {
                p.push(
                    format!("{ep_at}.host"),
                    format!("`{host}` is not a valid host name"),
                    Some("write a name like `shop.example.test`, or `*.example.test` for every name under it".into()),
                );
            }
        }
        check_route_fields(p, &ep_at, ep);
        if (ep.host.is_some() || ep.path.is_some())
            && matches!(ep.protocol, Protocol::Tcp | Protocol::Udp)
        {
            p.add(
                ep_at.clone(),
                "`host` and `path` apply only to http and https endpoints",
            );
        }
    }
}

/// Fields that only the ingress reads belong to routed http/https endpoints.
fn check_route_fields(p: &mut Problems, ep_at: &str, ep: &Endpoint) {
    let http = matches!(ep.protocol, Protocol::Http | Protocol::Https);
    if (ep.host.is_some() || ep.path.is_some()) && http && ep.expose != Expose::Public {
        p.push(
            ep_at.to_string(),
            "`host` and `path` route through the ingress, which serves only public endpoints",
            Some("add `expose: public`, or remove `host` and `path`".into()),
        );
    }
    if !http && (ep.balance != Balance::default() || ep.upstream != Upstream::default()) {
        p.add(
            ep_at.to_string(),
            "`balance` and `upstream` apply only to http and https endpoints",
        );
    }
    if let Some(tls) = &ep.tls {
        if ep.protocol != Protocol::Https {
            p.push(
                format!("{ep_at}.tls"),
                "`tls` applies only to `protocol: https` endpoints",
                Some("set `protocol: https`, or remove `tls`".into()),
            );
        }
        let files = [("cert", &tls.cert), ("key", &tls.key)];
        for (field, path) in files.iter().filter_map(|(f, p)| Some((f, p.as_ref()?))) {
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                p.add(
                    format!("{ep_at}.tls.{field}"),
                    format!("`{path}` must be an absolute path without `..`"),
                );
            }
        }
        let secrets = [
            ("cert_secret", &tls.cert_secret),
            ("key_secret", &tls.key_secret),
        ];
        for (field, name) in secrets.iter().filter_map(|(f, n)| Some((f, n.as_ref()?))) {
            if !is_dns_label(name) {
                p.push(
                    format!("{ep_at}.tls.{field}"),
                    format!("secret name `{name}` is not a DNS label"),
                    Some(DNS_HINT.into()),
                );
            }
        }
        let has_files = tls.cert.is_some() || tls.key.is_some();
        let has_secrets = tls.cert_secret.is_some() || tls.key_secret.is_some();
        let sources = [tls.acme, has_files, has_secrets];
        if sources.iter().filter(|s| **s).count() > 1 {
            p.push(
                format!("{ep_at}.tls"),
                "`acme: true`, certificate files and certificate secrets exclude each other",
                Some(
                    "keep one: `acme: true`, `cert` and `key`, or `cert_secret` and `key_secret`"
                        .into(),
                ),
            );
        } else if (has_files && (tls.cert.is_none() || tls.key.is_none()))
            || (has_secrets && (tls.cert_secret.is_none() || tls.key_secret.is_none()))
            || !(tls.acme || has_files || has_secrets)
        {
            p.push(
                format!("{ep_at}.tls"),
                "name both `cert` and `key`, both `cert_secret` and `key_secret`, or set `acme: true`",
                Some(
                    "e.g. `tls: { cert: /etc/zlayer/tls/shop.crt, key: /etc/zlayer/tls/shop.key }`"
                        .into(),
                ),
            );
        }
        if tls.acme && ep.host.as_deref().is_none_or(|h| h.contains('*')) {
            p.push(
                format!("{ep_at}.host"),
                "an ACME certificate needs an exact `host`: HTTP-01 and TLS-ALPN-01 cannot prove a wildcard",
                Some("name the host, e.g. `host: shop.example.com`, or use certificate files for a wildcard".into()),
            );
        }
    }
    if ep.protocol == Protocol::Https
        && ep.expose == Expose::Public
        && ep.path.is_some()
        && ep.host.is_none()
    {
        p.push(
            ep_at.to_string(),
            "an https route needs a `host`: TLS picks its certificate by name",
            Some("add e.g. `host: shop.example.test`".into()),
        );
    }
}

fn check_scale(p: &mut Problems, at: &str, s: &Scale) {
    match s.mode {
        ScaleMode::Fixed => {
            for (key, set) in [
                ("min", s.min.is_some()),
                ("max", s.max.is_some()),
                ("cooldown", s.cooldown.is_some()),
                ("targets", s.targets.is_some()),
            ] {
                if set {
                    p.push(
                        format!("{at}.{key}"),
                        format!("`{key}` applies only to `mode: adaptive`"),
                        Some("set `mode: adaptive` or remove it".into()),
                    );
                }
            }
            match s.replicas {
                Some(n) if n < 0 => p.add(
                    format!("{at}.replicas"),
                    format!("replicas must be 0 or more, got {n}"),
                ),
                Some(n) if n > 10_000 => p.add(
                    format!("{at}.replicas"),
                    format!("replicas must be at most 10000, got {n}"),
                ),
                _ => {}
            }
        }
        ScaleMode::Adaptive => {
            if s.replicas.is_some() {
                p.push(
                    format!("{at}.replicas"),
                    "`replicas` applies only to `mode: fixed`",
                    Some("use `min` and `max`".into()),
                );
            }
            let min = s.min.unwrap_or(0);
            let Some(max) = s.max else {
                p.add(at.to_string(), "`mode: adaptive` needs `max`");
                return;
            };
            if min < 0 {
                p.add(
                    format!("{at}.min"),
                    format!("min must be 0 or more, got {min}"),
                );
            }
            if max < 1 || max < min {
                p.add(
                    format!("{at}.max"),
                    format!("max must be at least 1 and at least min ({min}), got {max}"),
                );
            }
            if let Some(t) = &s.targets {
                for (key, v) in [("cpu", t.cpu), ("memory", t.memory)] {
                    if let Some(v) = v {
                        if !(v > 0.0 && v <= 100.0) {
                            p.add(
                                format!("{at}.targets.{key}"),
                                format!("{key} target is a percentage between 1 and 100, got {v}"),
                            );
                        }
                    }
                }
                if t.rps.is_some_and(|v| v <= 0.0) {
                    p.add(
                        format!("{at}.targets.rps"),
                        "rps target must be more than 0",
                    );
                }
            }
        }
    }
}

fn check_health(p: &mut Problems, at: &str, h: &Health) {
    if h.retries < 1 {
        p.add(
            format!("{at}.retries"),
            format!("retries must be at least 1, got {}", h.retries),
        );
    }
    if h.start_interval.is_some_and(|d| d.0.is_zero()) {
        p.add(
            format!("{at}.start_interval"),
            "start_interval must be more than 0",
        );
    }
    for (key, d) in [("interval", h.interval), ("timeout", h.timeout)] {
        if d.0.is_zero() {
            p.add(format!("{at}.{key}"), format!("{key} must be more than 0"));
        }
    }
    let c = &h.check;
    let cat = format!("{at}.check");
    let extra = |p: &mut Problems, key: &str, set: bool| {
        if set {
            p.add(
                format!("{cat}.{key}"),
                format!("`{key}` does not apply to a `{}` check", check_name(c.kind)),
            );
        }
    };
    match c.kind {
        CheckType::Http => {
            match &c.url {
                None => p.push(
                    cat.clone(),
                    "an http check needs `url`",
                    Some("add e.g. url: http://localhost:8080/health".into()),
                ),
                Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => p.add(
                    format!("{cat}.url"),
                    format!("url must start with http:// or https://, got `{u}`"),
                ),
                _ => {}
            }
            extra(p, "port", c.port.is_some());
            extra(p, "command", c.command.is_some());
        }
        CheckType::Tcp => {
            match c.port {
                None => p.add(cat.clone(), "a tcp check needs `port`"),
                Some(port) if !(1..=65535).contains(&port) => p.add(
                    format!("{cat}.port"),
                    format!("port must be between 1 and 65535, got {port}"),
                ),
                _ => {}
            }
            extra(p, "url", c.url.is_some());
            extra(p, "command", c.command.is_some());
            extra(p, "expect_status", c.expect_status.is_some());
        }
        CheckType::Command => {
            if c.command.as_ref().is_none_or(|v| v.is_empty()) {
                p.add(cat.clone(), "a command check needs a non-empty `command`");
            }
            extra(p, "url", c.url.is_some());
            extra(p, "port", c.port.is_some());
            extra(p, "expect_status", c.expect_status.is_some());
        }
    }
}

fn check_name(k: CheckType) -> &'static str {
    match k {
        CheckType::Http => "http",
        CheckType::Tcp => "tcp",
        CheckType::Command => "command",
    }
}

/// The smallest filesystem a sized named volume is made as.
const MIN_VOLUME_BYTES: u64 = 4 << 20;

fn check_storage(p: &mut Problems, at: &str, storage: &[Storage]) {
    let mut targets = BTreeSet::new();
    for (i, s) in storage.iter().enumerate() {
        let sat = format!("{at}.storage[{i}]");
        if !s.target.starts_with('/') {
            p.add(
                format!("{sat}.target"),
                format!("target must be an absolute path, got `{}`", s.target),
            );
        } else if !targets.insert(s.target.trim_end_matches('/')) {
            p.add(
                format!("{sat}.target"),
                format!("`{}` is mounted twice", s.target),
            );
        }
        match s.kind {
            StorageType::Named => match &s.name {
                None => p.add(sat.clone(), "a named volume needs `name`"),
                Some(n) if !is_dns_label(n) => p.push(
                    format!("{sat}.name"),
                    format!("volume name `{n}` is not a DNS label"),
                    Some(DNS_HINT.into()),
                ),
                _ if s.size.is_some_and(|b| b.0 < MIN_VOLUME_BYTES) => p.add(
                    format!("{sat}.size"),
                    "a named volume's size is the size of its filesystem; give at least 4Mi",
                ),
                _ => {}
            },
            StorageType::Bind => match &s.source {
                None => p.add(sat.clone(), "a bind mount needs `source`"),
                Some(src) if !src.starts_with('/') => p.add(
                    format!("{sat}.source"),
                    format!("source must be an absolute path, got `{src}`"),
                ),
                _ => {}
            },
            StorageType::Tmpfs => {}
        }
        if s.kind != StorageType::Bind && s.source.is_some() {
            p.add(
                format!("{sat}.source"),
                "`source` applies only to `type: bind`",
            );
        }
        if s.kind != StorageType::Named && s.name.is_some() {
            p.add(
                format!("{sat}.name"),
                "`name` applies only to `type: named`",
            );
        }
    }
}

fn check_depends(p: &mut Problems, spec: &Spec) {
    let names: Vec<&str> = spec.services.keys().map(String::as_str).collect();
    for (name, svc) in &spec.services {
        for (i, d) in svc.depends.iter().enumerate() {
            let at = format!("services.{name}.depends[{i}].service");
            if d.service == *name {
                p.add(at, format!("service `{name}` depends on itself"));
            } else if !spec.services.contains_key(&d.service) {
                let hint = did_you_mean(&d.service, names.iter().copied())
                    .or_else(|| Some(format!("services in this spec: {}", names.join(", "))));
                p.push(
                    at,
                    format!("depends on unknown service `{}`", d.service),
                    hint,
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(spec) {
        p.add(
            format!("services.{}.depends", cycle[0]),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// The first dependency cycle found, as a closed path `a -> b -> a`.
fn find_cycle(spec: &Spec) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        spec: &Spec,
        n: &str,
        marks: &mut HashMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Active => {
                let start = stack.iter().position(|s| s == n)?;
                let mut c = stack[start..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            Mark::New => {}
        }
        marks.insert(n.to_string(), Mark::Active);
        stack.push(n.to_string());
        for d in spec
            .services
            .get(n)
            .map(|s| s.depends.as_slice())
            .unwrap_or(&[])
        {
            if d.service != n && spec.services.contains_key(&d.service) {
                if let Some(c) = visit(spec, &d.service, marks, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for name in spec.services.keys() {
        if let Some(c) = visit(spec, name, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// Services in an order where each comes after everything it depends on.
pub fn start_order(spec: &Spec) -> Vec<String> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < spec.services.len() {
        let before = order.len();
        for (name, svc) in &spec.services {
            if !done.contains(name)
                && svc
                    .depends
                    .iter()
                    .all(|d| done.contains(&d.service) || !spec.services.contains_key(&d.service))
            {
                done.insert(name.clone());
                order.push(name.clone());
            }
        }
        if order.len() == before {
            break; // a cycle; validation rejects it before this is used
        }
    }
    order
}

/// `completions`, `parallelism`, `retries` and `deadline` belong to jobs, and none may be 0.
fn check_job_fields(p: &mut Problems, at: &str, svc: &Service) {
    if svc.rtype != ResourceType::Job {
        for (key, set) in [
            ("completions", svc.completions.is_some()),
            ("parallelism", svc.parallelism.is_some()),
            ("retries", svc.retries.is_some()),
            ("deadline", svc.deadline.is_some()),
        ] {
            if set {
                p.push(
                    format!("{at}.{key}"),
                    format!("`{key}` applies only to `rtype: job`"),
                    Some("remove it, or set `rtype: job`".into()),
                );
            }
        }
    }
    if svc.deadline.is_some_and(|d| d.0.is_zero()) {
        p.add(format!("{at}.deadline"), "deadline must be more than 0");
    }
    for (key, value) in [
        ("completions", svc.completions),
        ("parallelism", svc.parallelism),
    ] {
        if value == Some(0) {
            p.add(format!("{at}.{key}"), format!("{key} must be at least 1"));
        }
    }
    if svc.completions.is_some() && svc.scale != Scale::default() {
        p.push(
            format!("{at}.scale"),
            "a job's task count is its `completions`, so it cannot also have a `scale`",
            Some("remove `scale`".into()),
        );
    }
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

//! What the node's ingress serves: one route per routed endpoint (an
//! `http`/`https` endpoint with `expose: public` and a `host` or `path`)
//! with the serving replicas of every node behind it, and for each `https`
//! host its certificate, read from the files the endpoint names or issued
//! (under a prefix the node allows, never its data dir) or issued
//! by the cluster's ingress CA (kept under `<data>/ingress/dev/` and
//! renewed when a third of its life is left), obtained by ACME and
//! shared through the cluster state (`tls: { acme: true }`), or taken from
//! two secrets (`tls: { cert_secret, key_secret }`), held in memory only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zlayer_model::ReplicaReport;
use zlayer_proxy::{CertifiedKey, HostPattern, Policy, RouteSpec, UpstreamProtocol};
use zlayer_spec::{Balance, Endpoint, Protocol, Upstream};

use crate::agent::Agent;
use crate::reconcile::Specs;
use crate::state::Replica;

/// Certificates are read again this often, to pick up renewed files.
const RELOAD_MS: u64 = 60_000;
/// A load that failed for some host is tried again this soon: a fetch
/// from the leader can fail for a moment (an election, an apply not yet
/// seen there) and must not leave the host without a certificate for a
/// whole [`RELOAD_MS`].
const RETRY_MS: u64 = 2_000;

/// Where each https host's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CertSource {
    Files {
        cert: String,
        key: String,
    },
    Dev,
    /// From the cluster state, as issued at this time (0: none yet).
    Acme {
        issued_ms: u64,
    },
    /// From two secrets, at these versions (0: missing).
    Secrets {
        workload: (String, String),
        cert: (String, u64),
        key: (String, u64),
    },
}

/// The certificates last handed to the proxy, and when.
#[derive(Default)]
pub(crate) struct CertState {
    sources: BTreeMap<String, CertSource>,
    loaded_ms: u64,
    /// Whether the last load failed for some host.
    failed: bool,
    /// Messages already logged, so a bad file is reported once.
    reported: std::collections::HashSet<String>,
    /// ACME certificates already opened, by host, with when each was
    /// issued: opening may ask the leader, so it happens once per issue.
    acme: BTreeMap<String, (u64, Arc<CertifiedKey>)>,
    /// Certificates opened from secrets, by host, with the source they
    /// were opened from: a worker asks the leader, so once per version.
    from_secrets: BTreeMap<String, (CertSource, Arc<CertifiedKey>)>,
}

impl Agent {
    pub(crate) fn ingress_routes(
        &self,
        specs: &Specs,
        replicas: &BTreeMap<String, Replica>,
        elsewhere: &[ReplicaReport],
    ) -> Vec<RouteSpec> {
        let mut routes = Vec::new();
        for (_, spec) in specs {
            for (name, svc) in &spec.services {
                for ep in svc.endpoints.iter().filter(|e| e.is_ingress_route()) {
                    let Some(host) = host_of(ep) else { continue };
                    routes.push(RouteSpec {
                        name: format!("{}/{name}/{}", spec.deployment, ep.name),
                        host,
                        path: ep.path.clone().unwrap_or_else(|| "/".into()),
                        tls: ep.protocol == Protocol::Https,
                        upstream: match ep.upstream {
                            Upstream::Http1 => UpstreamProtocol::Http1,
                            Upstream::H2c => UpstreamProtocol::H2c,
                        },
                        policy: match ep.balance {
                            Balance::PowerOfTwo => Policy::PowerOfTwo,
                            Balance::RoundRobin => Policy::RoundRobin,
                        },
                        backends: self.endpoint_backends(
                            &spec.deployment,
                            name,
                            ep,
                            replicas,
                            elsewhere,
                        ),
                    });
                }
            }
        }
        routes
    }

    /// Hands the proxy a certificate for every https host, when the hosts
    /// or their sources changed or the last load is a minute old.
    pub(crate) async fn refresh_certificates(&self, specs: &Specs) {
        let Some(proxy) = &self.ingress else { return };
        let mut sources: BTreeMap<String, CertSource> = BTreeMap::new();
        let mut problems = Vec::new();
        for (_, spec) in specs {
            for (svc_name, svc) in &spec.services {
                for ep in svc.endpoints.iter().filter(|e| e.is_ingress_route()) {
                    let (Protocol::Https, Some(host)) = (ep.protocol, &ep.host) else {
                        continue;
                    };
                    let source = match &ep.tls {
                        Some(t) if t.acme => CertSource::Acme {
                            issued_ms: self.cluster.acme_issued(host).unwrap_or(0),
                        },
                        Some(zlayer_spec::EndpointTls {
                            cert_secret: Some(cert),
                            key_secret: Some(key),
                            ..
                        }) => {
                            let names = [cert.clone(), key.clone()].into_iter().collect();
                            let versions = self.cluster.secret_versions(&names);
                            let at =
                                |n: &String| (n.clone(), versions.get(n).copied().unwrap_or(0));
                            CertSource::Secrets {
                                workload: (spec.deployment.clone(), svc_name.clone()),
                                cert: at(cert),
                                key: at(key),
                            }
                        }
                        Some(t) => CertSource::Files {
                            cert: t.cert.clone().unwrap_or_default(),
                            key: t.key.clone().unwrap_or_default(),
                        },
                        None => CertSource::Dev,
                    };
                    sources.insert(host.to_ascii_lowercase(), source);
                }
            }
        }
        let now = crate::clock::now_ms();
        {
            let state = self.certs.lock().await;
            let wait = if state.failed { RETRY_MS } else { RELOAD_MS };
            if state.sources == sources && now.saturating_sub(state.loaded_ms) < wait {
                return;
            }
        }
        let mut loaded: Vec<(HostPattern, Arc<CertifiedKey>)> = Vec::new();
        for (host, source) in &sources {
            let Ok(pattern) = HostPattern::parse(host) else {
                continue;
            };
            let key = match source {
                CertSource::Files { cert, key } => self.certificate_files(host, cert, key),
                CertSource::Dev => self.dev_certificate(host).await,
                CertSource::Acme { issued_ms: 0 } => {
                    tracing::info!("https host {host}: waiting for its ACME certificate");
                    continue;
                }
                CertSource::Acme { issued_ms } => {
                    match self.acme_certificate(host, *issued_ms).await {
                        Ok(k) => {
                            loaded.push((pattern, k));
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                CertSource::Secrets { .. } => match self.secret_certificate(host, source).await {
                    Ok(k) => {
                        loaded.push((pattern, k));
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match key {
                Ok(k) => loaded.push((pattern, Arc::new(k))),
                Err(e) => problems.push(e),
            }
        }
        proxy.set_certificates(loaded);
        let mut state = self.certs.lock().await;
        state.failed = !problems.is_empty();
        for p in problems {
            if state.reported.insert(p.clone()) {
                tracing::warn!("{p}");
            }
        }
        state.acme.retain(|host, _| sources.contains_key(host));
        state
            .from_secrets
            .retain(|host, (from, _)| sources.get(host) == Some(from));
        state.sources = sources;
        state.loaded_ms = now;
    }

    /// The ACME certificate issued at `issued_ms` for `host`: the one
    /// opened before if it is that one, else fetched and opened now.
    async fn acme_certificate(
        &self,
        host: &str,
        issued_ms: u64,
    ) -> Result<Arc<CertifiedKey>, String> {
        if let Some((at, k)) = self.certs.lock().await.acme.get(host) {
            if *at == issued_ms {
                return Ok(k.clone());
            }
        }
        let (cert, key, at) = self
            .cluster
            .acme_certificate(host)
            .await
            .map_err(|e| format!("https host {host}: its ACME certificate: {e}"))?;
        let k = Arc::new(
            zlayer_proxy::certified_key(cert.as_bytes(), key.as_bytes(), host)
                .map_err(|e| format!("https host {host}: {e}"))?,
        );
        self.certs
            .lock()
            .await
            .acme
            .insert(host.to_string(), (at, k.clone()));
        Ok(k)
    }

    /// The certificate `source` (a [`CertSource::Secrets`]) names: the one
    /// opened before if the secrets' versions are the same, else fetched.
    async fn secret_certificate(
        &self,
        host: &str,
        source: &CertSource,
    ) -> Result<Arc<CertifiedKey>, String> {
        let CertSource::Secrets {
            workload: (deployment, service),
            cert: (cert, _),
            key: (key, _),
        } = source
        else {
            return Err(format!("https host {host}: not a certificate from secrets"));
        };
        if let Some((from, k)) = self.certs.lock().await.from_secrets.get(host) {
            if from == source {
                return Ok(k.clone());
            }
        }
        let values = self
            .cluster
            .secret_values(deployment, service, vec![cert.clone(), key.clone()])
            .await
            .map_err(|e| format!("https host {host}: its certificate secrets: {e}"))?;
        let (Some(c), Some(k)) = (values.get(cert), values.get(key)) else {
            return Err(format!(
                "https host {host}: the cluster sent no value for `{cert}` or `{key}`"
            ));
        };
        let certified = Arc::new(
            zlayer_proxy::certified_key(c, k, host)
                .map_err(|e| format!("https host {host}: secrets `{cert}` and `{key}`: {e}"))?,
        );
        self.certs
            .lock()
            .await
            .from_secrets
            .insert(host.to_string(), (source.clone(), certified.clone()));
        Ok(certified)
    }

    /// A certificate and key from files the spec names. They are host files
    /// read as root, so the rules of bind mounts apply: only under a prefix
    /// the node allows (`--allow-host-path`), never in the data dir (where
    /// the node's own identity key is) or under /proc, /sys, /dev.
    fn certificate_files(&self, host: &str, cert: &str, key: &str) -> Result<CertifiedKey, String> {
        let allowed = |p: &str| {
            self.paths
                .host_paths
                .check_use(p, "TLS file")
                .map_err(|e| format!("https host {host}: {e}"))
        };
        let (cert, key) = (allowed(cert)?, allowed(key)?);
        zlayer_proxy::certified_key_from_files(&cert, &key)
            .map_err(|e| format!("https host {host}: {e}"))
    }

    /// The ingress CA's certificate for `host`, from disk while it has a
    /// third of its life left, else newly issued by the cluster.
    async fn dev_certificate(&self, host: &str) -> Result<CertifiedKey, String> {
        let dir = self.paths.data_dir.join("ingress").join("dev");
        let (cert_file, key_file) = dev_files(&dir, host);
        if let (Ok(cert), Ok(key)) = (std::fs::read(&cert_file), std::fs::read(&key_file)) {
            if fresh_enough(&cert) {
                if let Ok(k) = zlayer_proxy::certified_key(&cert, &key, host) {
                    return Ok(k);
                }
            }
        }
        let (cert, key) = self
            .cluster
            .ingress_certificate(vec![host.to_string()])
            .await
            .map_err(|e| format!("https host {host}: no certificate named, and the cluster CA could not issue one: {e}"))?;
        tracing::warn!(
            "https host {host} names no certificate; serving one from the cluster's ingress CA (`zlayer ca export` prints it for clients)"
        );
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        write_private(&key_file, key.as_bytes())?;
        write_private(&cert_file, cert.as_bytes())?;
        zlayer_proxy::certified_key(cert.as_bytes(), key.as_bytes(), host)
            .map_err(|e| e.to_string())
    }
}

/// The proxy's host pattern for an endpoint: its `host`, or every host.
fn host_of(ep: &Endpoint) -> Option<HostPattern> {
    match &ep.host {
        Some(h) => HostPattern::parse(h).ok(),
        None => Some(HostPattern::any()),
    }
}

fn dev_files(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    let stem = host.replace('*', "_wildcard");
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

/// True while more than a third of the certificate's validity is left.
fn fresh_enough(cert_pem: &[u8]) -> bool {
    use x509_parser::prelude::*;
    let Ok((_, pem)) = parse_x509_pem(cert_pem) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let v = cert.validity();
    let (from, to) = (v.not_before.timestamp(), v.not_after.timestamp());
    let now = (crate::clock::now_ms() / 1000) as i64;
    to - now > (to - from) / 3
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_host_gets_a_file_name_without_a_star() {
        let (c, k) = dev_files(Path::new("/d"), "*.shop.test");
        assert_eq!(c, Path::new("/d/_wildcard.shop.test.crt"));
        assert_eq!(k, Path::new("/d/_wildcard.shop.test.key"));
    }
}

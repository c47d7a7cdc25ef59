//! Admitting a spec on this node before it is committed (validated, `$E:`
//! values present, images here or pulled), noting its revisions after, and
//! waiting for a removed deployment's replicas to go.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zlayer_spec::{DeploymentRevision, Spec};

use crate::agent::Agent;

impl Agent {
    /// Checks a spec before it is committed: it validates, every `$E:` value
    /// it names was given, and its images are here (pulled as its
    /// `pull_policy` says). Returns the revision to commit (numbered 0: the
    /// cluster numbers it).
    pub async fn admit(
        &self,
        file: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<DeploymentRevision, String> {
        let spec = zlayer_spec::parse(file, text).map_err(|e| e.to_string())?;
        let d = DeploymentRevision {
            name: spec.deployment.clone(),
            revision: 0,
            file: file.to_string(),
            text: text.to_string(),
            env: env.clone(),
            parsed: Ok(Arc::new(spec)),
        };
        let Ok(spec) = &d.parsed else {
            unreachable!("parsed above")
        };
        resolve_env_checked(&d, spec)?;
        self.secrets_checked(&d, spec)?;
        self.configs_checked(&d, spec)?;
        for (name, svc) in &spec.services {
            for (i, s) in svc.storage.iter().enumerate() {
                if let (zlayer_spec::StorageType::Bind, Some(src)) = (&s.kind, &s.source) {
                    self.paths.host_paths.check(src).map_err(|e| {
                        located(&d, &format!("services.{name}.storage[{i}].source"), e)
                    })?;
                }
            }
        }
        // An image pulled with a secret is pulled by the nodes that run it
        // (only they get the secret), when they start a replica.
        for (name, svc) in spec
            .services
            .iter()
            .filter(|(_, s)| s.image.pull_secret.is_none())
        {
            crate::images::ensure_image(&self.images, &self.registries, &svc.image)
                .await
                .map_err(|e| located(&d, &format!("services.{name}.image.name"), e))?;
        }
        Ok(d)
    }

    /// After a spec is committed: each service's current revision, with its
    /// rollout begun. The loop rolls each service whose revision changed;
    /// the rest stay as they are.
    pub fn note_applied(&self, d: &DeploymentRevision) -> BTreeMap<String, String> {
        let mut revisions = BTreeMap::new();
        if let Ok(spec) = &d.parsed {
            for name in spec.services.keys() {
                if let Some(t) = self.current_template(spec, d, name) {
                    self.rollout_for(&t);
                    revisions.insert(name.clone(), t.revision.clone());
                }
            }
        }
        self.wake();
        revisions
    }

    /// Waits (up to a minute) until this node runs nothing of a removed
    /// deployment, then drops its logs.
    pub async fn wait_gone(&self, name: &str) -> Result<(), String> {
        self.wake();
        for _ in 0..6000 {
            if !self.store.replicas().iter().any(|r| r.deployment == name) {
                let logs = self.paths.data_dir.join("logs").join(name);
                if let Err(e) = std::fs::remove_dir_all(&logs) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!("removing {}: {e}", logs.display());
                    }
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(format!("deployment `{name}` is still stopping"))
    }
}

impl Agent {
    /// Every config a service mounts must exist before the spec is committed.
    fn configs_checked(&self, d: &DeploymentRevision, spec: &Spec) -> Result<(), String> {
        for (name, svc) in &spec.services {
            let known = self.cluster.config_versions(&svc.config_refs());
            for (i, f) in svc.files.iter().enumerate() {
                let Some(config) = &f.config else { continue };
                if !known.contains_key(config) {
                    let msg = format!("no config named `{config}`; create it first with `zlayer config create {config} --from-file FILE`");
                    return Err(located(
                        d,
                        &format!("services.{name}.files[{i}].config"),
                        msg,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every secret a service uses must exist before the spec is committed.
    fn secrets_checked(&self, d: &DeploymentRevision, spec: &Spec) -> Result<(), String> {
        for (name, svc) in &spec.services {
            let mut refs = svc.secret_refs();
            refs.extend(svc.tls_secret_refs());
            refs.extend(svc.pull_secret_refs());
            let known = self.cluster.secret_versions(&refs);
            let Some(missing) = refs.iter().find(|r| !known.contains_key(*r)) else {
                continue;
            };
            let path = secret_path(name, svc, missing);
            let msg = format!("no secret named `{missing}`; create it first with `zlayer secret create {missing} --from-file FILE`");
            return Err(located(d, &path, msg));
        }
        Ok(())
    }
}

/// Where the spec names secret `missing`: an env entry, the image's
/// `pull_secret`, a route's `tls`, or `secrets`.
fn secret_path(name: &str, svc: &zlayer_spec::Service, missing: &str) -> String {
    if svc.image.pull_secret.as_deref() == Some(missing) {
        return format!("services.{name}.image.pull_secret");
    }
    if let Some((k, _)) = svc
        .env
        .iter()
        .find(|(_, v)| v.strip_prefix("$S:") == Some(missing))
    {
        return format!("services.{name}.env.{k}");
    }
    let names = |t: &zlayer_spec::EndpointTls| {
        t.cert_secret.as_deref() == Some(missing) || t.key_secret.as_deref() == Some(missing)
    };
    match svc
        .endpoints
        .iter()
        .position(|ep| ep.tls.as_ref().is_some_and(names))
    {
        Some(i) => format!("services.{name}.endpoints[{i}].tls"),
        None => format!("services.{name}.secrets"),
    }
}

fn resolve_env_checked(d: &DeploymentRevision, spec: &Spec) -> Result<(), String> {
    for (name, svc) in &spec.services {
        for (k, v) in &svc.env {
            if let Some(var) = v.strip_prefix("$E:") {
                if !d.env.contains_key(var) {
                    let msg = format!("`${var}` is not set in the environment of `zlayer up`; export {var}=... first");
                    return Err(located(d, &format!("services.{name}.env.{k}"), msg));
                }
            }
        }
    }
    Ok(())
}

/// `FILE:LINE:COL: key.path: message`, like the spec parser's errors.
fn located(d: &DeploymentRevision, path: &str, msg: impl std::fmt::Display) -> String {
    let (line, col) = zlayer_spec::position(&d.text, path);
    format!("{}:{line}:{col}: {path}: {msg}", d.file)
}

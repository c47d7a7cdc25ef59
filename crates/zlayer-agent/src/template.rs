//! Replica templates: one service's definition plus its resolved env, named
//! by a content hash (the revision). A replica is always (re)started from its
//! own revision's template, so an old replica left running by a stopped
//! rollout keeps what it was started with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zlayer_spec::{Service, Spec};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Template {
    pub deployment: String,
    pub service_name: String,
    /// The service as its containers see it: scale, `depends`, `update`,
    /// `schedule` and `env` are cleared (take those from the spec; env is below).
    pub service: Service,
    /// `$E:` references already replaced by the applying caller's values.
    pub env: Vec<(String, String)>,
    /// How many times `zlayer restart` asked for the service (0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u64,
    /// The version of each secret it uses (values are never here): a new
    /// value is a new revision, so it rolls out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, u64>,
    /// The version of each config its files take content from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, u64>,
    pub revision: String,
}

/// What rolls a service beside its spec: `zlayer restart`s and new secret
/// and config values.
#[derive(Clone, Debug, Default)]
pub struct Rolls {
    pub restarts: u64,
    pub secrets: BTreeMap<String, u64>,
    pub configs: BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Template {
    pub fn new(spec: &Spec, name: &str, caller_env: &BTreeMap<String, String>) -> Option<Self> {
        Self::rolled(spec, name, caller_env, Rolls::default())
    }

    /// The template after `rolls`: each restart and each new secret value
    /// is a new revision.
    pub fn rolled(
        spec: &Spec,
        name: &str,
        caller_env: &BTreeMap<String, String>,
        rolls: Rolls,
    ) -> Option<Self> {
        let full = spec.services.get(name)?;
        let env = resolve_env(full, caller_env);
        let service = container_shape(full);
        let revision = revision(&service, &env, &rolls);
        Some(Template {
            deployment: spec.deployment.clone(),
            service_name: name.to_string(),
            service,
            env,
            restarts: rolls.restarts,
            secrets: rolls.secrets,
            configs: rolls.configs,
            revision,
        })
    }

    pub fn key(&self) -> String {
        key(&self.deployment, &self.service_name, &self.revision)
    }
}

pub fn key(deployment: &str, service: &str, revision: &str) -> String {
    format!("{deployment}/{service}/{revision}")
}

/// `$E:VAR` takes the value the applying caller had (checked at apply time).
fn resolve_env(svc: &Service, caller_env: &BTreeMap<String, String>) -> Vec<(String, String)> {
    svc.env
        .iter()
        .map(|(k, v)| {
            let value = v.strip_prefix("$E:").map_or(v.clone(), |var| {
                caller_env.get(var).cloned().unwrap_or_default()
            });
            (k.clone(), value)
        })
        .collect()
}

/// Scale, `depends`, the update policy, the network policy, a cron
/// schedule and concurrency, a job's completions and parallelism, and an endpoint's
/// publishing and route fields (everything but its name, protocol and
/// container port) change no container, so they are left out of the
/// template and roll nothing.
fn container_shape(svc: &Service) -> Service {
    let mut shape = svc.clone();
    shape.network_policy = None;
    shape.scale = Default::default();
    shape.schedule = None;
    shape.completions = None;
    shape.concurrency = None;
    shape.parallelism = None;
    shape.depends.clear();
    shape.update = Default::default();
    shape.env.clear();
    for ep in &mut shape.endpoints {
        ep.host_port = None;
        ep.host = None;
        ep.path = None;
        ep.expose = Default::default();
        ep.balance = Default::default();
        ep.upstream = Default::default();
        ep.tls = None;
    }
    shape
}

fn revision(shape: &Service, env: &[(String, String)], rolls: &Rolls) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(shape).unwrap_or_default());
    h.update(serde_json::to_vec(env).unwrap_or_default());
    // Never restarted and without secrets: the revision it always had.
    if rolls.restarts > 0 {
        h.update(rolls.restarts.to_le_bytes());
    }
    if !rolls.secrets.is_empty() {
        h.update(serde_json::to_vec(&rolls.secrets).unwrap_or_default());
    }
    if !rolls.configs.is_empty() {
        h.update(b"configs");
        h.update(serde_json::to_vec(&rolls.configs).unwrap_or_default());
    }
    hex::encode(&h.finalize()[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> Spec {
        let text = format!(
            "version: v1\ndeployment: d\nservices:\n  web:\n    image: {{ name: demo }}\n{extra}"
        );
        zlayer_spec::parse("t.yaml", &text).expect("valid spec")
    }

    fn rev(extra: &str, env: &[(&str, &str)]) -> String {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Template::new(&spec(extra), "web", &env)
            .expect("service exists")
            .revision
    }

    #[test]
    fn scale_depends_and_update_policy_do_not_change_the_revision() {
        let base = rev("", &[]);
        assert_eq!(base, rev("    scale: { mode: fixed, replicas: 7 }\n", &[]));
        assert_eq!(base, rev("    update: { parallelism: 3 }\n", &[]));
        assert_eq!(
            base,
            rev("    network_policy: { ingress_from: [web] }\n", &[])
        );
    }

    #[test]
    fn image_env_and_caller_values_change_it() {
        let base = rev("    env: { A: $E:A }\n", &[("A", "1")]);
        assert_ne!(base, rev("    env: { A: $E:A }\n", &[("A", "2")]));
        // The same resolved env is the same container.
        assert_eq!(base, rev("    env: { A: \"1\" }\n", &[]));
        assert_ne!(rev("", &[]), rev("    user: \"1\"\n", &[]));
    }

    /// Each `zlayer restart` is a new revision (so it rolls out); a
    /// service never restarted keeps the revision it always had.
    #[test]
    fn each_restart_is_a_new_revision_and_none_changes_nothing() {
        let s = spec("");
        let env = BTreeMap::new();
        let r = |n| {
            let rolls = Rolls {
                restarts: n,
                ..Rolls::default()
            };
            Template::rolled(&s, "web", &env, rolls).unwrap().revision
        };
        assert_eq!(r(0), Template::new(&s, "web", &env).unwrap().revision);
        assert_ne!(r(1), r(0));
        assert_ne!(r(2), r(1));
        assert_eq!(r(2), r(2));
    }

    /// A secret's new value is a new revision; its value is never in the template.
    #[test]
    fn a_new_secret_version_is_a_new_revision() {
        let s = spec("    env: { DB: $S:db }\n");
        let env = BTreeMap::new();
        let r = |v: u64| {
            let rolls = Rolls {
                secrets: BTreeMap::from([("db".to_string(), v)]),
                ..Rolls::default()
            };
            Template::rolled(&s, "web", &env, rolls).unwrap()
        };
        assert_ne!(r(1).revision, r(2).revision);
        assert_eq!(r(2).revision, r(2).revision);
        assert_eq!(r(1).env, vec![("DB".to_string(), "$S:db".to_string())]);
    }
}

//! Starting a planned replica through the launcher and recording how it
//! went: running with its stop sequence, or exited with a backoff.

use crate::agent::Agent;
use crate::clock::{backoff_ms, now_ms};
use crate::launcher::StartRequest;
use crate::state::{Health, Replica, ReplicaState};
use crate::template::Template;
use std::collections::BTreeSet;
use zlayer_runtime::secrets::SecretValues;

impl Agent {
    /// Starts a planned replica (its IP already reserved) from its revision's
    /// template and records the outcome.
    pub(crate) async fn launch(&self, mut r: Replica) -> Replica {
        let Some(t) = self.template_of(&r) else {
            r.state = ReplicaState::Exited;
            r.ip = None;
            r.message = format!("revision {} is no longer known", r.revision);
            r.restart_at_ms = now_ms() + backoff_ms(r.restarts);
            self.persist(self.store.put_replica(&r), &r);
            return r;
        };
        if let Err(e) = self.image_for_start(&t).await {
            return self.start_failed(r, e);
        }
        let secrets = match self.secret_values(&t).await {
            Ok(s) => s,
            Err(e) => return self.start_failed(r, format!("its secrets: {e}")),
        };
        let files = match self.file_contents(&t) {
            Ok(f) => f,
            Err(e) => return self.start_failed(r, e),
        };
        let volumes = match self.volume_mounts(&t).await {
            Ok(v) => v,
            Err(e) => return self.start_failed(r, e),
        };
        let ip = r.ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        let req = StartRequest {
            template: t.clone(),
            index: r.index,
            ip,
            gpus: r.gpus.clone(),
            secrets,
            files,
            volumes,
        };
        match self.launcher.start(req).await {
            Ok(container_id) => {
                let svc = &t.service;
                r.container_id = container_id;
                r.ip = Some(ip);
                r.state = ReplicaState::Running;
                r.health = if svc.readiness_probe().is_some() {
                    Health::Starting
                } else {
                    Health::None
                };
                r.started_ms = now_ms();
                r.failed_checks = 0;
                r.live_failures = 0;
                r.stop_signal = svc
                    .stop
                    .signal
                    .as_deref()
                    .and_then(zlayer_runtime::signal_number);
                r.stop_grace_ms = svc.stop.grace.0.as_millis() as u64;
                r.message.clear();
                let due = match std::mem::take(&mut r.due_ms) {
                    0 => String::new(),
                    ms => format!(" (the run due at {})", zlayer_spec::format_utc(ms)),
                };
                self.event(
                    &r,
                    "started",
                    format!("{} started at {ip}{due}", r.container_id),
                );
            }
            Err(e) => return self.start_failed(r, e),
        }
        self.persist(self.store.put_replica(&r), &r);
        r
    }

    fn start_failed(&self, mut r: Replica, e: String) -> Replica {
        r.state = ReplicaState::Exited;
        r.ip = None;
        r.message = format!("start failed: {e}");
        r.restart_at_ms = now_ms() + backoff_ms(r.restarts);
        self.event(&r, "start-failed", e);
        self.persist(self.store.put_replica(&r), &r);
        r
    }

    /// The content of each file the template mounts: inline, or its config's.
    fn file_contents(&self, t: &Template) -> Result<Vec<(String, Vec<u8>)>, String> {
        t.service
            .files
            .iter()
            .map(|f| {
                let content = match (&f.content, &f.config) {
                    (Some(inline), _) => inline.clone().into_bytes(),
                    (None, Some(name)) => self
                        .cluster
                        .config_value(name)
                        .ok_or_else(|| format!("no config named `{name}` for {}", f.target))?,
                    (None, None) => Vec::new(),
                };
                Ok((f.target.clone(), content))
            })
            .collect()
    }

    /// The values of the secrets the template uses, from the cluster
    /// (which gives them only to a node that runs the service).
    async fn secret_values(&self, t: &Template) -> Result<SecretValues, String> {
        let env: BTreeSet<&str> = t
            .env
            .iter()
            .filter_map(|(_, v)| v.strip_prefix("$S:"))
            .collect();
        let files: BTreeSet<&str> = t.service.secrets.iter().map(String::as_str).collect();
        let names: Vec<String> = env.union(&files).map(|n| n.to_string()).collect();
        if names.is_empty() {
            return Ok(SecretValues::default());
        }
        let got = self
            .cluster
            .secret_values(&t.deployment, &t.service_name, names)
            .await?;
        let take = |name: &str| {
            got.get(name)
                .cloned()
                .ok_or_else(|| format!("the cluster sent no value for `{name}`"))
        };
        let mut out = SecretValues::default();
        for name in files {
            out.files.insert(name.to_string(), take(name)?);
        }
        for name in env {
            out.env.insert(name.to_string(), take(name)?);
        }
        Ok(out)
    }
}

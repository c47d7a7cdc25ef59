//! Node-local state in sled: replica records, templates and rollouts (the
//! deployments themselves are cluster state). Every
//! write is flushed before it is acknowledged, so `kill -9` at any moment
//! leaves a consistent record to re-adopt from.

use serde::{Deserialize, Serialize};
use zlayer_runtime::ExitInfo;

use crate::template::Template;

pub use zlayer_model::{Health, ReplicaState, RolloutState};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Replica {
    pub deployment: String,
    pub service: String,
    pub index: u32,
    pub container_id: String,
    pub ip: Option<std::net::Ipv4Addr>,
    pub state: ReplicaState,
    pub health: Health,
    pub restarts: u32,
    pub created_ms: u64,
    pub started_ms: u64,
    pub last_exit: Option<ExitInfo>,
    pub restart_at_ms: u64,
    pub message: String,
    pub failed_checks: u32,
    /// Liveness probes failed in a row (a split `liveness` probe only).
    #[serde(default)]
    pub live_failures: u32,
    /// Runs in a row that exited within [`crate::reconcile::QUICK_EXIT_MS`]
    /// of their start; from [`crate::reconcile::CRASH_LOOP_EXITS`] on, a
    /// crash loop.
    #[serde(default)]
    pub quick_exits: u32,
    /// The stop sequence, kept with the replica so `down` still honours it
    /// after the spec is gone.
    #[serde(default)]
    pub stop_signal: Option<i32>,
    #[serde(default)]
    pub stop_grace_ms: u64,
    /// The template this replica was started from (see `template`).
    #[serde(default)]
    pub revision: String,
    /// A replacement started by a rollout, beside the old replica of its slot.
    #[serde(default)]
    pub surge: bool,
    /// The node's GPUs this replica holds (by index), kept across restarts
    /// until the record goes, like its IP.
    #[serde(default)]
    pub gpus: Vec<u32>,
    /// The schedule's fire time a cron run was started for (0 otherwise), so
    /// its start event says which run it is even when starting took a while.
    #[serde(default)]
    pub due_ms: u64,
    /// A cron run moved aside so the next run could start beside it
    /// (`concurrency: allow`): the fire time it was due at, part of its key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overlap: u64,
    /// A job task's attempt this record runs (0 before its first start).
    #[serde(default)]
    pub attempt: u32,
    /// A job task's failed attempt with retries left, reported until the
    /// leader moves the task to its next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempt: Option<zlayer_model::FailedAttempt>,
}

impl Replica {
    /// Exited soon after each of its last starts, waiting out a backoff.
    pub fn in_crash_loop(&self) -> bool {
        self.state == ReplicaState::Exited && self.quick_exits >= crate::reconcile::CRASH_LOOP_EXITS
    }

    /// A slot's first record, not started yet.
    pub fn new(deployment: &str, service: &str, index: u32, revision: &str) -> Replica {
        Replica {
            deployment: deployment.to_string(),
            service: service.to_string(),
            index,
            container_id: String::new(),
            ip: None,
            state: ReplicaState::Pending,
            health: Health::None,
            restarts: 0,
            created_ms: crate::clock::now_ms(),
            started_ms: 0,
            last_exit: None,
            restart_at_ms: 0,
            message: String::new(),
            failed_checks: 0,
            live_failures: 0,
            quick_exits: 0,
            stop_signal: None,
            stop_grace_ms: 0,
            revision: revision.to_string(),
            surge: false,
            gpus: Vec::new(),
            due_ms: 0,
            attempt: 0,
            failed_attempt: None,
            overlap: 0,
        }
    }

    /// Its last run exited 0 and nothing waits to run again: a job task done.
    pub fn succeeded(&self) -> bool {
        self.state == ReplicaState::Exited
            && self.failed_attempt.is_none()
            && self.last_exit.as_ref().is_some_and(|e| e.status() == 0)
    }

    /// A job task done for good holds no address or GPU any more: another
    /// task may take them at once.
    pub fn release_reservations(&mut self) {
        self.ip = None;
        self.gpus.clear();
    }

    pub fn stop_params(&self) -> (i32, std::time::Duration) {
        let grace = if self.stop_grace_ms == 0 {
            10_000
        } else {
            self.stop_grace_ms
        };
        (
            self.stop_signal.unwrap_or(libc::SIGTERM),
            std::time::Duration::from_millis(grace),
        )
    }
}

impl Replica {
    pub fn key(&self) -> String {
        if self.surge {
            surge_key(&self.deployment, &self.service, self.index)
        } else if self.overlap != 0 {
            format!(
                "{}@{}",
                key(&self.deployment, &self.service, self.index),
                self.overlap
            )
        } else {
            key(&self.deployment, &self.service, self.index)
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn key(deployment: &str, service: &str, index: u32) -> String {
    format!("{deployment}/{service}/{index:05}")
}

pub fn surge_key(deployment: &str, service: &str, index: u32) -> String {
    format!("{deployment}/{service}/{index:05}+")
}

/// Progress of one service towards its current revision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rollout {
    pub deployment: String,
    pub service: String,
    pub revision: String,
    pub state: RolloutState,
    pub message: String,
    pub started_ms: u64,
}

pub struct Store {
    db: sled::Db,
    replicas: sled::Tree,
    templates: sled::Tree,
    rollouts: sled::Tree,
    /// Metering records not yet committed to the cluster, by container id.
    usage: sled::Tree,
}

#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(String);

fn e(x: impl ToString) -> StoreError {
    StoreError(x.to_string())
}

impl Store {
    pub fn open(path: &std::path::Path) -> Result<Store, StoreError> {
        let db = sled::open(path).map_err(e)?;
        Ok(Store {
            replicas: db.open_tree("replicas").map_err(e)?,
            templates: db.open_tree("templates").map_err(e)?,
            rollouts: db.open_tree("rollouts").map_err(e)?,
            usage: db.open_tree("usage").map_err(e)?,
            db,
        })
    }
    pub fn put_replica(&self, r: &Replica) -> Result<(), StoreError> {
        self.replicas
            .insert(r.key(), serde_json::to_vec(r).map_err(e)?)
            .map_err(e)?;
        self.db.flush().map_err(e)?;
        Ok(())
    }
    /// Re-files a record under its (new) key in one atomic write.
    pub fn move_replica(&self, from: &str, r: &Replica) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.remove(from);
        batch.insert(r.key().as_bytes(), serde_json::to_vec(r).map_err(e)?);
        self.replicas.apply_batch(batch).map_err(e)?;
        self.db.flush().map_err(e)?;
        Ok(())
    }
    pub fn remove_replica(&self, key: &str) -> Result<(), StoreError> {
        self.replicas.remove(key).map_err(e)?;
        self.db.flush().map_err(e)?;
        Ok(())
    }
    pub fn replicas(&self) -> Vec<Replica> {
        self.replicas
            .iter()
            .values()
            .filter_map(|v| v.ok())
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect()
    }

    /// Keeps a metering record until the cluster has it.
    pub fn put_usage(&self, r: &zlayer_model::UsageRecord) -> Result<(), StoreError> {
        self.usage
            .insert(r.container_id.as_bytes(), serde_json::to_vec(r).map_err(e)?)
            .map_err(e)?;
        self.db.flush().map_err(e)?;
        Ok(())
    }
    /// Metering records the cluster does not have yet, oldest key first.
    pub fn pending_usage(&self, at_most: usize) -> Vec<zlayer_model::UsageRecord> {
        self.usage
            .iter()
            .values()
            .filter_map(|v| v.ok())
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .take(at_most)
            .collect()
    }
    /// Forgets records the cluster committed.
    pub fn usage_committed(&self, ids: &[String]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(id.as_bytes());
        }
        self.usage.apply_batch(batch).map_err(e)?;
        self.db.flush().map_err(e)?;
        Ok(())
    }

    pub fn put_template(&self, t: &Template) -> Result<(), StoreError> {
        if self.templates.contains_key(t.key()).map_err(e)? {
            return Ok(());
        }
        self.templates
            .insert(t.key(), serde_json::to_vec(t).map_err(e)?)
            .map_err(e)?;
        self.db.flush().map_err(e)?;
        Ok(())
    }
    pub fn template(&self, key: &str) -> Option<Template> {
        serde_json::from_slice(&self.templates.get(key).ok()??).ok()
    }
    /// Drops templates no longer named by `keep`.
    pub fn retain_templates(
        &self,
        keep: &std::collections::HashSet<String>,
    ) -> Result<(), StoreError> {
        let mut stale = Vec::new();
        for k in self.templates.iter().keys() {
            let k = k.map_err(e)?;
            if !keep.contains(String::from_utf8_lossy(&k).as_ref()) {
                stale.push(k);
            }
        }
        for k in &stale {
            self.templates.remove(k).map_err(e)?;
        }
        if !stale.is_empty() {
            self.db.flush().map_err(e)?;
        }
        Ok(())
    }
    pub fn put_rollout(&self, r: &Rollout) -> Result<(), StoreError> {
        let key = format!("{}/{}", r.deployment, r.service);
        self.rollouts
            .insert(key, serde_json::to_vec(r).map_err(e)?)
            .map_err(e)?;
        self.db.flush().map_err(e)?;
        Ok(())
    }
    pub fn rollout(&self, deployment: &str, service: &str) -> Option<Rollout> {
        serde_json::from_slice(
            &self
                .rollouts
                .get(format!("{deployment}/{service}"))
                .ok()??,
        )
        .ok()
    }
    pub fn rollouts(&self) -> Vec<Rollout> {
        self.rollouts
            .iter()
            .values()
            .filter_map(|v| v.ok())
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect()
    }
    pub fn remove_rollout(&self, deployment: &str, service: &str) -> Result<(), StoreError> {
        if self
            .rollouts
            .remove(format!("{deployment}/{service}"))
            .map_err(e)?
            .is_some()
        {
            self.db.flush().map_err(e)?;
        }
        Ok(())
    }
}

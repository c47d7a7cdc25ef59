//! The state machine: the [`ClusterState`] in memory, every record in sled
//! under its own key, written in one atomic batch per `apply` call together
//! with the last applied log id, so a restart resumes exactly where the
//! flushed batch left off.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::last_snapshot::LastSnapshot;
use super::{read_err, write_err};
use crate::model::{ClusterState, Response, Touched};
use crate::TypeConfig;

const APPLIED: &[u8] = b"m/applied";
const MEMBERSHIP: &[u8] = b"m/membership";
/// Where stores before [`LastSnapshot`] kept the last snapshot.
const SNAPSHOT_IN_SLED: &[u8] = b"m/snapshot";
const CA: &[u8] = b"ca";
const NEXT_GENERATION: &[u8] = b"gen";
const NODE: &str = "node/";
const LIVENESS: &str = "live/";
/// A node's replica reports, one key each: `rep/` + node id + slot.
const REPORT: &str = "rep/";
const DEPLOYMENT: &str = "dep/";
const ASSIGNMENT: &str = "asg/";
const TOKEN: &str = "tok/";
const PENDING: &[u8] = b"pending";
const REMOVED: &[u8] = b"removed";
const NETWORK: &[u8] = b"network";
const PEERS: &[u8] = b"peers";
const ACME: &[u8] = b"acme";
const SECRETS: &[u8] = b"secrets";
const CONFIGS: &[u8] = b"configs";
const VOLUMES: &[u8] = b"volumes";
const JOBS: &[u8] = b"jobs";
const USAGE_TOTALS: &[u8] = b"usage-totals";
const USAGE: &str = "usage/";

type Membership = StoredMembership<u64, BasicNode>;
type Meta = SnapshotMeta<u64, BasicNode>;

#[derive(Default)]
struct Machine {
    applied: Option<LogId<u64>>,
    membership: Membership,
    data: ClusterState,
}

/// A snapshot as stored and sent: the whole state with its position.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    data: ClusterState,
}

#[derive(Clone)]
pub struct StateMachine {
    tree: sled::Tree,
    last_snapshot: LastSnapshot,
    machine: Arc<RwLock<Machine>>,
    applied_tx: Arc<watch::Sender<u64>>,
}

fn key(t: &Touched) -> Vec<u8> {
    match t {
        Touched::Ca => CA.to_vec(),
        Touched::NextGeneration => NEXT_GENERATION.to_vec(),
        Touched::Pending => PENDING.to_vec(),
        Touched::Removed => REMOVED.to_vec(),
        Touched::Network => NETWORK.to_vec(),
        Touched::Peers => PEERS.to_vec(),
        Touched::Acme => ACME.to_vec(),
        Touched::Secrets => SECRETS.to_vec(),
        Touched::Configs => CONFIGS.to_vec(),
        Touched::Volumes => VOLUMES.to_vec(),
        Touched::Jobs => JOBS.to_vec(),
        Touched::UsageTotals => USAGE_TOTALS.to_vec(),
        Touched::Usage(id) => format!("{USAGE}{id}").into_bytes(),
        Touched::Node(id) => [NODE.as_bytes(), &id.to_be_bytes()].concat(),
        Touched::Liveness(id) => [LIVENESS.as_bytes(), &id.to_be_bytes()].concat(),
        Touched::Report(id, w, i, surge) => report_key(*id, (w, *i, *surge)),
        Touched::Deployment(name) => format!("{DEPLOYMENT}{name}").into_bytes(),
        Touched::Token(id) => format!("{TOKEN}{id}").into_bytes(),
        Touched::Assignment(k) => [
            ASSIGNMENT.as_bytes(),
            k.workload.as_bytes(),
            b"\0",
            &k.replica.to_be_bytes(),
        ]
        .concat(),
    }
}

fn reports_prefix(node: u64) -> Vec<u8> {
    [REPORT.as_bytes(), &node.to_be_bytes()].concat()
}

fn report_key(node: u64, (workload, replica, surge): (&str, u32, bool)) -> Vec<u8> {
    [
        &reports_prefix(node)[..],
        workload.as_bytes(),
        b"\0",
        &replica.to_be_bytes(),
        &[u8::from(surge)],
    ]
    .concat()
}

/// A node's record without its replica reports, which have keys of their
/// own. Taking the reports out for the moment spares copying thousands.
fn node_value(n: &mut crate::NodeRecord) -> Result<Vec<u8>, serde_json::Error> {
    let reports = std::mem::take(&mut n.replica_reports);
    let v = serde_json::to_vec(n);
    n.replica_reports = reports;
    v
}

/// The record `t` names, serialized, or `None` where it is gone.
fn value(data: &mut ClusterState, t: &Touched) -> Result<Option<Vec<u8>>, serde_json::Error> {
    fn json<T: Serialize>(v: Option<&T>) -> Result<Option<Vec<u8>>, serde_json::Error> {
        v.map(serde_json::to_vec).transpose()
    }
    match t {
        Touched::Ca => json(data.ca.as_ref()),
        Touched::NextGeneration => json(Some(&data.next_generation)),
        Touched::Pending => json(Some(&data.pending)),
        Touched::Removed => json(Some(&data.removed)),
        Touched::Network => json(data.network.as_ref()),
        Touched::Peers => json(Some(&data.peers)),
        Touched::Acme => json(Some(&data.acme)),
        Touched::Secrets => json(Some(&data.secrets)),
        Touched::Configs => json(Some(&data.configs)),
        Touched::Volumes => json(Some(&data.volumes)),
        Touched::Jobs => json(Some(&data.jobs)),
        Touched::UsageTotals => json(Some(&data.usage.totals)),
        Touched::Usage(id) => json(data.usage.records.get(id)),
        Touched::Node(id) => data.nodes.get_mut(id).map(node_value).transpose(),
        Touched::Report(id, w, i, surge) => json(data.nodes.get(id).and_then(|n| {
            n.replica_reports
                .iter()
                .find(|r| r.slot() == (w.as_str(), *i, *surge))
        })),
        Touched::Liveness(id) => json(data.nodes.get(id).map(|n| n.liveness()).as_ref()),
        Touched::Deployment(n) => json(data.deployments.get(n)),
        Touched::Token(id) => json(data.tokens.get(id)),
        Touched::Assignment(k) => json(data.assignments.get(k)),
    }
}

impl StateMachine {
    /// Reads every record back from sled.
    pub(crate) fn load(
        tree: sled::Tree,
        last_snapshot: LastSnapshot,
    ) -> Result<StateMachine, StorageError<u64>> {
        Self::move_snapshot_out_of_sled(&tree, &last_snapshot)?;
        let mut m = Machine::default();
        let mut liveness: Vec<(u64, crate::Liveness)> = Vec::new();
        let mut reports: Vec<(u64, zlayer_model::ReplicaReport)> = Vec::new();
        for kv in tree.iter() {
            let (k, v) = kv.map_err(read_err)?;
            let k = k.as_ref();
            let parse_err = |e: serde_json::Error| {
                read_err(format!("record {}: {e}", String::from_utf8_lossy(k)))
            };
            let d = &mut m.data;
            if k == APPLIED {
                m.applied = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == MEMBERSHIP {
                m.membership = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == CA {
                d.ca = Some(serde_json::from_slice(&v).map_err(parse_err)?);
            } else if k == PENDING {
                d.pending = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == REMOVED {
                d.removed = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == NETWORK {
                d.network = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == ACME {
                d.acme = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == SECRETS {
                d.secrets = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == CONFIGS {
                d.configs = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == VOLUMES {
                d.volumes = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == JOBS {
                d.jobs = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == USAGE_TOTALS {
                d.usage.totals = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k.starts_with(USAGE.as_bytes()) {
                let r: zlayer_model::UsageRecord = serde_json::from_slice(&v).map_err(parse_err)?;
                d.usage.records.insert(r.container_id.clone(), r);
            } else if k == PEERS {
                d.peers = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if k == NEXT_GENERATION {
                d.next_generation = serde_json::from_slice(&v).map_err(parse_err)?;
            } else if let Some(id) = k.strip_prefix(LIVENESS.as_bytes()) {
                let id = u64::from_be_bytes(id.try_into().map_err(|_| {
                    read_err(format!(
                        "record {}: bad node id",
                        String::from_utf8_lossy(k)
                    ))
                })?);
                liveness.push((id, serde_json::from_slice(&v).map_err(parse_err)?));
            } else if let Some(rest) = k.strip_prefix(REPORT.as_bytes()) {
                let id = rest
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        read_err(format!(
                            "record {}: bad node id",
                            String::from_utf8_lossy(k)
                        ))
                    })?;
                reports.push((
                    u64::from_be_bytes(id),
                    serde_json::from_slice(&v).map_err(parse_err)?,
                ));
            } else if k.starts_with(NODE.as_bytes()) {
                let n: crate::NodeRecord = serde_json::from_slice(&v).map_err(parse_err)?;
                d.nodes.insert(n.id, n);
            } else if k.starts_with(DEPLOYMENT.as_bytes()) {
                let r: crate::DeploymentRecord = serde_json::from_slice(&v).map_err(parse_err)?;
                d.deployments.insert(r.name.clone(), r);
            } else if k.starts_with(ASSIGNMENT.as_bytes()) {
                let a: zlayer_model::Assignment = serde_json::from_slice(&v).map_err(parse_err)?;
                d.assignments.insert(crate::AssignmentKey::of(&a), a);
            } else if k.starts_with(TOKEN.as_bytes()) {
                let t: crate::TokenRecord = serde_json::from_slice(&v).map_err(parse_err)?;
                d.tokens.insert(t.id.clone(), t);
            }
        }
        // A node's record holds its liveness as of its last full write; the
        // liveness record is newer when heartbeats came since.
        for (id, l) in liveness {
            if let Some(n) = m.data.nodes.get_mut(&id) {
                if l.heartbeats >= n.heartbeats {
                    n.set_liveness(l);
                }
            }
        }
        Self::move_reports_out_of_node_records(&tree, &mut m.data)?;
        for (id, r) in reports {
            if let Some(n) = m.data.nodes.get_mut(&id) {
                n.replica_reports.push(r);
            }
        }
        Self::replace_a_damaged_snapshot(&last_snapshot, &m)?;
        let applied = m.applied.map_or(0, |l| l.index);
        Ok(StateMachine {
            tree,
            last_snapshot,
            machine: Arc::new(RwLock::new(m)),
            applied_tx: Arc::new(watch::channel(applied).0),
        })
    }

    /// A snapshot file that does not parse (a disk fault, a hand edit)
    /// would stop Raft the first time it is asked for. The state it was
    /// taken from is in sled, applied at least as far (the file is written
    /// after the state), so it is set aside and a new one taken from the
    /// state, which covers every entry the log may have purged.
    fn replace_a_damaged_snapshot(
        last_snapshot: &LastSnapshot,
        m: &Machine,
    ) -> Result<(), StorageError<u64>> {
        let Some(bytes) = last_snapshot.read().map_err(read_err)? else {
            return Ok(());
        };
        let Err(e) = serde_json::from_slice::<SnapshotFile>(&bytes) else {
            return Ok(());
        };
        let aside = last_snapshot.set_aside().map_err(write_err)?;
        let (_, fresh) = Self::snapshot_of(m)?;
        last_snapshot.save(&fresh).map_err(write_err)?;
        tracing::warn!(
            "{} did not parse ({e}); moved to {} and taken again from the applied state",
            last_snapshot.path().display(),
            aside.display()
        );
        Ok(())
    }

    /// Stores held before reports had keys of their own kept them inside
    /// the node's record: this moves them out, once, in one atomic batch.
    fn move_reports_out_of_node_records(
        tree: &sled::Tree,
        data: &mut ClusterState,
    ) -> Result<(), StorageError<u64>> {
        let mut batch = sled::Batch::default();
        let mut touched = Vec::new();
        for (id, n) in data
            .nodes
            .iter()
            .filter(|(_, n)| !n.replica_reports.is_empty())
        {
            touched.push(Touched::Node(*id));
            touched.extend(crate::model::report_slots(*id, &n.replica_reports));
        }
        if touched.is_empty() {
            return Ok(());
        }
        for t in &touched {
            if let Some(v) = value(data, t).map_err(write_err)? {
                batch.insert(key(t), v);
            }
        }
        tree.apply_batch(batch).map_err(write_err)?;
        tree.flush().map_err(write_err)?;
        Ok(())
    }

    fn move_snapshot_out_of_sled(
        tree: &sled::Tree,
        last_snapshot: &LastSnapshot,
    ) -> Result<(), StorageError<u64>> {
        let Some(bytes) = tree.get(SNAPSHOT_IN_SLED).map_err(read_err)? else {
            return Ok(());
        };
        if last_snapshot.read().map_err(read_err)?.is_none() {
            last_snapshot.save(&bytes).map_err(write_err)?;
        }
        tree.remove(SNAPSHOT_IN_SLED).map_err(write_err)?;
        tree.flush().map_err(write_err)?;
        Ok(())
    }

    async fn save_snapshot(&self, bytes: Vec<u8>) -> Result<(), StorageError<u64>> {
        let file = self.last_snapshot.clone();
        tokio::task::spawn_blocking(move || file.save(&bytes))
            .await
            .map_err(write_err)?
            .map_err(write_err)
    }

    /// Reads the applied state. Keep `f` short: applying waits for it.
    pub fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&self.lock_read().data)
    }

    /// The index of the last applied entry, updated after every apply.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    fn lock_read(&self) -> std::sync::RwLockReadGuard<'_, Machine> {
        self.machine.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_write(&self) -> std::sync::RwLockWriteGuard<'_, Machine> {
        self.machine.write().unwrap_or_else(|p| p.into_inner())
    }

    fn put_position(batch: &mut sled::Batch, m: &Machine) -> Result<(), StorageError<u64>> {
        batch.insert(APPLIED, serde_json::to_vec(&m.applied).map_err(write_err)?);
        batch.insert(
            MEMBERSHIP,
            serde_json::to_vec(&m.membership).map_err(write_err)?,
        );
        Ok(())
    }

    fn snapshot_of(m: &Machine) -> Result<(Meta, Vec<u8>), StorageError<u64>> {
        let meta = SnapshotMeta {
            last_log_id: m.applied,
            last_membership: m.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                m.applied.map_or(0, |l| l.leader_id.term),
                m.applied.map_or(0, |l| l.index)
            ),
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            data: m.data.clone(),
        };
        Ok((meta, serde_json::to_vec(&file).map_err(write_err)?))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (meta, bytes) = Self::snapshot_of(&self.lock_read())?;
        self.save_snapshot(bytes.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        let m = self.lock_read();
        Ok((m.applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (batch, responses, applied) = {
            let mut m = self.lock_write();
            let mut touched = Vec::new();
            let mut responses = Vec::new();
            for entry in entries {
                m.applied = Some(entry.log_id);
                responses.push(match entry.payload {
                    EntryPayload::Blank => Response::Done,
                    EntryPayload::Normal(cmd) => m.data.apply(cmd, &mut touched),
                    EntryPayload::Membership(mem) => {
                        m.membership = StoredMembership::new(Some(entry.log_id), mem);
                        Response::Done
                    }
                });
            }
            touched.sort();
            touched.dedup();
            let mut batch = sled::Batch::default();
            for t in &touched {
                match value(&mut m.data, t).map_err(write_err)? {
                    Some(v) => batch.insert(key(t), v),
                    None => batch.remove(key(t)),
                }
            }
            Self::put_position(&mut batch, &m)?;
            (batch, responses, m.applied.map_or(0, |l| l.index))
        };
        self.tree.apply_batch(batch).map_err(write_err)?;
        self.tree.flush_async().await.map_err(write_err)?;
        self.applied_tx.send_replace(applied);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(read_err)?;
        let (batch, applied) = {
            let mut m = self.lock_write();
            let mut batch = sled::Batch::default();
            for k in self.tree.iter().keys() {
                batch.remove(k.map_err(read_err)?);
            }
            *m = Machine {
                applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                data: file.data,
            };
            for t in all_records(&m.data) {
                if let Some(v) = value(&mut m.data, &t).map_err(write_err)? {
                    batch.insert(key(&t), v);
                }
            }
            Self::put_position(&mut batch, &m)?;
            (batch, m.applied.map_or(0, |l| l.index))
        };
        self.tree.apply_batch(batch).map_err(write_err)?;
        self.tree.flush_async().await.map_err(write_err)?;
        // After the state: a crash between the two leaves an older snapshot
        // than the state, which Raft allows; the reverse would claim entries
        // the state has not applied.
        self.save_snapshot(bytes).await?;
        self.applied_tx.send_replace(applied);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let file = self.last_snapshot.clone();
        let read = tokio::task::spawn_blocking(move || file.read())
            .await
            .map_err(read_err)?;
        let Some(bytes) = read.map_err(read_err)? else {
            return Ok(None);
        };
        let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
            read_err(format!(
                "{}: {e}; restart the node to set it aside and take a new one",
                self.last_snapshot.path().display()
            ))
        })?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

fn all_records(d: &ClusterState) -> Vec<Touched> {
    let mut out = vec![
        Touched::Ca,
        Touched::NextGeneration,
        Touched::Pending,
        Touched::Removed,
        Touched::Network,
        Touched::Peers,
        Touched::Acme,
        Touched::Secrets,
        Touched::Configs,
        Touched::Volumes,
        Touched::Jobs,
        Touched::UsageTotals,
    ];
    for (id, n) in &d.nodes {
        out.push(Touched::Node(*id));
        out.extend(crate::model::report_slots(*id, &n.replica_reports));
    }
    out.extend(d.deployments.keys().cloned().map(Touched::Deployment));
    out.extend(d.tokens.keys().cloned().map(Touched::Token));
    out.extend(d.assignments.keys().cloned().map(Touched::Assignment));
    out.extend(d.usage.records.keys().cloned().map(Touched::Usage));
    out
}

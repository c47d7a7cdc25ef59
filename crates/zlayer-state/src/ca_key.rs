//! The cluster CA's private key, held by voters only. It is never in the
//! Raft log: the founding node keeps it in a file, and a node promoted to
//! voter fetches it from the leader over mTLS (`/cluster/ca-key`, answered
//! only to a caller whose certificate belongs to a current voter), so that
//! whichever voter leads next can admit joining nodes. Learners never
//! receive it.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::transport::PeerClient;
use crate::{Raft, StateMachine};

pub const CA_KEY: &str = "/cluster/ca-key";

/// The key as this member holds it (or not), and where it is kept on disk.
#[derive(Clone, Default)]
pub struct CaKey {
    key: Arc<RwLock<Option<String>>>,
    file: Option<PathBuf>,
}

impl CaKey {
    /// Reads the key file, if there is one.
    pub fn load(file: Option<PathBuf>) -> CaKey {
        let key = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .filter(|k| !k.trim().is_empty());
        CaKey {
            key: Arc::new(RwLock::new(key)),
            file,
        }
    }

    pub fn get(&self) -> Option<String> {
        self.key.read().ok().and_then(|k| k.clone())
    }

    /// Keeps the key, in memory and (readable by root only) in its file.
    pub fn set(&self, pem: String) -> std::io::Result<()> {
        if let Some(f) = &self.file {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let tmp = f.with_extension("tmp");
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            out.write_all(pem.as_bytes())?;
            out.sync_all()?;
            std::fs::rename(&tmp, f)?;
        }
        if let Ok(mut k) = self.key.write() {
            *k = Some(pem);
        }
        Ok(())
    }
}

/// Whether the member whose certificate has `fingerprint` is a voter now.
pub(crate) fn caller_is_voter(raft: &Raft, machine: &StateMachine, fingerprint: &str) -> bool {
    let Some(id) = machine.read(|s| {
        s.nodes
            .values()
            .find(|n| n.holds_certificate(fingerprint))
            .map(|n| n.id)
    }) else {
        return false;
    };
    let m = raft.metrics().borrow().membership_config.clone();
    let voter = m.membership().voter_ids().any(|v| v == id);
    voter
}

/// While this member is a voter without the key, asks the leader for it.
pub(crate) fn spawn_fetcher(
    raft: Raft,
    me: u64,
    key: CaKey,
    client: PeerClient,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if key.get().is_some() {
                continue;
            }
            let metrics = raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership().clone();
            if !membership.voter_ids().any(|v| v == me) {
                continue;
            }
            let Some(leader) = metrics.current_leader.filter(|l| *l != me) else {
                continue;
            };
            let Some(addr) = membership.get_node(&leader).map(|n| n.addr.clone()) else {
                continue;
            };
            match client
                .call::<_, Option<String>>(&addr, CA_KEY, &(), Duration::from_secs(5))
                .await
            {
                Ok(Some(pem)) => match key.set(pem) {
                    Ok(()) => tracing::info!("holding the cluster CA key as a voter"),
                    Err(e) => tracing::warn!("keeping the CA key: {e}"),
                },
                Ok(None) => tracing::debug!("the leader does not hold the CA key"),
                Err(e) => tracing::debug!("fetching the CA key from {addr}: {e}"),
            }
        }
    })
}

//! What a node keeps about its cluster membership in `<data>/cluster/`:
//! `node.json` (its id, name and address), its certificate and key, the
//! cluster CA's certificate, and `raft/` (the Raft store). The key file is
//! readable by root only; every file is written whole, then renamed, so a
//! crash leaves either the old file or the new one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zlayer_state::pki::NodeIdentity;

use crate::ControlError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    pub id: u64,
    pub name: String,
    /// `ip:port` of this node's mTLS endpoint.
    pub addr: String,
    /// The managers that admitted this node (see `zlayer_state::authz`).
    #[serde(default)]
    pub seed: Vec<zlayer_state::authz::SeedMember>,
    /// Set when the node joined from behind NAT: how it brings up its mesh
    /// before the cluster's state reaches it.
    #[serde(default)]
    pub nat: Option<zlayer_state::NatSeed>,
}

pub struct ClusterFiles {
    dir: PathBuf,
}

impl ClusterFiles {
    pub fn new(dir: &Path) -> ClusterFiles {
        ClusterFiles {
            dir: dir.to_path_buf(),
        }
    }

    /// `<data>/cluster`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn raft_dir(&self) -> PathBuf {
        self.dir.join("raft")
    }

    /// The CA key, on voters only (see `zlayer_state::ca_key`).
    pub fn ca_key_file(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    fn node_json(&self) -> PathBuf {
        self.dir.join("node.json")
    }

    /// Whether this data dir already belongs to a cluster.
    pub fn exists(&self) -> bool {
        self.node_json().exists()
    }

    /// Refuses to make a new identity over a Raft store that holds data:
    /// without `node.json` nothing says whose it is, so nothing is deleted.
    pub fn refuse_orphaned_store(&self) -> Result<(), ControlError> {
        let raft = self.raft_dir();
        let holds_data = std::fs::read_dir(&raft).is_ok_and(|mut d| d.next().is_some());
        if holds_data {
            return Err(ControlError::Files(format!(
                "{} holds a Raft store but {} is missing, so this node cannot tell which cluster it belongs to; refusing to found or join a cluster over it (nothing was deleted). Restore node.json from a backup to resume, or move {} aside to start this node afresh",
                raft.display(),
                self.node_json().display(),
                raft.display()
            )));
        }
        Ok(())
    }

    pub fn load(&self) -> Result<(NodeFile, NodeIdentity), ControlError> {
        self.finish_renewal()?;
        let read = |name: &str| {
            let p = self.dir.join(name);
            std::fs::read_to_string(&p)
                .map_err(|e| ControlError::Files(format!("{}: {e}", p.display())))
        };
        let node: NodeFile = serde_json::from_str(&read("node.json")?)
            .map_err(|e| ControlError::Files(format!("{}: {e}", self.node_json().display())))?;
        let identity = NodeIdentity {
            ca_pem: read("ca.pem")?,
            cert_pem: read("node.pem")?,
            key_pem: read("node.key")?,
        };
        Ok((node, identity))
    }

    /// How this node brings up its mesh before the cluster's state reaches
    /// it, if it joined from behind NAT (unreadable or absent: it did not).
    pub fn nat_seed(&self) -> Option<zlayer_state::NatSeed> {
        let text = std::fs::read_to_string(self.node_json()).ok()?;
        serde_json::from_str::<NodeFile>(&text).ok()?.nat
    }

    /// Writes the identity first and `node.json` last: a data dir with
    /// `node.json` is complete.
    pub fn save(&self, node: &NodeFile, identity: &NodeIdentity) -> Result<(), ControlError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| ControlError::Files(format!("{}: {e}", self.dir.display())))?;
        self.write("ca.pem", &identity.ca_pem, 0o644)?;
        self.write("node.pem", &identity.cert_pem, 0o644)?;
        self.write("node.key", &identity.key_pem, 0o600)?;
        let json =
            serde_json::to_string_pretty(node).map_err(|e| ControlError::Files(e.to_string()))?;
        self.write("node.json", &json, 0o644)
    }

    /// Replaces the node's key and certificate with renewed ones. Both are
    /// written in full beside the current pair first, then moved over it key
    /// first; [`ClusterFiles::load`] finishes a move a crash cut short, so
    /// the pair on disk always matches.
    pub fn save_renewed(&self, identity: &NodeIdentity) -> Result<(), ControlError> {
        self.write(NEXT_KEY, &identity.key_pem, 0o600)?;
        self.write(NEXT_CERT, &identity.cert_pem, 0o644)?;
        self.finish_renewal()
    }

    fn finish_renewal(&self) -> Result<(), ControlError> {
        let next_cert = self.dir.join(NEXT_CERT);
        if !next_cert.exists() {
            // A key without its certificate is a renewal that never got its answer saved.
            let _ = std::fs::remove_file(self.dir.join(NEXT_KEY));
            return Ok(());
        }
        let moved = |from: &str, to: &str| {
            let (from, to) = (self.dir.join(from), self.dir.join(to));
            match std::fs::rename(&from, &to) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ControlError::Files(
                    format!("{} -> {}: {e}", from.display(), to.display()),
                )),
                _ => Ok(()),
            }
        };
        moved(NEXT_KEY, "node.key")?;
        moved(NEXT_CERT, "node.pem")?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ControlError::Files(format!("{}: {e}", self.dir.display())))
    }

    fn write(&self, name: &str, text: &str, mode: u32) -> Result<(), ControlError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let err = |e: std::io::Error| ControlError::Files(format!("{}: {e}", path.display()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }
}

/// A renewed key and certificate, before they replace `node.key` and `node.pem`.
const NEXT_KEY: &str = "node.next.key";
const NEXT_CERT: &str = "node.next.pem";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_cut_short_at_any_step_loads_a_matching_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ClusterFiles::new(dir.path());
        let node = NodeFile {
            id: 7,
            name: "n1".into(),
            addr: "10.0.0.1:7443".into(),
            seed: Vec::new(),
            nat: None,
        };
        let old = NodeIdentity {
            ca_pem: "ca".into(),
            cert_pem: "cert-1".into(),
            key_pem: "key-1".into(),
        };
        let pair = |i: &NodeIdentity| (i.cert_pem.clone(), i.key_pem.clone());
        let new = ("cert-2".to_string(), "key-2".to_string());
        // The steps of save_renewed, each a place a crash may stop it.
        let crash_after: [&dyn Fn(); 4] = [
            &|| files.write(NEXT_KEY, "key-2", 0o600).unwrap(),
            &|| files.write(NEXT_CERT, "cert-2", 0o644).unwrap(),
            &|| std::fs::rename(dir.path().join(NEXT_KEY), dir.path().join("node.key")).unwrap(),
            &|| std::fs::rename(dir.path().join(NEXT_CERT), dir.path().join("node.pem")).unwrap(),
        ];
        for stop in 0..crash_after.len() {
            files.save(&node, &old).unwrap();
            for step in &crash_after[..=stop] {
                step();
            }
            let (_, loaded) = files.load().unwrap();
            let want = if stop == 0 { pair(&old) } else { new.clone() };
            assert_eq!(pair(&loaded), want, "crash after step {stop}");
            assert!(!dir.path().join(NEXT_KEY).exists() && !dir.path().join(NEXT_CERT).exists());
        }
    }

    #[test]
    fn saved_identity_reads_back_and_the_key_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ClusterFiles::new(&dir.path().join("cluster"));
        assert!(!files.exists());
        let node = NodeFile {
            id: 7,
            name: "n1".into(),
            addr: "10.0.0.1:7443".into(),
            seed: Vec::new(),
            nat: None,
        };
        let identity = NodeIdentity {
            ca_pem: "ca".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        };
        files.save(&node, &identity).expect("save");
        assert!(files.exists());
        let (n, i) = files.load().expect("load");
        assert_eq!(n, node);
        assert_eq!(
            (i.ca_pem, i.cert_pem, i.key_pem),
            ("ca".into(), "cert".into(), "key".into())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("cluster/node.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_raft_store_without_node_json_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ClusterFiles::new(&dir.path().join("cluster"));
        files
            .refuse_orphaned_store()
            .expect("no store at all is fine");
        std::fs::create_dir_all(files.raft_dir()).expect("mkdir");
        std::fs::write(files.raft_dir().join("db"), b"log").expect("write");
        let err = files.refuse_orphaned_store().unwrap_err().to_string();
        assert!(err.contains("holds a Raft store but"), "{err}");
        assert!(err.contains("nothing was deleted"), "{err}");
        assert!(files.raft_dir().join("db").exists());
    }
}

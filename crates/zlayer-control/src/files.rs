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

    pub fn load(&self) -> Result<(NodeFile, NodeIdentity), ControlError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_identity_reads_back_and_the_key_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ClusterFiles::new(&dir.path().join("cluster"));
        assert!(!files.exists());
        let node = NodeFile {
            id: 7,
            name: "n1".into(),
            addr: "10.0.0.1:7443".into(),
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
}

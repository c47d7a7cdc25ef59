//! On-disk layout of one container under `<data>/containers/<id>/`:
//! `container.json` (the request), `bundle/config.json` (OCI), `shim.json`
//! (shim and init pids), `exit.json` (written once by the shim), `log`.
//! The libcontainer state lives under `<data>/runtime/<id>/`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, RuntimeError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// Unix time in milliseconds.
    pub finished_at_ms: u64,
    /// What the container used, read after its last process ended and
    /// before its cgroup and network went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A finished container's use of the node.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of all its processes (the cgroup's).
    pub cpu_ns: u64,
    /// The most memory its cgroup held at once (v1 `max_usage_in_bytes`,
    /// v2 `memory.peak`; 0 where the kernel keeps no peak).
    pub memory_peak_bytes: u64,
    /// Bytes its network interface received and sent.
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

impl ExitInfo {
    /// Docker-style single number: the code, or 128 + signal.
    pub fn status(&self) -> i32 {
        self.code.unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
    pub fn describe(&self) -> String {
        if self.oom_killed {
            "OOM killed (memory limit reached)".into()
        } else if let Some(s) = self.signal {
            format!("killed by signal {s}")
        } else {
            format!("exited with code {}", self.code.unwrap_or(-1))
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ShimRecord {
    pub shim_pid: i32,
    pub init_pid: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Running {
        init_pid: i32,
    },
    Exited(ExitInfo),
    /// No shim and no exit record: it never started, or its shim was killed.
    Lost,
}

#[derive(Clone, Debug)]
pub struct ContainerDir {
    pub data_dir: PathBuf,
    pub id: String,
}

impl ContainerDir {
    pub fn new(data_dir: impl Into<PathBuf>, id: impl Into<String>) -> Self {
        ContainerDir {
            data_dir: data_dir.into(),
            id: id.into(),
        }
    }
    pub fn dir(&self) -> PathBuf {
        self.data_dir.join("containers").join(&self.id)
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.data_dir.join("runtime")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("log")
    }
    pub(crate) fn request_path(&self) -> PathBuf {
        self.dir().join("container.json")
    }
    pub(crate) fn bundle(&self) -> PathBuf {
        self.dir().join("bundle")
    }
    fn shim_path(&self) -> PathBuf {
        self.dir().join("shim.json")
    }
    fn exit_path(&self) -> PathBuf {
        self.dir().join("exit.json")
    }

    pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
        let tmp = path.with_extension("tmp");
        let body = serde_json::to_vec(value).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        fs::write(&tmp, body).at(&tmp)?;
        fs::File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
        fs::rename(&tmp, path).at(path)
    }

    pub(crate) fn write_shim(&self, rec: &ShimRecord) -> Result<(), RuntimeError> {
        Self::write_json(&self.shim_path(), rec)
    }
    pub(crate) fn write_exit(&self, info: &ExitInfo) -> Result<(), RuntimeError> {
        Self::write_json(&self.exit_path(), info)
    }

    pub(crate) fn shim(&self) -> Option<ShimRecord> {
        serde_json::from_slice(&fs::read(self.shim_path()).ok()?).ok()
    }

    pub fn exit_info(&self) -> Option<ExitInfo> {
        serde_json::from_slice(&fs::read(self.exit_path()).ok()?).ok()
    }

    /// Where the container is now, from the files its shim keeps.
    pub fn status(&self) -> Status {
        if let Some(e) = self.exit_info() {
            return Status::Exited(e);
        }
        match self.shim() {
            Some(rec) if pid_alive(rec.shim_pid) && pid_alive(rec.init_pid) => Status::Running {
                init_pid: rec.init_pid,
            },
            Some(rec) if pid_alive(rec.shim_pid) => Status::Running {
                init_pid: rec.init_pid,
            },
            _ => self.exit_info().map_or(Status::Lost, Status::Exited),
        }
    }

    /// Sends `signal` to the container's init (all of it, for SIGKILL via the pid namespace).
    pub fn signal(&self, signal: i32) -> Result<(), RuntimeError> {
        let rec = self
            .shim()
            .ok_or_else(|| RuntimeError::NotRunning(self.id.clone()))?;
        if self.exit_info().is_some() {
            return Err(RuntimeError::NotRunning(self.id.clone()));
        }
        let sig = nix::sys::signal::Signal::try_from(signal)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.init_pid), sig)?;
        Ok(())
    }

    /// Removes the container's directory and any libcontainer state left behind.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        // An empty or path-like id would name a parent: every container's files.
        if !is_plain_id(&self.id) {
            return Err(RuntimeError::Spec(format!(
                "refusing to remove container {:?}: not a container id",
                self.id
            )));
        }
        let state = self.runtime_root().join(&self.id);
        if state.exists() {
            if let Ok(mut c) = libcontainer::container::Container::load(state.clone()) {
                let _ = c.delete(true);
            }
            let _ = fs::remove_dir_all(&state);
        }
        match fs::remove_dir_all(self.dir()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::Io {
                path: self.dir(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// A non-empty single path component that is not `.` or `..`.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains('/')
}

pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // A zombie is not alive for our purposes.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// Eight hex digits from the kernel's random pool, for container ids that
/// must not collide with a leftover of an earlier one (time-based if
/// `/dev/urandom` cannot be read).
pub fn random_suffix() -> String {
    let mut b = [0u8; 4];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = n.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod id_tests {
    use super::*;

    /// A replica that never started has an empty container id; removing it
    /// once removed every container's directory.
    #[test]
    fn removing_an_empty_or_path_like_id_touches_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        let other = t.path().join("containers").join("web-1-abcd");
        fs::create_dir_all(&other).expect("mkdir");
        for id in ["", ".", "..", "a/b"] {
            assert!(ContainerDir::new(t.path(), id).remove().is_err(), "{id:?}");
        }
        assert!(other.exists());
        ContainerDir::new(t.path(), "web-1-abcd")
            .remove()
            .expect("remove");
        assert!(!other.exists());
    }
}

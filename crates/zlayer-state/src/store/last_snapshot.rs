//! The last Raft snapshot, as one file beside the sled database. In sled,
//! each snapshot (the whole state, megabytes with thousands of job tasks)
//! stayed on disk until sled's lazy segment reuse got to it, so a busy node
//! kept a dozen; a file is replaced in place.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub(crate) struct LastSnapshot {
    path: PathBuf,
}

impl LastSnapshot {
    pub(crate) fn in_dir(dir: &Path) -> LastSnapshot {
        LastSnapshot {
            path: dir.join("raft-snapshot.json"),
        }
    }

    /// Replaces the file with `bytes` whole: a crash leaves the old one or
    /// the new one, never a part.
    pub(crate) fn save(&self, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves a file that does not parse out of the way, beside it as
    /// `raft-snapshot.json.damaged` (the last one kept), for a look later.
    pub(crate) fn set_aside(&self) -> std::io::Result<PathBuf> {
        let aside = self.path.with_extension("json.damaged");
        std::fs::rename(&self.path, &aside)?;
        Ok(aside)
    }

    pub(crate) fn read(&self) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

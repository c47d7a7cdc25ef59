//! The instruction cache: `<images>/build-cache/<key>.json`. A key is the
//! sha256 of the previous key and what the instruction will do (its text
//! after variable expansion, plus the content of the files it copies), so
//! a key names one exact result. An entry records the layer the instruction
//! made and when; it is only used while that layer is still in the store.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CachedLayer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    /// RFC 3339; becomes the image's `created` when this is its last layer.
    pub created: String,
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(images_root: &Path) -> std::io::Result<Cache> {
        let dir = images_root.join("build-cache");
        fs::create_dir_all(&dir)?;
        Ok(Cache { dir })
    }

    pub fn get(&self, key: &str) -> Option<CachedLayer> {
        let bytes = fs::read(self.dir.join(format!("{key}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Written by rename, so a crash leaves the old entry or the new one.
    pub fn put(&self, key: &str, entry: &CachedLayer) -> std::io::Result<()> {
        let body = serde_json::to_vec_pretty(entry)?;
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        fs::write(&tmp, body)?;
        fs::rename(&tmp, self.dir.join(format!("{key}.json")))
    }
}

/// The key of a step: `prev` chained with what the step does.
pub fn chain(prev: &str, step: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(step.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain_and_entries_round_trip() {
        let a = chain("root", "RUN x");
        assert_eq!(a, chain("root", "RUN x"));
        assert_ne!(a, chain("root", "RUN y"));
        assert_ne!(chain(&a, "RUN z"), chain(&chain("root", "RUN y"), "RUN z"));
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path()).unwrap();
        assert!(cache.get(&a).is_none());
        let e = CachedLayer {
            media_type: "m".into(),
            digest: "sha256:1".into(),
            size: 3,
            diff_id: "sha256:2".into(),
            created: "2026-01-01T00:00:00Z".into(),
        };
        cache.put(&a, &e).unwrap();
        assert_eq!(cache.get(&a).unwrap().digest, "sha256:1");
    }
}

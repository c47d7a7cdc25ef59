//! What a node does to its host process and data dir before it starts its
//! parts: modes that keep other host users out of the data dir (a
//! container's upper dir must not be reachable by them, compare
//! CVE-2021-41091), a higher open-files limit for connection floods, and an
//! OOM score that makes the kernel pick a container before the node.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `0711` on the data dir (others may pass through to the API socket's
/// directory entry only by name), `0700` on what holds images, containers'
/// layers, cluster keys, logs and the stores.
const PRIVATE: &[&str] = &[
    "images",
    "cluster",
    "logs",
    "state",
    "containers",
    "named-volumes",
];

pub(crate) fn harden_data_dir(data_dir: &Path) -> Result<(), String> {
    let set = |p: &Path, mode: u32| {
        std::fs::create_dir_all(p)
            .and_then(|()| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    set(data_dir, 0o711)?;
    for sub in PRIVATE {
        set(&data_dir.join(sub), 0o700)?;
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; every connection and
/// container costs descriptors.
pub(crate) fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("raising the open-files limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("reading the open-files limit: {e}"),
    }
}

/// The node's own OOM score: under memory pressure the kernel should kill
/// a container, not the process that runs them all. Lowering it needs
/// `CAP_SYS_RESOURCE`; without it the node says so and runs on.
/// Containers get 0 explicitly (see `zlayer-runtime`), so they do not
/// inherit this.
pub(crate) fn protect_from_oom() {
    const NODE_SCORE: &str = "-500";
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", NODE_SCORE) {
        tracing::warn!(
            "could not lower this node's oom_score_adj to {NODE_SCORE} ({e}; it needs CAP_SYS_RESOURCE): under memory pressure the kernel may pick the node"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_lets_nobody_else_in() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        harden_data_dir(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o711);
        for sub in PRIVATE {
            assert_eq!(mode(&data.join(sub)), 0o700, "{sub}");
        }
    }
}

//! Secret values for one container, on a tmpfs of its own outside the data
//! dir, so no disk ever holds them and they are gone with the container
//! (or the machine):
//! - `files/NAME` (mode 0400, owned by the container's user), mounted
//!   read-only at `/run/secrets` inside the container;
//! - `env/NAME` (root only), which the shim puts into the process env;
//! - `bundle/config.json`, the OCI config with those values, that the
//!   container is created from. The bundle in the data dir keeps `$S:NAME`.
//!
//! It must not fetch or decide anything: the agent hands it the values.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{IoContext, RuntimeError};

/// Where each container's secrets tmpfs is mounted, as `ROOT/<id>`.
pub const DEFAULT_SECRETS_ROOT: &str = "/run/zlayer/secrets";

/// Where the container sees its secret files.
pub const SECRETS_TARGET: &str = "/run/secrets";

/// What one container gets.
#[derive(Default)]
pub struct SecretValues {
    /// name -> value, as files under `/run/secrets`.
    pub files: BTreeMap<String, Vec<u8>>,
    /// name -> value, for `$S:NAME` env entries.
    pub env: BTreeMap<String, Vec<u8>>,
}

impl SecretValues {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.env.is_empty()
    }

    fn bytes(&self) -> usize {
        self.files
            .values()
            .chain(self.env.values())
            .map(Vec::len)
            .sum()
    }
}

pub fn staged_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Mounts the container's tmpfs and writes its values; returns its path.
pub fn stage(
    root: &Path,
    id: &str,
    values: &SecretValues,
    uid: u32,
    gid: u32,
) -> Result<PathBuf, RuntimeError> {
    // Names become file names: the spec validates them as DNS labels, and
    // this is checked again here, where a bad one would write outside.
    let names = values.files.keys().chain(values.env.keys());
    if let Some(bad) = names.chain([&id.to_string()]).find(|n| !is_plain_name(n)) {
        return Err(RuntimeError::Spec(format!(
            "`{bad}` cannot name a secret file: it must be one plain path component"
        )));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .at(root)?;
    let dir = staged_dir(root, id);
    fs::DirBuilder::new().mode(0o700).create(&dir).at(&dir)?;
    // The values, the bundle config and room for the config's own size.
    let size = values.bytes() * 2 + 1024 * 1024;
    let opts = format!("mode=0700,size={size}");
    mount(
        Some("zlayer-secrets"),
        &dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(opts.as_str()),
    )?;
    let written = write_values(&dir, values, uid, gid);
    if written.is_err() {
        unstage(root, id);
    }
    written.map(|()| dir)
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

fn write_values(dir: &Path, values: &SecretValues, uid: u32, gid: u32) -> Result<(), RuntimeError> {
    let files = dir.join("files");
    fs::DirBuilder::new()
        .mode(0o500)
        .create(&files)
        .at(&files)?;
    for (name, value) in &values.files {
        let path = files.join(name);
        write_private(&path, value)?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).at(&path)?;
    }
    std::os::unix::fs::chown(&files, Some(uid), Some(gid)).at(&files)?;
    let env = dir.join("env");
    fs::DirBuilder::new().mode(0o700).create(&env).at(&env)?;
    for (name, value) in &values.env {
        write_private(&env.join(name), value)?;
    }
    Ok(())
}

fn write_private(path: &Path, value: &[u8]) -> Result<(), RuntimeError> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .at(path)?;
    f.write_all(value).at(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o400)).at(path)
}

/// The value staged for `$S:NAME` env entries.
pub(crate) fn env_value(dir: &Path, name: &str) -> Result<String, RuntimeError> {
    let path = dir.join("env").join(name);
    let bytes = fs::read(&path).at(&path)?;
    String::from_utf8(bytes).map_err(|_| {
        RuntimeError::Spec(format!(
            "secret `{name}` is not UTF-8 text, so it cannot be an environment variable; mount it as a file (`secrets: [{name}]`)"
        ))
    })
}

/// Unmounts and removes the container's tmpfs; safe to repeat.
pub fn unstage(root: &Path, id: &str) {
    let dir = staged_dir(root, id);
    if !dir.exists() {
        return;
    }
    if let Err(e) = umount2(&dir, MntFlags::MNT_DETACH) {
        if e != nix::errno::Errno::EINVAL {
            tracing::warn!(container = id, "unmounting its secrets: {e}");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that would climb out of the tmpfs (or name another
    /// container's) is refused before anything is mounted or written.
    #[test]
    fn a_name_that_is_not_one_plain_component_is_refused_before_anything_is_made() {
        let root = std::env::temp_dir().join(format!("zl-secrets-test-{}", std::process::id()));
        for (id, name) in [
            ("c1", "../../etc/cron.d/x"),
            ("c1", "a/b"),
            ("c1", ".."),
            ("../c2", "db"),
        ] {
            let mut values = SecretValues::default();
            values.env.insert(name.to_string(), b"v".to_vec());
            let got = stage(&root, id, &values, 0, 0);
            assert!(
                matches!(got, Err(RuntimeError::Spec(ref m)) if m.contains("one plain path component")),
                "{id} {name}: {got:?}"
            );
            assert!(!root.exists(), "{id} {name}: something was made");
        }
    }
}

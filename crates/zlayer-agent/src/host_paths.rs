//! Which host paths a spec may bind-mount into a container on this node. A
//! spec comes from whoever holds an API token or runs `up`, and a bind
//! mount of a host path gives its containers that path as root, so none is
//! allowed unless the node names its prefix (`--allow-host-path`). `/`,
//! `/proc`, `/sys`, `/dev` and zlayer's data dir are refused even then.

use std::path::{Path, PathBuf};

const NEVER: &[&str] = &["/proc", "/sys", "/dev"];

#[derive(Clone, Debug, Default)]
pub struct HostPaths {
    allowed: Vec<PathBuf>,
    data_dir: PathBuf,
}

impl HostPaths {
    pub fn new(allowed: &[PathBuf], data_dir: &Path) -> HostPaths {
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        HostPaths {
            allowed: allowed.iter().map(|p| real(p)).collect(),
            data_dir: real(data_dir),
        }
    }

    /// The host path `source` really names, if this node lets containers
    /// mount it. Symlinks are resolved first, so a link cannot lead past
    /// the checks.
    pub fn check(&self, source: &str) -> Result<PathBuf, String> {
        self.check_use(source, "bind mount")
    }

    /// The same rules for a host file a spec names for another `what`
    /// (the ingress's certificate and key files).
    pub fn check_use(&self, source: &str, what: &str) -> Result<PathBuf, String> {
        let real = std::fs::canonicalize(source)
            .map_err(|e| format!("{what} source {source} cannot be used on this node: {e}"))?;
        let shown = if real == Path::new(source) {
            source.to_string()
        } else {
            format!("{source} (which is {})", real.display())
        };
        if real == Path::new("/") {
            return Err(format!(
                "{what} of {shown} is always refused: it is the host's root"
            ));
        }
        if let Some(never) = NEVER.iter().find(|n| real.starts_with(n)) {
            return Err(format!(
                "{what} of {shown} is always refused: it is under the host's {never}"
            ));
        }
        if real.starts_with(&self.data_dir) || self.data_dir.starts_with(&real) {
            return Err(format!(
                "{what} of {shown} is always refused: it exposes zlayer's data dir {}",
                self.data_dir.display()
            ));
        }
        if self.allowed.iter().any(|a| real.starts_with(a)) {
            return Ok(real);
        }
        Err(if self.allowed.is_empty() {
            format!(
                "{what} of host path {shown} refused: this node allows no host paths; start it with `zlayer node start --allow-host-path PREFIX` to allow a prefix"
            )
        } else {
            format!(
                "{what} of host path {shown} refused: it is not under a prefix this node allows ({}); add one with `--allow-host-path PREFIX`",
                self.allowed
                    .iter()
                    .map(|a| a.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_prefixes_and_never_the_host_or_the_data_dir() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        let share = d.path().join("share");
        std::fs::create_dir_all(data.join("images")).unwrap();
        std::fs::create_dir_all(share.join("models")).unwrap();
        std::os::unix::fs::symlink("/", share.join("root-link")).unwrap();
        let s = |p: &Path| p.to_str().unwrap().to_string();

        let none = HostPaths::new(&[], &data);
        let err = none.check(&s(&share.join("models"))).unwrap_err();
        assert!(err.ends_with("this node allows no host paths; start it with `zlayer node start --allow-host-path PREFIX` to allow a prefix"), "{err}");

        let some = HostPaths::new(&[share.clone(), PathBuf::from("/")], &data);
        assert!(some.check(&s(&share.join("models"))).is_ok());
        for bad in ["/", "/proc/1", "/sys", "/dev/null"] {
            let err = some.check(bad).unwrap_err();
            assert!(err.contains("is always refused"), "{bad}: {err}");
        }
        let err = some.check(&s(&share.join("root-link"))).unwrap_err();
        assert!(
            err.contains("(which is /)") && err.contains("always refused"),
            "{err}"
        );
        for bad in [data.join("images"), d.path().to_path_buf()] {
            let err = some.check(&s(&bad)).unwrap_err();
            assert!(err.contains("exposes zlayer's data dir"), "{err}");
        }
        let only_share = HostPaths::new(std::slice::from_ref(&share), &data);
        let err = only_share.check("/etc").unwrap_err();
        assert!(
            err.contains("is not under a prefix this node allows"),
            "{err}"
        );
    }
}

//! The node's WireGuard key pair and the name of its device.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use defguard_wireguard_rs::key::Key;
use sha2::{Digest, Sha256};

use crate::error::OverlayError;

/// A WireGuard private key; its `Debug` shows only the public half.
#[derive(Clone)]
pub struct PrivateKey(pub(crate) Key);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_base64())
    }
}

impl PrivateKey {
    pub fn public_base64(&self) -> String {
        self.0.public_key().to_string()
    }

    /// The key as `wg` and `wg-quick` write it.
    pub fn to_base64(&self) -> String {
        self.0.to_string()
    }

    pub fn generate() -> PrivateKey {
        PrivateKey(Key::generate())
    }
}

/// The base64 public key of a base64 private key, or why it is not one.
pub fn public_key_of(private_base64: &str) -> Result<String, String> {
    parse(private_base64).map(|k| k.public_base64())
}

fn parse(text: &str) -> Result<PrivateKey, String> {
    Key::try_from(text.trim())
        .map(PrivateKey)
        .map_err(|e| format!("not a base64 WireGuard key: {e}"))
}

/// Reads the key at `path`, or makes one there (mode 0600, written whole
/// before it appears). A key file others may read is tightened to 0600.
pub fn load_or_create_key(path: &Path) -> Result<PrivateKey, OverlayError> {
    let err = |reason: String| OverlayError::Key {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| err(format!("cannot make it 0600: {e}")))?;
            }
            parse(&text).map_err(err)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::generate();
            let tmp = path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| err(e.to_string()))?;
            f.write_all(format!("{}\n", key.to_base64()).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| err(e.to_string()))?;
            std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The device's name: unique per host (the UAPI socket directory
/// `/var/run/wireguard` is shared by every network namespace), derived from
/// the node's data dir, and within the kernel's 15 bytes.
pub fn interface_name(data_dir: &Path) -> String {
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    format!("zlwg{}", &hex::encode(digest)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg.key");
        let made = load_or_create_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create_key(&path).unwrap();
        assert_eq!(made.public_base64(), again.public_base64());
        assert_eq!(public_key_of(&made.to_base64()), Ok(made.public_base64()));
    }

    #[test]
    fn a_readable_key_file_is_tightened_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg.key");
        let key = PrivateKey::generate();
        std::fs::write(&path, key.to_base64()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "not a key").unwrap();
        let e = load_or_create_key(&path).unwrap_err().to_string();
        assert!(e.contains("not a base64 WireGuard key"), "{e}");
    }

    #[test]
    fn interface_names_fit_the_kernel_and_differ_per_data_dir() {
        let a = interface_name(Path::new("/var/lib/zlayer"));
        let b = interface_name(Path::new("/tmp/zlc/n2"));
        assert!(a.len() <= 15 && b.len() <= 15);
        assert_ne!(a, b);
    }
}

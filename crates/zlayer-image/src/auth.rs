//! Registry credentials. `zlayer login` writes zlayer's own file (Docker's
//! `config.json` format, mode 0600; `$ZLAYER_AUTH_FILE`, else
//! `~/.config/zlayer/auth.json`). Lookups try that file first, then
//! Docker's `~/.docker/config.json` (including its credential helpers).
//! Secrets only ever leave this module inside `RegistryAuth`, whose `Debug`
//! redacts them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use docker_credential::DockerCredential;
use oci_client::secrets::RegistryAuth;
use serde_json::{Map, Value};

use crate::error::ImageError;

/// zlayer's credentials file for this user.
pub fn default_auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("ZLAYER_AUTH_FILE") {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/root/.config"));
    config.join("zlayer/auth.json")
}

/// The keys a registry may be filed under; Docker Hub's is a historic URL.
fn server_keys(registry: &str) -> Vec<String> {
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ]
}

/// Credentials for `registry`, or anonymous access when none are filed.
pub fn credentials_for(registry: &str, auth_file: &Path) -> Result<RegistryAuth, ImageError> {
    for key in server_keys(registry) {
        if auth_file.exists() {
            let f = fs::File::open(auth_file).map_err(|e| ImageError::Credentials {
                path: auth_file.into(),
                message: e.to_string(),
            })?;
            if let Ok(c) = docker_credential::get_credential_from_reader(f, &key) {
                return Ok(to_registry_auth(c));
            }
        }
        if let Ok(c) = docker_credential::get_credential(&key) {
            return Ok(to_registry_auth(c));
        }
    }
    Ok(RegistryAuth::Anonymous)
}

fn to_registry_auth(c: DockerCredential) -> RegistryAuth {
    match c {
        DockerCredential::UsernamePassword(u, p) => RegistryAuth::Basic(u, p),
        DockerCredential::IdentityToken(t) => RegistryAuth::Bearer(t),
    }
}

fn read_config(path: &Path) -> Result<Map<String, Value>, ImageError> {
    let err = |message: String| ImageError::Credentials {
        path: path.into(),
        message,
    };
    match fs::read(path) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(err("not a JSON object".into())),
            Err(e) => Err(err(e.to_string())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(err(e.to_string())),
    }
}

fn write_config(path: &Path, config: &Map<String, Value>) -> Result<(), ImageError> {
    let err = |e: std::io::Error| ImageError::Credentials {
        path: path.into(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(config).expect("a JSON map serializes");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&body).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// Files `user`/`password` for `registry`, keeping every other entry.
pub fn store_credentials(
    auth_file: &Path,
    registry: &str,
    user: &str,
    password: &str,
) -> Result<(), ImageError> {
    let mut config = read_config(auth_file)?;
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        return Err(ImageError::Credentials {
            path: auth_file.into(),
            message: "`auths` is not an object".into(),
        });
    };
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let key = server_keys(registry).remove(0);
    auths.insert(key, serde_json::json!({ "auth": token }));
    write_config(auth_file, &config)
}

/// Forgets `registry`; returns whether an entry was there.
pub fn remove_credentials(auth_file: &Path, registry: &str) -> Result<bool, ImageError> {
    let mut config = read_config(auth_file)?;
    let mut removed = false;
    if let Some(Value::Object(auths)) = config.get_mut("auths") {
        for key in server_keys(registry) {
            removed |= auths.remove(&key).is_some();
        }
    }
    if removed {
        write_config(auth_file, &config)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_then_lookup_then_logout() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        store_credentials(&file, "127.0.0.1:5000", "alice", "s3cret").unwrap();
        let mode = fs::metadata(&file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        match credentials_for("127.0.0.1:5000", &file).unwrap() {
            RegistryAuth::Basic(u, p) => assert_eq!((u.as_str(), p.as_str()), ("alice", "s3cret")),
            other => panic!("expected basic credentials, got {other:?}"),
        }
        assert!(
            !format!("{:?}", credentials_for("127.0.0.1:5000", &file).unwrap()).contains("s3cret")
        );
        assert!(remove_credentials(&file, "127.0.0.1:5000").unwrap());
        assert!(!remove_credentials(&file, "127.0.0.1:5000").unwrap());
    }
}

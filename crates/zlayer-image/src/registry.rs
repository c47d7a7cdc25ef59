//! One registry connection for one image reference: parsing the reference,
//! choosing HTTPS or plain HTTP (only for loopback registries and ones the
//! user names as insecure), credentials, and turning `oci-client` errors
//! into messages that say what to do.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::error::ImageError;

/// How to reach registries; shared by pull, push and login.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) that may be spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// zlayer's credentials file; `None` means [`crate::default_auth_file`].
    pub auth_file: Option<PathBuf>,
    /// Credentials for this one use, before any file (a spec's
    /// `image.pull_secret`).
    pub credentials: Option<BasicCredentials>,
}

/// A user and password for a registry; `Debug` never shows the password.
#[derive(Clone)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

impl BasicCredentials {
    /// `USER:PASSWORD` (a trailing newline, as a file has, is dropped).
    pub fn parse(text: &str) -> Option<BasicCredentials> {
        let (user, password) = text.trim_end_matches(['\n', '\r']).split_once(':')?;
        (!user.is_empty()).then(|| BasicCredentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicCredentials({}, <password>)", self.user)
    }
}

pub(crate) struct Remote {
    pub client: Client,
    pub reference: Reference,
    pub auth: RegistryAuth,
    pub registry: String,
    pub plain_http: bool,
}

impl Remote {
    pub fn connect(reference: &str, opts: &RegistryOptions) -> Result<Self, ImageError> {
        let parsed: Reference = reference.parse().map_err(|e| ImageError::BadReference {
            reference: reference.into(),
            what: format!("{e}"),
        })?;
        let auth = match &opts.credentials {
            Some(c) => RegistryAuth::Basic(c.user.clone(), c.password.clone()),
            None => {
                let auth_file = opts
                    .auth_file
                    .clone()
                    .unwrap_or_else(crate::auth::default_auth_file);
                crate::auth::credentials_for(parsed.registry(), &auth_file)?
            }
        };
        Ok(Self::with_auth(parsed, auth, opts))
    }

    pub fn with_auth(reference: Reference, auth: RegistryAuth, opts: &RegistryOptions) -> Self {
        let registry = reference.resolve_registry().to_string();
        let plain_http = is_loopback(&registry) || opts.insecure.contains(&registry);
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![registry.clone()])
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(30)),
            max_concurrent_download: 4,
            ..Default::default()
        };
        Remote {
            client: Client::new(config),
            reference,
            auth,
            registry,
            plain_http,
        }
    }

    /// Maps a client error to one that names the cause and the fix.
    pub fn error(&self, e: OciDistributionError) -> ImageError {
        let registry = self.registry.clone();
        let reference = self.reference.whole();
        let unauthorized = || ImageError::Unauthorized {
            reference: reference.clone(),
            registry: registry.clone(),
            hint: match self.auth {
                RegistryAuth::Anonymous => {
                    format!("it needs credentials: run `zlayer login {registry}`")
                }
                _ => format!(
                    "the stored credentials were rejected: run `zlayer login {registry}` again"
                ),
            },
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
            OciDistributionError::ImageManifestNotFoundError(_) => ImageError::RemoteNotFound {
                reference,
                registry,
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    ImageError::RemoteNotFound {
                        reference,
                        registry,
                    }
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    unauthorized()
                } else {
                    ImageError::Registry {
                        registry,
                        message: envelope
                            .errors
                            .iter()
                            .map(|e| format!("{:?}: {}", e.code, e.message))
                            .collect::<Vec<_>>()
                            .join("; "),
                    }
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => ImageError::RemoteNotFound {
                reference,
                registry,
            },
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => unauthorized(),
            OciDistributionError::RequestError(ref re) if re.is_connect() || re.is_timeout() => {
                ImageError::Unreachable {
                    registry,
                    reason: error_chain(&e),
                    hint: if self.plain_http {
                        ""
                    } else {
                        " (if it serves plain HTTP, pass --insecure-registry HOST:PORT)"
                    },
                }
            }
            other => ImageError::Registry {
                registry,
                message: error_chain(&other),
            },
        }
    }
}

/// `zlayer login`: checks `user`/`password` against `registry` before they
/// are stored. The registry's `/v2/` answers 401 to anything else.
pub async fn check_login(
    registry: &str,
    user: &str,
    password: &str,
    opts: &RegistryOptions,
) -> Result<(), ImageError> {
    let probe = format!("{registry}/zlayer-login-check:latest");
    let reference: Reference = probe.parse().map_err(|e| ImageError::BadReference {
        reference: registry.into(),
        what: format!("{e}"),
    })?;
    let remote = Remote::with_auth(
        reference,
        RegistryAuth::Basic(user.into(), password.into()),
        opts,
    );
    // A catalog listing needs valid credentials wherever auth is on; a
    // registry without auth accepts anyone, as Docker's login does too.
    match remote
        .client
        .catalog(&remote.reference, &remote.auth, Some(1), None)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match remote.error(e) {
            ImageError::RemoteNotFound { .. } => Ok(()),
            ImageError::Unauthorized { registry, .. } => Err(ImageError::Unauthorized {
                reference: registry.clone(),
                registry,
                hint: "wrong username or password".into(),
            }),
            other => Err(other),
        },
    }
}

/// The error and its causes on one line; reqwest's top level alone only
/// says "error sending request".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// `localhost[:port]`, `127.x.x.x[:port]` or `[::1][:port]`.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {

    #[test]
    fn pull_credentials_parse_and_never_print_the_password() {
        let c = BasicCredentials::parse("puller:s3cr:et\n").expect("user:password");
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("puller", "s3cr:et")
        );
        assert!(BasicCredentials::parse("no-colon").is_none());
        assert!(BasicCredentials::parse(":pw").is_none());
        let opts = RegistryOptions {
            credentials: Some(c),
            ..Default::default()
        };
        assert!(!format!("{opts:?}").contains("s3cr"));
    }

    use super::{is_loopback, BasicCredentials, RegistryOptions};

    #[test]
    fn loopback_registries() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("localhost.example.com"));
    }
}

//! Token (bearer) auth against a real registry: Debian's `docker-registry`
//! on loopback, configured for token auth, with a token server in this test
//! that checks basic credentials and signs ES256 JWTs (the Docker token
//! protocol). The pushes and pulls go through zlayer's own code. Needs
//! `scripts/setup` (docker-registry, images/out/busybox.tar).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use zlayer_image::{ImageStore, RegistryOptions, Silent};

const USER: &str = "bob";
const PASSWORD: &str = "token-pw";

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Signer {
    key: jsonwebtoken::EncodingKey,
    x5c: String,
}

/// Answers `GET /token?scope=repository:NAME:ACTIONS&service=…` for USER.
async fn token_endpoint(
    signer: Arc<Signer>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if !authorized {
        return Response::builder()
            .status(401)
            .body(Full::new(Bytes::from_static(
                b"{\"details\":\"bad credentials\"}",
            )))
            .expect("response");
    }
    let query = req.uri().query().unwrap_or("");
    let access: Vec<serde_json::Value> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .filter_map(|scope| {
            let scope = scope
                .replace("%3A", ":")
                .replace("%2C", ",")
                .replace("%2F", "/");
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({
                "type": kind, "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": "zlayer-test-issuer", "sub": USER, "aud": "zlayer-test",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}"),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.x5c = Some(vec![signer.x5c.clone()]);
    let token = jsonwebtoken::encode(&header, &claims, &signer.key).expect("sign");
    let body = serde_json::json!({ "token": token, "access_token": token, "expires_in": 300 });
    Response::new(Full::new(Bytes::from(body.to_string())))
}

async fn serve_tokens(signer: Arc<Signer>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let signer = signer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let signer = signer.clone();
                    async move { Ok::<_, std::convert::Infallible>(token_endpoint(signer, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn start_registry(dir: &Path, port: u16, realm: SocketAddr, cert: &Path) -> Registry {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{ level: error }}\nstorage: {{ filesystem: {{ rootdirectory: {} }} }}\n\
             http: {{ addr: 127.0.0.1:{port} }}\n\
             auth: {{ token: {{ realm: \"http://{realm}/token\", service: zlayer-test, issuer: zlayer-test-issuer, rootcertbundle: {} }} }}\n",
            dir.join("data").display(),
            cert.display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("registry.log")).expect("log");
    let registry = Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry must be installed (scripts/setup)"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return registry;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not listen on 127.0.0.1:{port}");
}

fn busybox_archive() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/out/busybox.tar");
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-images",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_with_bearer_tokens() {
    let dir = tempfile::tempdir().expect("tmp");
    let cert = rcgen::generate_simple_self_signed(vec!["zlayer-test-issuer".into()]).expect("cert");
    let cert_path = dir.path().join("issuer.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    let signer = Arc::new(Signer {
        key: jsonwebtoken::EncodingKey::from_ec_pem(cert.key_pair.serialize_pem().as_bytes())
            .expect("key"),
        x5c: base64::engine::general_purpose::STANDARD.encode(cert.cert.der()),
    });
    let realm = serve_tokens(signer).await;
    let port = free_port();
    let _registry = start_registry(dir.path(), port, realm, &cert_path);
    let registry = format!("127.0.0.1:{port}");
    let reference = format!("{registry}/team/busybox:1");

    // Without credentials the registry's bearer challenge cannot be met.
    let auth_file = dir.path().join("auth.json");
    let opts = RegistryOptions {
        insecure: vec![],
        auth_file: Some(auth_file.clone()),
        credentials: None,
    };
    let source = ImageStore::open(dir.path().join("source")).expect("store");
    source.import(&busybox_archive()).expect("import busybox");
    let denied = source
        .push("busybox", Some(&reference), &opts, Arc::new(Silent))
        .await
        .expect_err("anonymous push must be refused");
    assert!(denied.to_string().contains("refused access"), "{denied}");

    // With credentials: a push token, then a pull token, each from the token server.
    zlayer_image::store_credentials(&auth_file, &registry, USER, PASSWORD)
        .expect("store credentials");
    let pushed = source
        .push("busybox", Some(&reference), &opts, Arc::new(Silent))
        .await
        .expect("push with a bearer token");
    let target = ImageStore::open(dir.path().join("target")).expect("store");
    let pulled = target
        .pull(&reference, &opts, Arc::new(Silent))
        .await
        .expect("pull with a bearer token");
    assert_eq!(pulled.digest, pushed.digest);
    target.resolve(&reference).expect("pulled image resolves");

    // Wrong password: the token server refuses, and the error says so.
    zlayer_image::store_credentials(&auth_file, &registry, USER, "nope")
        .expect("store credentials");
    let again = ImageStore::open(dir.path().join("again")).expect("store");
    let err = again
        .pull(&reference, &opts, Arc::new(Silent))
        .await
        .expect_err("wrong password must be refused");
    assert!(err.to_string().contains("refused access"), "{err}");
}

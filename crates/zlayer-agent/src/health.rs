//! Health probes. `http` and `tcp` go to the replica's own address from the
//! node; `command` runs inside the container through `zlayer exec`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use zlayer_spec::{CheckType, HealthCheck};

/// Runs one probe; `Ok(())` means healthy.
pub async fn probe(
    check: &HealthCheck,
    ip: Ipv4Addr,
    timeout: Duration,
    exe: &Path,
    data_dir: &Path,
    container_id: &str,
) -> Result<(), String> {
    let fut = async {
        match check.kind {
            CheckType::Tcp => {
                let port = check.port.unwrap_or(0) as u16;
                tokio::net::TcpStream::connect(SocketAddr::from((ip, port)))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            CheckType::Http => http_probe(check, ip).await,
            CheckType::Command => {
                let cmd = check.command.clone().unwrap_or_default();
                let status = exec_child(exe, data_dir, container_id, &cmd)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .await
                    .map_err(|e| e.to_string())?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("command exited with {status}"))
                }
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
}

/// `zlayer exec --id ID -- ARGS` as a child process (libcontainer forks,
/// which the multi-threaded node must not), with no stdin, killed when
/// dropped. Command health checks and `exec` through the API use it.
pub fn exec_child(
    exe: &Path,
    data_dir: &Path,
    container_id: &str,
    args: &[String],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["exec", "--id", container_id, "--"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn http_probe(check: &HealthCheck, ip: Ipv4Addr) -> Result<(), String> {
    let url = check.url.clone().unwrap_or_default();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad url {url}: {e}"))?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let stream = tokio::net::TcpStream::connect(SocketAddr::from((ip, port)))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", uri.host().unwrap_or("localhost"))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let want = check.expect_status.unwrap_or(200);
    if resp.status().as_u16() == want {
        Ok(())
    } else {
        Err(format!("status {} (want {want})", resp.status().as_u16()))
    }
}

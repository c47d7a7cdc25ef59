//! The demo server in the `demo` image: serves `/`, `/health` and `/metrics`
//! and exits cleanly on SIGTERM. Behaviour comes from the environment so
//! tests can make it slow, sick, crash or run out of memory:
//!
//! - `PORT` (8080): port to listen on, on all addresses
//! - `MESSAGE` ("hello"): body prefix of `/`
//! - `SLOW_START` (0): seconds to wait before listening
//! - `FAIL_HEALTH_AFTER` (unset): seconds after which `/health` answers 500
//! - `EXIT_AFTER` (unset) and `EXIT_CODE` (1): exit by itself this many
//!   seconds after the process started; with 0 it exits before listening,
//!   so no health probe can ever pass
//! - `ALLOC_MB` (0): allocate and touch this much memory at start
//! - `PROBE_SYSCALLS` (unset): print how `clone` with each namespace flag,
//!   `clone3` and `io_uring_setup` fare (`name: ok` or `name: ERRNO`), exit
//!
//! `/slow/MS` answers like `/` after MS milliseconds: a request that is
//! still in flight when something stops the replica. `/headers` echoes the
//! request's version and headers, `/echo` says how many body bytes came,
//! and `/ws` is a WebSocket echo. It speaks HTTP/1.1 and h2c.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

mod ws;

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok()?.parse().ok()
}

struct App {
    started: Instant,
    fail_after: Option<Duration>,
    message: String,
    host: String,
    registry: Registry,
    requests: IntCounterVec,
}

impl App {
    fn handle(&self, req: &Request<()>, body_len: usize) -> Response<Full<Bytes>> {
        let path = match req.uri().path() {
            p if p.starts_with("/slow/") => "/slow",
            p => p,
        };
        let (status, body) = match path {
            "/" | "/slow" => (
                StatusCode::OK,
                format!("{} from {}\n", self.message, self.host),
            ),
            "/headers" => {
                let mut text = format!("version: {:?}\n", req.version());
                for (k, v) in req.headers() {
                    text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
                }
                (StatusCode::OK, text)
            }
            "/echo" => (StatusCode::OK, format!("{body_len} bytes\n")),
            "/health" => match self.fail_after {
                Some(t) if self.started.elapsed() >= t => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "unhealthy\n".into())
                }
                _ => (StatusCode::OK, "ok\n".into()),
            },
            "/metrics" => {
                let mut buf = Vec::new();
                let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
                (StatusCode::OK, String::from_utf8_lossy(&buf).into_owned())
            }
            _ => (
                StatusCode::NOT_FOUND,
                format!("not found on {}\n", self.host),
            ),
        };
        self.requests
            .with_label_values(&[path, status.as_str()])
            .inc();
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp
    }
}

fn slow_ms<B>(req: &Request<B>) -> Option<u64> {
    req.uri().path().strip_prefix("/slow/")?.parse().ok()
}

/// What a container's seccomp profile lets through, one line per call.
fn probe_syscalls() {
    let report = |name: &str, rc: libc::c_long| {
        let verdict = if rc >= 0 {
            "ok".to_string()
        } else {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EPERM) => "EPERM".into(),
                Some(libc::ENOSYS) => "ENOSYS".into(),
                Some(e) => format!("errno {e}"),
                None => "error".into(),
            }
        };
        println!("{name}: {verdict}");
    };
    let flags = [
        ("CLONE_NEWNS", libc::CLONE_NEWNS),
        ("CLONE_NEWUSER", libc::CLONE_NEWUSER),
        ("CLONE_NEWNET", libc::CLONE_NEWNET),
        ("CLONE_NEWPID", libc::CLONE_NEWPID),
        ("CLONE_NEWUTS", libc::CLONE_NEWUTS),
        ("CLONE_NEWIPC", libc::CLONE_NEWIPC),
        ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP),
        ("plain fork", 0),
    ];
    for (name, flag) in flags {
        // SAFETY: a fork-like clone; the child exits at once without
        // touching anything the parent owns.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flag | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if rc == 0 {
            // SAFETY: the child leaves without running destructors.
            unsafe { libc::_exit(0) };
        }
        if rc > 0 {
            // SAFETY: waiting for the child just made.
            unsafe { libc::waitpid(rc as libc::pid_t, std::ptr::null_mut(), 0) };
        }
        report(&format!("clone({name})"), rc);
    }
    let mut args = [0u64; 11];
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: clone_args is 88 bytes of u64s; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), 88usize) };
    if rc == 0 {
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    report("clone3", rc);
    let mut params = [0u8; 120];
    // SAFETY: io_uring_params is 120 bytes; the kernel fills it.
    let rc = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if rc >= 0 {
        // SAFETY: closing the ring fd just made.
        unsafe { libc::close(rc as libc::c_int) };
    }
    report("io_uring_setup", rc);
}

/// UDP_PORT: answers each datagram with `MESSAGE from HOST: payload`.
async fn udp_echo(port: u16, app: &'static App) {
    let socket = match tokio::net::UdpSocket::bind(("0.0.0.0", port)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: cannot listen on udp port {port}: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("demo: answering udp on :{port}");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let head = format!("{} from {}: ", app.message, app.host);
            let answer = [head.as_bytes(), &buf[..n]].concat();
            let _ = socket.send_to(&answer, from).await;
        }
    });
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::var_os("PROBE_SYSCALLS").is_some() {
        probe_syscalls();
        return;
    }
    let born = Instant::now();
    let exit_code = || env_u64("EXIT_CODE").unwrap_or(1) as i32;
    let exit_at = env_u64("EXIT_AFTER").map(|s| born + Duration::from_secs(s));
    let mut hog = Vec::new();
    if let Some(mb) = env_u64("ALLOC_MB") {
        for _ in 0..mb {
            hog.push(vec![1u8; 1 << 20]);
        }
        eprintln!("allocated {} MiB", hog.len());
    }
    if let Some(s) = env_u64("SLOW_START") {
        eprintln!("slow start: waiting {s}s");
        tokio::time::sleep(Duration::from_secs(s)).await;
    }
    if exit_at.is_some_and(|at| Instant::now() >= at) {
        eprintln!(
            "demo: exiting with code {} as asked, before listening",
            exit_code()
        );
        std::process::exit(exit_code());
    }
    let port = env_u64("PORT").unwrap_or(8080);
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new("demo_requests_total", "HTTP requests served"),
        &["path", "code"],
    )
    .expect("metric");
    registry
        .register(Box::new(requests.clone()))
        .expect("register");
    let app: &'static App = Box::leak(Box::new(App {
        started: Instant::now(),
        fail_after: env_u64("FAIL_HEALTH_AFTER").map(Duration::from_secs),
        message: std::env::var("MESSAGE").unwrap_or_else(|_| "hello".into()),
        host: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        registry,
        requests,
    }));
    if let Some(udp) = env_u64("UDP_PORT") {
        udp_echo(udp as u16, app).await;
    }
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port as u16)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: cannot listen on port {port}: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("demo: listening on :{port}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("sigterm handler");
    let exit_timer = async {
        match exit_at {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exit_timer);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                        if let Some(ms) = slow_ms(&req) {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        if req.uri().path() == "/ws" {
                            return Ok::<_, Infallible>(ws::upgrade(req));
                        }
                        let (parts, body) = req.into_parts();
                        let len = body.collect().await.map_or(0, |b| b.to_bytes().len());
                        let req = Request::from_parts(parts, ());
                        Ok::<_, Infallible>(app.handle(&req, len))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
            _ = term.recv() => {
                eprintln!("demo: SIGTERM, shutting down");
                std::process::exit(0);
            }
            _ = &mut exit_timer => {
                eprintln!("demo: exiting with code {} as asked", exit_code());
                std::process::exit(exit_code());
            }
        }
    }
}

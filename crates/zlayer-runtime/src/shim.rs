//! The shim: `zlayer shim DIR`, one per container. It detaches from the
//! agent (fork, setsid), creates and starts the container through
//! libcontainer with stdout/stderr on a pipe it copies into the replica's
//! log (rotated, see `logfile`), reports the init pid on its stdout, then
//! reaps the init and records its exit in `DIR/exit.json`. The agent may
//! die and come back at any point.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::cgroup::{remove_leftovers, CgroupStats};
use crate::config::ContainerConfig;
use crate::error::{IoContext, RuntimeError};
use crate::layout::{ContainerDir, ExitInfo, ShimRecord};
use crate::logfile::{copy_to_log, LogLimit};
use crate::oci::build_spec;

#[derive(Debug, Serialize, Deserialize)]
pub struct ShimStarted {
    pub init_pid: i32,
    pub shim_pid: i32,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum ShimReport {
    Started { init_pid: i32, shim_pid: i32 },
    Failed { error: String },
}

/// Starts a container in its own shim and waits until it runs (or fails).
/// Blocking: call from a blocking thread. `exe` is the zlayer binary.
pub fn spawn_shim(
    exe: &Path,
    dir: &ContainerDir,
    cfg: &ContainerConfig,
) -> Result<ShimStarted, RuntimeError> {
    let d = dir.dir();
    fs::create_dir_all(&d).at(&d)?;
    ContainerDir::write_json(&dir.request_path(), cfg)?;
    let shim_log = d.join("shim.log");
    let mut child = Command::new(exe)
        .arg("shim")
        .arg(&d)
        .arg("--data-dir")
        .arg(&dir.data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&shim_log).at(&shim_log)?)
        .env_remove("RUST_LOG")
        .spawn()
        .at(exe)?;
    let stdout = child.stdout.take().expect("piped stdout");
    // The first shim process forks and exits at once; its child reports here.
    let _ = child.wait();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).at(&d)?;
    match serde_json::from_str::<ShimReport>(&line) {
        Ok(ShimReport::Started { init_pid, shim_pid }) => Ok(ShimStarted { init_pid, shim_pid }),
        Ok(ShimReport::Failed { error }) => Err(RuntimeError::Shim {
            id: dir.id.clone(),
            reason: error,
        }),
        Err(_) => {
            let log = fs::read_to_string(&shim_log).unwrap_or_default();
            Err(RuntimeError::Shim {
                id: dir.id.clone(),
                reason: format!("shim exited without a report: {}", log.trim()),
            })
        }
    }
}

/// Entry point of `zlayer shim DIR --data-dir D`. Never returns.
pub fn shim_main(container_dir: &Path, data_dir: &Path) -> ! {
    // SAFETY: called first thing in a fresh single-threaded process.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
        Err(e) => {
            report(&ShimReport::Failed {
                error: format!("fork: {e}"),
            });
            std::process::exit(1)
        }
    }
    let _ = setsid();
    let dir = reaper_for(container_dir, data_dir);
    let (container, cfg, log_pipe) = match create_and_start(&dir) {
        Ok(v) => v,
        Err(e) => {
            report(&ShimReport::Failed {
                error: e.to_string(),
            });
            let _ = dir_cleanup_failed(&dir);
            std::process::exit(1)
        }
    };
    let init_pid = container.pid().map(|p| p.as_raw()).unwrap_or(0);
    let shim_pid = std::process::id() as i32;
    let _ = dir.write_shim(&ShimRecord { shim_pid, init_pid });
    report(&ShimReport::Started { init_pid, shim_pid });
    detach_stdio();
    drop(container);
    drop(cfg);
    // The read end of the output pipe is the one descriptor the waiting
    // process keeps across exec.
    let log_fd = log_pipe.into_raw_fd();
    let _ = nix::fcntl::fcntl(
        log_fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    );
    // Re-exec to shed libcontainer's heap while we wait: exec keeps our pid,
    // so the container's init stays our child.
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let err = Command::new(exe)
        .arg("shim")
        .arg(container_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--wait")
        .arg(init_pid.to_string())
        .arg("--log-fd")
        .arg(log_fd.to_string())
        .exec();
    let _ = writeln!(std::io::stderr(), "shim re-exec failed: {err}");
    shim_wait(container_dir, data_dir, init_pid, Some(log_fd))
}

/// Second half of the shim (`zlayer shim DIR --wait PID [--log-fd FD]`):
/// copy the container's output from FD into its log, reap the init, record
/// its exit, delete the container. Never returns.
pub fn shim_wait(container_dir: &Path, data_dir: &Path, init_pid: i32, log_fd: Option<RawFd>) -> ! {
    let dir = reaper_for(container_dir, data_dir);
    let cfg = fs::read(dir.request_path())
        .ok()
        .and_then(|b| serde_json::from_slice::<ContainerConfig>(&b).ok());
    let cgroup_path = cfg
        .as_ref()
        .map(|c| c.cgroup_path.clone())
        .unwrap_or_else(|| format!("/zlayer/{}", dir.id));
    let net_counters = cfg.as_ref().and_then(|c| c.net_counters.clone());
    let copied = log_fd.map(|fd| {
        // SAFETY: the first half of the shim handed this descriptor over and
        // nothing else in this process owns it.
        let pipe = unsafe { File::from_raw_fd(fd) };
        let (path, limit) = cfg
            .as_ref()
            .map_or((dir.log_path(), LogLimit::default()), |c| {
                (c.log_path.clone(), c.log_limit)
            });
        copy_in_background(pipe, path, limit)
    });
    drop(cfg);
    // Waiting is all this process does until the container exits.
    crate::trim::release_clean_file_pages();
    let (code, signal) = reap_until(init_pid);
    let oom_killed = CgroupStats::read(&cgroup_path).oom_kills > 0;
    let usage = crate::layout::Usage::read(&cgroup_path, net_counters.as_deref());
    if let Ok(mut c) = libcontainer::container::Container::load(dir.runtime_root().join(&dir.id)) {
        let _ = c.delete(true);
    }
    remove_leftovers(&cgroup_path);
    if let Some(done) = copied {
        // Every writer is gone with the container, so the copy ends at once;
        // the bound covers a descriptor leaked somewhere unexpected.
        let _ = done.recv_timeout(std::time::Duration::from_secs(2));
    }
    let finished_at_ms = now_ms();
    let _ = dir.write_exit(&ExitInfo {
        code,
        signal,
        oom_killed,
        finished_at_ms,
        usage: Some(usage),
    });
    std::process::exit(0)
}

/// Makes this process the reaper of the container's orphans and names its directory.
fn reaper_for(container_dir: &Path, data_dir: &Path) -> ContainerDir {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let id = container_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ContainerDir::new(data_dir, id)
}

/// Copies the container's output into its log on a small thread; the
/// receiver hears when the last writer has closed the pipe.
fn copy_in_background(pipe: File, path: PathBuf, limit: LogLimit) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("log".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            copy_to_log(pipe, &path, limit);
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        let _ = writeln!(std::io::stderr(), "shim: no log copier: {e}");
    }
    rx
}

/// Creates and starts the container with its stdout and stderr on a pipe;
/// returns the pipe's read end with it.
fn create_and_start(
    dir: &ContainerDir,
) -> Result<(libcontainer::container::Container, ContainerConfig, OwnedFd), RuntimeError> {
    let req = fs::read(dir.request_path()).at(dir.request_path())?;
    let cfg: ContainerConfig =
        serde_json::from_slice(&req).map_err(|e| RuntimeError::Spec(e.to_string()))?;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(std::io::Error::from)
        .at(&cfg.log_path)?;
    let mut container = create(dir, &cfg, Some(write))?;
    container.start()?;
    Ok((container, cfg, read))
}

/// Opens `path` for appending, as a container's stdout and stderr; its
/// directory (the container's own, for a build step) may not exist yet.
pub(crate) fn append_to(path: &Path) -> Result<OwnedFd, RuntimeError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).at(parent)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .at(path)?;
    Ok(OwnedFd::from(file))
}

/// Writes the bundle and creates (but does not start) the container. With
/// `output` set, stdout and stderr go to it; otherwise they are inherited.
pub(crate) fn create(
    dir: &ContainerDir,
    cfg: &ContainerConfig,
    output: Option<OwnedFd>,
) -> Result<libcontainer::container::Container, RuntimeError> {
    crate::cgroup_mount::ensure_mounted().map_err(RuntimeError::Cgroups)?;
    let bundle = dir.bundle();
    fs::create_dir_all(&bundle).at(&bundle)?;
    let spec = build_spec(cfg)?;
    spec.save(bundle.join("config.json"))
        .map_err(|e| RuntimeError::Spec(e.to_string()))?;
    let init_bundle = match &cfg.secrets_dir {
        Some(secrets) => with_secret_env(spec, cfg, secrets)?,
        None => bundle,
    };
    let root = dir.runtime_root();
    fs::create_dir_all(&root).at(&root)?;
    let mut builder =
        ContainerBuilder::new(cfg.id.clone(), SyscallType::default()).with_root_path(&root)?;
    if let Some(out) = output {
        let err = out.try_clone().at(&cfg.log_path)?;
        builder = builder.with_stdout(out).with_stderr(err);
    }
    Ok(builder
        .as_init(&init_bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()?)
}

/// The bundle the container is created from when it has secrets: on its
/// secrets tmpfs, the `$S:` env entries holding their values.
fn with_secret_env(
    mut spec: oci_spec::runtime::Spec,
    cfg: &ContainerConfig,
    secrets: &Path,
) -> Result<PathBuf, RuntimeError> {
    if let Some(mut process) = spec.process().clone() {
        let mut env = process.env().clone().unwrap_or_default();
        for (var, name) in &cfg.secret_env {
            let value = crate::secrets::env_value(secrets, name)?;
            let prefix = format!("{var}=");
            env.retain(|kv| !kv.starts_with(&prefix));
            env.push(format!("{var}={value}"));
        }
        process.set_env(Some(env));
        spec.set_process(Some(process));
    }
    let bundle = secrets.join("bundle");
    fs::create_dir_all(&bundle).at(&bundle)?;
    spec.save(bundle.join("config.json"))
        .map_err(|e| RuntimeError::Spec(e.to_string()))?;
    Ok(bundle)
}

fn dir_cleanup_failed(dir: &ContainerDir) -> Result<(), RuntimeError> {
    let state = dir.runtime_root().join(&dir.id);
    if let Ok(mut c) = libcontainer::container::Container::load(state.clone()) {
        let _ = c.delete(true);
    }
    let _ = fs::remove_dir_all(state);
    Ok(())
}

/// Reaps children (we are a subreaper) until `init_pid` exits; returns its code or signal.
pub(crate) fn reap_until(init_pid: i32) -> (Option<i32>, Option<i32>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == init_pid => {
                return (Some(code), None)
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == init_pid => {
                return (None, Some(sig as i32))
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return (None, None),
        }
    }
}

fn report(r: &ShimReport) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
    let _ = out.flush();
}

fn detach_stdio() {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        let fd = null.as_raw_fd();
        let _ = nix::unistd::dup2(fd, 1);
        let _ = nix::unistd::dup2(fd, 2);
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

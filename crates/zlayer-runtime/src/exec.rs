//! Foreground work done in a short-lived, single-threaded CLI process:
//! running a one-off container (`zlayer run`) and exec into a running one.

use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};

use crate::cgroup::{remove_leftovers, CgroupStats};
use crate::config::ContainerConfig;
use crate::error::RuntimeError;
use crate::layout::{ContainerDir, ExitInfo};
use crate::shim::{append_to, create, now_ms, reap_until};

/// Runs `cfg` to completion with the caller's stdio and removes it afterwards.
pub fn run_foreground(dir: &ContainerDir, cfg: &ContainerConfig) -> Result<ExitInfo, RuntimeError> {
    run_to_completion(dir, cfg, None)
}

/// Like [`run_foreground`], with stdout and stderr appended to `cfg.log_path`.
pub fn run_logged(dir: &ContainerDir, cfg: &ContainerConfig) -> Result<ExitInfo, RuntimeError> {
    run_to_completion(dir, cfg, Some(append_to(&cfg.log_path)?))
}

fn run_to_completion(
    dir: &ContainerDir,
    cfg: &ContainerConfig,
    output: Option<std::os::fd::OwnedFd>,
) -> Result<ExitInfo, RuntimeError> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut container = create(dir, cfg, output)?;
    let started = container.start();
    let (code, signal) = match started {
        Ok(()) => {
            let pid = container.pid().map(|p| p.as_raw()).unwrap_or(0);
            forward_signals_to(pid);
            let status = reap_until(pid);
            stop_forwarding();
            status
        }
        Err(e) => {
            let _ = container.delete(true);
            remove_leftovers(&cfg.cgroup_path);
            return Err(e.into());
        }
    };
    let oom_killed = CgroupStats::read(&cfg.cgroup_path).oom_kills > 0;
    let usage = crate::layout::Usage::read(&cfg.cgroup_path, cfg.net_counters.as_deref());
    let _ = container.delete(true);
    remove_leftovers(&cfg.cgroup_path);
    Ok(ExitInfo {
        code,
        signal,
        oom_killed,
        finished_at_ms: now_ms(),
        usage: Some(usage),
    })
}

static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Like `docker run`'s signal proxy: Ctrl-C, SIGTERM, SIGHUP and SIGQUIT sent
/// to `zlayer run` go to the container's init, so it stops the way it would
/// under Docker and is removed afterwards, instead of being orphaned.
fn forward_signals_to(pid: i32) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    FORWARD_TO.store(pid, std::sync::atomic::Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: the handler only loads an atomic and calls kill.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Puts the default dispositions back, so that a caller running several
/// containers in turn (a build) never signals a pid that is gone.
fn stop_forwarding() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    FORWARD_TO.store(0, std::sync::atomic::Ordering::Relaxed);
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: restoring SIG_DFL installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
}

/// Runs `args` inside the running container `id` with the caller's stdio;
/// returns the exit status (128 + signal when killed).
pub fn exec_in(
    runtime_root: &Path,
    id: &str,
    args: Vec<String>,
    env: Vec<(String, String)>,
) -> Result<i32, RuntimeError> {
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(runtime_root)?
        .as_tenant()
        .with_container_args(args)
        .with_env(env.into_iter().collect())
        .with_detach(true)
        .build()?;
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

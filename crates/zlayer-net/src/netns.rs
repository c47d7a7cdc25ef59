//! Named network namespaces as bind-mounted files (like `ip netns add`),
//! created from a throwaway thread so no tokio worker changes namespace.

use std::fs::{self, File};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::NetError;

fn err(path: &Path, reason: impl ToString) -> NetError {
    NetError::Netns {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Creates a new network namespace pinned at `path`.
pub fn create_netns(path: &Path) -> Result<(), NetError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| err(path, e))?;
    }
    File::create(path).map_err(|e| err(path, e))?;
    let target = path.to_path_buf();
    std::thread::spawn(move || -> Result<(), NetError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| err(&target, e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err(&target, e))
    })
    .join()
    .map_err(|_| err(path, "namespace thread panicked"))?
}

/// Unmounts and removes a namespace file; missing is fine.
pub fn remove_netns(path: &Path) -> Result<(), NetError> {
    if !path.exists() {
        return Ok(());
    }
    let _ = umount2(path, MntFlags::MNT_DETACH);
    fs::remove_file(path).map_err(|e| err(path, e))
}

/// Runs `f` on a fresh thread inside the namespace at `path`, with its own
/// single-threaded tokio runtime (netlink sockets bind to the namespace of
/// the thread that opens them).
pub(crate) fn in_netns<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, NetError> + Send + 'static,
) -> Result<T, NetError> {
    let ns = File::open(path).map_err(|e| err(path, e))?;
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| err(&p, e))?;
        f()
    })
    .join()
    .map_err(|_| err(path, "namespace thread panicked"))?
}

/// A new namespace at `path` holding only loopback, brought up (what
/// `docker run --network none` gives: 127.0.0.1 works, nothing else does).
pub fn create_loopback_netns(path: &Path) -> Result<(), NetError> {
    create_netns(path)?;
    let result = in_netns(path, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NetError::Netlink(e.to_string()))?;
        rt.block_on(loopback_up())
    });
    if result.is_err() {
        let _ = remove_netns(path);
    }
    result
}

async fn loopback_up() -> Result<(), NetError> {
    use rtnetlink::LinkUnspec;
    let handle = crate::netlink()?;
    let idx = crate::bridge::link_index(&handle, "lo")
        .await?
        .ok_or_else(|| NetError::Netlink("no loopback device in the new namespace".into()))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await?;
    Ok(())
}

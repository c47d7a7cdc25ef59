//! Coming back from a full disk. Raft stops for good on a storage error, so
//! a node whose store could not write waits until its data dir has the
//! store's reserve free again, then re-executes itself with the same
//! arguments. Its containers keep running throughout (they belong to their
//! shims), and the new process re-adopts them as after any restart.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zlayer_control::{free_bytes, Control, STORE_RESERVE};

const SPACE_POLL: Duration = Duration::from_secs(2);

pub(crate) async fn restart_after_storage_failure(control: Arc<Control>, data_dir: PathBuf) {
    let Some(failure) = control.member.storage_failure().await else {
        return;
    };
    tracing::error!(
        "Raft stopped on a storage error: {failure}. Containers keep running; this node restarts \
         itself once {} has {} MiB free",
        data_dir.display(),
        STORE_RESERVE >> 20
    );
    while free_bytes(&data_dir).is_some_and(|free| free < STORE_RESERVE) {
        tokio::time::sleep(SPACE_POLL).await;
    }
    tracing::warn!(
        "{} has room again; restarting this node",
        data_dir.display()
    );
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec();
    tracing::error!("restarting this node failed: {err}; start it again with `zlayer node start`");
    std::process::exit(1);
}

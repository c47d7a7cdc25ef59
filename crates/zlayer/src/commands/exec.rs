//! `zlayer exec`: a command inside a running replica's container.

use std::path::Path;

use anyhow::{bail, Result};

pub fn exec(
    data: &Path,
    target: Option<String>,
    id: Option<String>,
    command: Vec<String>,
) -> Result<i32> {
    let (root, cid) = match (id, target) {
        (Some(id), _) => (data.join("runtime"), id),
        (None, Some(t)) => {
            let t = if t.contains('/') { t } else { format!("{t}/1") };
            let loc = super::block_on(super::client(data).locate(&t))?;
            let Some(l) = loc.into_iter().next() else {
                bail!("no replica `{t}`")
            };
            if l.container_id.is_empty() {
                bail!("replica {}/{} is not running", l.service, l.replica);
            }
            (l.runtime_root.into(), l.container_id)
        }
        (None, None) => bail!("exec needs SERVICE/N"),
    };
    Ok(zlayer_runtime::exec_in(&root, &cid, command, Vec::new())?)
}

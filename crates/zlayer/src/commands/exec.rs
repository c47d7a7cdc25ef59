//! `zlayer exec`: a command inside a running replica's container. A replica
//! on this node runs it here, with this terminal's stdio; one on another
//! node (or any, from a remote CLI) runs through the nodes, without stdin.

use std::path::Path;

use anyhow::{bail, Result};

pub fn exec(
    data: &Path,
    target: Option<String>,
    id: Option<String>,
    command: Vec<String>,
) -> Result<i32> {
    let t = match (id, target) {
        (Some(id), _) => {
            return Ok(zlayer_runtime::exec_in(
                &data.join("runtime"),
                &id,
                command,
                Vec::new(),
            )?)
        }
        (None, Some(t)) if t.contains('/') => t,
        (None, Some(t)) => format!("{t}/1"),
        (None, None) => bail!("exec needs SERVICE/N"),
    };
    let client = super::client(data);
    if !client.is_remote() {
        if let Ok(here) = super::block_on(client.locate(&t)) {
            if let Some(l) = here.into_iter().next() {
                if l.container_id.is_empty() {
                    bail!("replica {}/{} is not running", l.service, l.replica);
                }
                let root = Path::new(&l.runtime_root);
                return Ok(zlayer_runtime::exec_in(
                    root,
                    &l.container_id,
                    command,
                    Vec::new(),
                )?);
            }
        }
    }
    let req = zlayer_api::ExecRequest { target: t, command };
    Ok(super::block_on(client.exec(&req))?)
}

//! `zlayer logs`: a replica's output, followed or tailed. The node serves
//! it, from its own files or from the node that runs the replica.

use std::path::Path;

use anyhow::Result;

pub fn logs(data: &Path, args: &crate::cli::LogsArgs) -> Result<i32> {
    let req = zlayer_api::LogsRequest {
        target: args.target.clone(),
        follow: args.follow,
        tail: args.tail,
    };
    let mut out = std::io::stdout().lock();
    super::block_on(super::client(data).logs(&req, &mut out))?;
    Ok(0)
}

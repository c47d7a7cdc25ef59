//! The node bridge: created once, holds the gateway address of the node's
//! CIDR, and forwarding is switched on.

use futures::TryStreamExt;
use rtnetlink::{LinkBridge, LinkUnspec};

use crate::error::NetError;
use crate::ipam::Cidr;

#[derive(Clone, Debug)]
pub struct BridgeConfig {
    pub name: String,
    pub cidr: Cidr,
}

pub(crate) async fn link_index(
    handle: &rtnetlink::Handle,
    name: &str,
) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates the bridge if missing, gives it the gateway address, brings it up.
pub async fn ensure_bridge(cfg: &BridgeConfig) -> Result<(), NetError> {
    let handle = crate::netlink()?;
    let index = match link_index(&handle, &cfg.name).await? {
        Some(i) => i,
        None => {
            handle
                .link()
                .add(LinkBridge::new(&cfg.name).build())
                .execute()
                .await?;
            link_index(&handle, &cfg.name).await?.ok_or_else(|| {
                NetError::Netlink(format!("bridge {} vanished after creation", cfg.name))
            })?
        }
    };
    let gw = std::net::IpAddr::V4(cfg.cidr.gateway());
    match handle
        .address()
        .add(index, gw, cfg.cidr.prefix)
        .execute()
        .await
    {
        Ok(()) => {}
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
        Err(e) => return Err(e.into()),
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| NetError::Netlink(format!("enabling ip_forward: {e}")))?;
    Ok(())
}

//! One veth pair per container: the host end joins the bridge, the other
//! end is created as `eth0` in the container's namespace, with its address
//! and a default route through the bridge.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::bridge::link_index;
use crate::error::NetError;
use crate::ipam::Cidr;

#[derive(Clone, Debug)]
pub struct Attachment {
    pub host_ifname: String,
    pub ip: Ipv4Addr,
}

/// Interface names are limited to 15 bytes; derive a stable one from the id.
pub fn host_ifname(id: &str) -> String {
    let mut h: u32 = 2166136261;
    for b in id.bytes() {
        h = (h ^ b as u32).wrapping_mul(16777619);
    }
    format!("zl{h:08x}")
}

pub async fn attach(
    bridge: &str,
    cidr: &Cidr,
    netns: &Path,
    id: &str,
    ip: Ipv4Addr,
) -> Result<Attachment, NetError> {
    let handle = crate::netlink()?;
    let host = host_ifname(id);
    if let Some(old) = link_index(&handle, &host).await? {
        handle.link().del(old).execute().await?;
    }
    let bridge_idx = link_index(&handle, bridge)
        .await?
        .ok_or_else(|| NetError::Netlink(format!("bridge {bridge} is missing")))?;
    let ns_file = std::fs::File::open(netns).map_err(|e| NetError::Netns {
        path: netns.display().to_string(),
        reason: e.to_string(),
    })?;
    // One request: the container end is created as `eth0` inside the
    // namespace, with its MAC, and the host end joins the bridge. Creating
    // it there avoids moving a device between namespaces, which waits for
    // RCU grace periods and dominated the cost of a replica start.
    let container_end = LinkMessageBuilder::<LinkUnspec>::new()
        .name("eth0".to_string())
        .address(mac_for(ip).to_vec())
        .setns_by_fd(ns_file.as_raw_fd())
        .build();
    let pair = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host.clone())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(container_end)))
        .controller(bridge_idx)
        .up()
        .build();
    handle.link().add(pair).execute().await?;
    drop(ns_file);
    let (path, gw, prefix) = (PathBuf::from(netns), cidr.gateway(), cidr.prefix);
    tokio::task::spawn_blocking(move || {
        crate::netns::in_netns(&path, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| NetError::Netlink(e.to_string()))?;
            rt.block_on(configure_inside(ip, prefix, gw))
        })
    })
    .await
    .map_err(|e| NetError::Netlink(e.to_string()))??;
    Ok(Attachment {
        host_ifname: host,
        ip,
    })
}

async fn configure_inside(ip: Ipv4Addr, prefix: u8, gw: Ipv4Addr) -> Result<(), NetError> {
    let handle = crate::netlink()?;
    let idx = link_index(&handle, "eth0")
        .await?
        .ok_or_else(|| NetError::Netlink("eth0 did not arrive in the namespace".into()))?;
    handle
        .address()
        .add(idx, IpAddr::V4(ip), prefix)
        .execute()
        .await?;
    // Not up at creation: the kernel refuses to open a veth end before its
    // pair is complete.
    handle
        .link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await?;
    if let Some(lo) = link_index(&handle, "lo").await? {
        handle
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await?;
    }
    handle
        .route()
        .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build())
        .execute()
        .await?;
    Ok(())
}

/// A locally administered MAC derived from the address (as the CNI bridge
/// plugin does): when an IP is reused by a new container, neighbours' ARP
/// entries for it stay valid instead of pointing at a vanished MAC.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// Deletes the host end (the container end goes with it); missing is fine.
pub async fn detach(host_ifname: &str) -> Result<(), NetError> {
    let handle = crate::netlink()?;
    if let Some(idx) = link_index(&handle, host_ifname).await? {
        match handle.link().del(idx).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_stable_per_ip_and_locally_administered() {
        let a = mac_for(Ipv4Addr::new(10, 231, 0, 7));
        assert_eq!(a, mac_for(Ipv4Addr::new(10, 231, 0, 7)));
        assert_ne!(a, mac_for(Ipv4Addr::new(10, 231, 0, 8)));
        assert_eq!(a[0] & 0b11, 0b10, "unicast, locally administered");
        assert!(host_ifname("deployment-service-12-abcdef01").len() <= 15);
    }
}

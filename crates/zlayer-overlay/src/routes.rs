//! The routes that send other nodes' subnets into the WireGuard device,
//! kept equal to the wanted set (marked `proto static`, so routes others
//! add to the device are left alone), and the device's link state.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};

use crate::error::OverlayError;

pub(crate) type Subnet = (Ipv4Addr, u8);

fn handle(ifname: &str) -> Result<rtnetlink::Handle, OverlayError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| OverlayError::Route {
        ifname: ifname.to_string(),
        reason: e.to_string(),
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

fn route_err(ifname: &str) -> impl Fn(rtnetlink::Error) -> OverlayError + '_ {
    move |e| OverlayError::Route {
        ifname: ifname.to_string(),
        reason: e.to_string(),
    }
}

async fn index_of(h: &rtnetlink::Handle, ifname: &str) -> Result<Option<u32>, OverlayError> {
    let mut links = h.link().get().match_name(ifname.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(route_err(ifname)(e)),
    }
}

/// Removes the interface if it exists; errors are only logged.
pub(crate) async fn delete_link(ifname: &str) {
    let Ok(h) = handle(ifname) else { return };
    if let Ok(Some(index)) = index_of(&h, ifname).await {
        if let Err(e) = h.link().del(index).execute().await {
            tracing::warn!(ifname, "removing a leftover WireGuard interface: {e}");
        }
    }
}

pub(crate) async fn set_up(ifname: &str) -> Result<(), OverlayError> {
    let h = handle(ifname)?;
    let index = require(&h, ifname).await?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(route_err(ifname))
}

async fn require(h: &rtnetlink::Handle, ifname: &str) -> Result<u32, OverlayError> {
    index_of(h, ifname)
        .await?
        .ok_or_else(|| OverlayError::Route {
            ifname: ifname.to_string(),
            reason: "the interface is gone".into(),
        })
}

fn build(index: u32, (addr, len): Subnet) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(addr, len)
        .output_interface(index)
        .protocol(RouteProtocol::Static)
        .build()
}

fn destination(r: &RouteMessage) -> Option<Subnet> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Some((*ip, r.header.destination_prefix_length))
        }
        _ => None,
    })
}

fn output_interface(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// Makes the device's static routes exactly `wanted`.
pub(crate) async fn sync(ifname: &str, wanted: &BTreeSet<Subnet>) -> Result<(), OverlayError> {
    let h = handle(ifname)?;
    let index = require(&h, ifname).await?;
    let present: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(route_err(ifname))?;
    let mut have = BTreeSet::new();
    for r in present {
        if output_interface(&r) != Some(index) || r.header.protocol != RouteProtocol::Static {
            continue;
        }
        match destination(&r) {
            Some(d) if wanted.contains(&d) => {
                have.insert(d);
            }
            _ => h
                .route()
                .del(r)
                .execute()
                .await
                .map_err(route_err(ifname))?,
        }
    }
    for subnet in wanted.difference(&have) {
        match h.route().add(build(index, *subnet)).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
            Err(e) => return Err(route_err(ifname)(e)),
        }
    }
    Ok(())
}

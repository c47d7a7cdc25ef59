//! Container subnets: each node's slice of the cluster CIDR, picked when
//! the node is recorded. The lowest free slice is taken; a slice is free
//! again only once no node record holds it. The last slice is kept for
//! stock WireGuard peers, one address each.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use zlayer_model::ClusterNetwork;

fn parse(cidr: &str) -> Option<(u32, u8)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(ip), len))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

/// Why `net` cannot be a cluster's address space, if it cannot.
pub fn check_network(net: &ClusterNetwork) -> Result<(), String> {
    let Some((ip, len)) = parse(&net.cidr) else {
        return Err(format!(
            "cluster CIDR `{}` is not an IPv4 network; write it like 10.240.0.0/16",
            net.cidr
        ));
    };
    if ip & !mask(len) != 0 {
        return Err(format!(
            "cluster CIDR `{}` has host bits set; did you mean {}/{len}?",
            net.cidr,
            Ipv4Addr::from(ip & mask(len))
        ));
    }
    if !(8..=30).contains(&net.node_prefix) || net.node_prefix < len {
        return Err(format!(
            "node subnets of /{} do not fit in `{}`: they need a prefix between the cluster's /{len} and /30",
            net.node_prefix, net.cidr
        ));
    }
    Ok(())
}

/// The lowest subnet of `net` that no string in `taken` names.
pub(crate) fn free_subnet<'a>(
    net: &ClusterNetwork,
    taken: impl Iterator<Item = &'a str>,
) -> Result<String, String> {
    check_network(net)?;
    let (base, len) = parse(&net.cidr).unwrap_or_default();
    let taken: BTreeSet<&str> = taken.collect();
    let count = (1u64 << (net.node_prefix - len)) - 1;
    let step = 1u64 << (32 - net.node_prefix);
    (0..count)
        .map(|i| {
            let start = Ipv4Addr::from((u64::from(base) + i * step) as u32);
            format!("{start}/{}", net.node_prefix)
        })
        .find(|s| !taken.contains(s.as_str()))
        .ok_or_else(|| {
            format!(
                "the cluster CIDR {} has no free /{} subnet left for another node; remove a node that is gone (`zlayer node rm NAME`)",
                net.cidr, net.node_prefix
            )
        })
}

/// The first address of `subnet` past its network address: the node's
/// gateway, the address of its bridge and of its mesh device.
pub(crate) fn gateway(subnet: &str) -> Option<Ipv4Addr> {
    let (ip, len) = parse(subnet)?;
    (len < 31).then(|| Ipv4Addr::from((ip & mask(len)) + 1))
}

/// Whether `subnet` is one of `net`'s node subnets and no string in
/// `taken` names it.
pub(crate) fn is_free<'a>(
    net: &ClusterNetwork,
    subnet: &str,
    mut taken: impl Iterator<Item = &'a str>,
) -> bool {
    let Some((base, len)) = parse(&net.cidr) else {
        return false;
    };
    let Some((ip, prefix)) = parse(subnet) else {
        return false;
    };
    let last_node_slice = u64::from(base) + (1u64 << (32 - len)) - (1u64 << (32 - prefix)) * 2;
    prefix == net.node_prefix
        && ip & mask(len) == base
        && ip & !mask(prefix) == 0
        && u64::from(ip) <= last_node_slice
        && !taken.any(|t| t == subnet)
}

/// The lowest address of the last slice (past its network address) that
/// no string in `taken` names, as `a.b.c.d/32`.
pub(crate) fn free_peer_address<'a>(
    net: &ClusterNetwork,
    taken: impl Iterator<Item = &'a str>,
) -> Result<String, String> {
    check_network(net)?;
    let (base, len) = parse(&net.cidr).unwrap_or_default();
    let last = u64::from(base) + (1u64 << (32 - len)) - (1u64 << (32 - net.node_prefix));
    let taken: BTreeSet<&str> = taken.collect();
    (1..(1u64 << (32 - net.node_prefix)) - 1)
        .map(|i| format!("{}/32", Ipv4Addr::from((last + i) as u32)))
        .find(|a| !taken.contains(a.as_str()))
        .ok_or_else(|| {
            format!(
                "no address left for another peer in the last /{} of {}; remove one (`zlayer overlay peer rm NAME`)",
                net.node_prefix, net.cidr
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cidr: &str, p: u8) -> ClusterNetwork {
        ClusterNetwork {
            cidr: cidr.into(),
            node_prefix: p,
        }
    }

    #[test]
    fn the_lowest_free_slice_is_taken_and_a_freed_one_is_reused() {
        let n = net("10.240.0.0/16", 24);
        assert_eq!(free_subnet(&n, [].into_iter()).unwrap(), "10.240.0.0/24");
        let taken = ["10.240.0.0/24", "10.240.2.0/24"];
        assert_eq!(free_subnet(&n, taken.into_iter()).unwrap(), "10.240.1.0/24");
    }

    #[test]
    fn a_full_cidr_is_refused_with_the_way_out() {
        // Of a /23, the last /24 is the peers': one node fits.
        let n = net("10.9.0.0/23", 24);
        let e = free_subnet(&n, ["10.9.0.0/24"].into_iter()).unwrap_err();
        assert!(e.contains("no free /24") && e.contains("node rm"), "{e}");
    }

    #[test]
    fn peers_take_addresses_of_the_last_slice_which_nodes_never_get() {
        let n = net("10.240.0.0/16", 24);
        assert_eq!(
            free_peer_address(&n, [].into_iter()).unwrap(),
            "10.240.255.1/32"
        );
        assert_eq!(
            free_peer_address(&n, ["10.240.255.1/32"].into_iter()).unwrap(),
            "10.240.255.2/32"
        );
        let all: Vec<String> = (0..255).map(|i| format!("10.240.{i}.0/24")).collect();
        assert!(free_subnet(&n, all.iter().map(String::as_str)).is_err());
    }

    #[test]
    fn a_subnet_picked_ahead_is_free_only_if_it_is_a_node_slice_no_one_holds() {
        let n = net("10.240.0.0/16", 24);
        assert!(is_free(&n, "10.240.3.0/24", ["10.240.0.0/24"].into_iter()));
        assert!(!is_free(&n, "10.240.0.0/24", ["10.240.0.0/24"].into_iter()));
        // The peers' slice, another network, host bits, another prefix.
        for bad in [
            "10.240.255.0/24",
            "10.241.0.0/24",
            "10.240.3.1/24",
            "10.240.0.0/25",
        ] {
            assert!(!is_free(&n, bad, [].into_iter()), "{bad}");
        }
    }

    #[test]
    fn bad_networks_are_named() {
        assert!(check_network(&net("10.240.0.0/16", 24)).is_ok());
        assert!(check_network(&net("10.240.1.0/16", 24))
            .unwrap_err()
            .contains("did you mean 10.240.0.0/16"));
        assert!(check_network(&net("10.240.0.0/24", 16)).is_err());
        assert!(check_network(&net("nonsense", 24)).is_err());
    }
}

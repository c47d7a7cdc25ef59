//! Which peers the mesh device has, from the node records: who is reached
//! directly, with keepalives from behind NAT, and who through a relay.

use std::collections::BTreeMap;

use zlayer_model::NodeState;
use zlayer_overlay::PeerConfig;
use zlayer_state::NodeRecord;

/// Seconds between keepalives from a node behind NAT: well inside the
/// 30 s a NAT usually keeps an idle UDP mapping.
pub(crate) const NAT_KEEPALIVE: u16 = 15;

/// The device's peers, and which nodes are reached through which relay.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    pub peers: Vec<PeerConfig>,
    /// Node name to the name of the node that relays to it.
    pub relayed: BTreeMap<String, String>,
}

/// The peers the other records describe (those with a subnet and a key),
/// as `me` reaches them: a node behind NAT keeps keepalives toward every
/// peer, and reaches the others behind NAT through one relay, the first
/// ready reachable node by name, which every node behind NAT picks alike.
pub(crate) fn plan(me: Option<&NodeRecord>, records: &[NodeRecord]) -> Plan {
    let me_behind_nat = me.is_some_and(|m| m.network.behind_nat);
    let meshed: Vec<(&NodeRecord, zlayer_net::Cidr, &str)> = records
        .iter()
        .filter_map(|n| {
            let subnet = n.network.subnet.as_deref()?.parse().ok()?;
            Some((n, subnet, n.network.wg_public_key.as_deref()?))
        })
        .collect();
    let reachable = |n: &NodeRecord| !n.network.behind_nat && n.network.wg_endpoint.is_some();
    let relay = meshed
        .iter()
        .filter(|(n, _, _)| reachable(n))
        .min_by_key(|(n, _, _)| (n.state != NodeState::Ready, n.name.clone()))
        .map(|(n, _, _)| n.name.clone());
    let mut plan = Plan::default();
    let mut through_relay = Vec::new();
    for (n, subnet, key) in &meshed {
        if me_behind_nat && n.network.behind_nat {
            if let Some(r) = &relay {
                plan.relayed.insert(n.name.clone(), r.clone());
                through_relay.push((subnet.network, subnet.prefix));
            }
            continue;
        }
        plan.peers.push(PeerConfig {
            name: n.name.clone(),
            public_key: key.to_string(),
            endpoint: n
                .network
                .wg_endpoint
                .as_deref()
                .filter(|_| !n.network.behind_nat)
                .and_then(|e| e.parse().ok()),
            allowed: vec![(subnet.network, subnet.prefix)],
            keepalive: me_behind_nat.then_some(NAT_KEEPALIVE),
        });
    }
    if let Some(p) = plan
        .peers
        .iter_mut()
        .find(|p| Some(&p.name) == relay.as_ref())
    {
        p.allowed.extend(through_relay);
    }
    plan.peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, subnet: &str, endpoint: Option<&str>, behind_nat: bool) -> NodeRecord {
        let mut n = NodeRecord {
            name: name.into(),
            ..NodeRecord::default()
        };
        n.network.subnet = Some(subnet.into());
        n.network.wg_public_key = Some(format!("key-{name}"));
        n.network.wg_endpoint = endpoint.map(str::to_string);
        n.network.behind_nat = behind_nat;
        n
    }

    fn cluster() -> Vec<NodeRecord> {
        vec![
            node("n2", "10.240.1.0/24", Some("10.77.0.2:51820"), false),
            node("n1", "10.240.0.0/24", Some("10.77.0.1:51820"), false),
            node("n4", "10.240.3.0/24", None, true),
            node("n5", "10.240.4.0/24", None, true),
        ]
    }

    fn peer<'a>(p: &'a Plan, name: &str) -> Option<&'a PeerConfig> {
        p.peers.iter().find(|p| p.name == name)
    }

    #[test]
    fn a_reachable_node_has_every_node_as_a_peer_and_waits_for_those_behind_nat() {
        let all = cluster();
        let me = node("n3", "10.240.2.0/24", Some("10.77.0.3:51820"), false);
        let p = plan(Some(&me), &all);
        assert_eq!(p.peers.len(), 4);
        assert!(p.relayed.is_empty());
        assert!(p.peers.iter().all(|p| p.keepalive.is_none()));
        assert_eq!(peer(&p, "n4").unwrap().endpoint, None);
        assert_eq!(
            peer(&p, "n4").unwrap().allowed,
            vec![("10.240.3.0".parse().unwrap(), 24)]
        );
        assert!(peer(&p, "n1").unwrap().endpoint.is_some());
    }

    #[test]
    fn behind_nat_every_path_has_keepalives_and_the_others_behind_nat_go_through_one_relay() {
        let all = cluster();
        let me = node("n4", "10.240.3.0/24", None, true);
        let others: Vec<NodeRecord> = all.into_iter().filter(|n| n.name != "n4").collect();
        let p = plan(Some(&me), &others);
        assert_eq!(
            p.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec!["n1", "n2"]
        );
        assert!(p.peers.iter().all(|p| p.keepalive == Some(NAT_KEEPALIVE)));
        assert_eq!(
            p.relayed,
            BTreeMap::from([("n5".to_string(), "n1".to_string())])
        );
        assert_eq!(
            peer(&p, "n1").unwrap().allowed,
            vec![
                ("10.240.0.0".parse().unwrap(), 24),
                ("10.240.4.0".parse().unwrap(), 24)
            ]
        );
        assert_eq!(peer(&p, "n2").unwrap().allowed.len(), 1);
    }

    #[test]
    fn a_down_relay_is_passed_over_for_a_ready_one() {
        let mut all = cluster();
        all[1].state = NodeState::Down;
        let me = node("n4", "10.240.3.0/24", None, true);
        let p = plan(
            Some(&me),
            &all[..2]
                .iter()
                .chain(&all[3..])
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert_eq!(p.relayed.get("n5").map(String::as_str), Some("n2"));
    }
}

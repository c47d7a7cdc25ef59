//! `ClusterState::apply`: token refusals, revisions, fencing by generation,
//! admission and heartbeats, each a pure step.

use super::*;

fn token(uses: Option<u32>) -> TokenRecord {
    TokenRecord {
        id: "t1".into(),
        secret_sha256: "s".into(),
        created_ms: 0,
        expires_ms: 1_000,
        uses,
        used: 0,
        revoked: false,
        kind: TokenKind::Manager,
    }
}

fn run(s: &mut ClusterState, cmd: Command) -> Response {
    s.apply(cmd, &mut Vec::new())
}

fn deploy(s: &mut ClusterState, name: &str, text: &str) -> Response {
    run(
        s,
        Command::PutDeployment {
            name: name.into(),
            file: "f.yaml".into(),
            text: text.into(),
            env: BTreeMap::new(),
            at_ms: 0,
            counts: zlayer_spec::parse("f.yaml", text)
                .map(|spec| service_counts(&spec))
                .unwrap_or_default(),
            if_revision: None,
        },
    )
}

fn asg(workload: &str, replica: u32, node: &str, generation: u64) -> Assignment {
    Assignment {
        workload: workload.into(),
        replica,
        node: node.into(),
        generation,
        attempt: 0,
    }
}

fn use_token(s: &mut ClusterState, secret: &str, now_ms: u64) -> Response {
    run(
        s,
        Command::UseToken {
            id: "t1".into(),
            secret_sha256: secret.into(),
            now_ms,
        },
    )
}

#[test]
fn each_bad_token_is_refused_with_its_case_and_changes_nothing() {
    let mut s = ClusterState::default();
    run(&mut s, Command::CreateToken(token(Some(1))));
    let before = s.clone();
    let refused = |r: TokenUse| Response::Token(r);
    assert_eq!(use_token(&mut s, "x", 10), refused(TokenUse::WrongSecret));
    assert_eq!(use_token(&mut s, "s", 1_000), refused(TokenUse::Expired));
    let unknown = Command::UseToken {
        id: "nope".into(),
        secret_sha256: "s".into(),
        now_ms: 1,
    };
    assert_eq!(run(&mut s, unknown), refused(TokenUse::Unknown));
    assert_eq!(s, before);

    assert_eq!(use_token(&mut s, "s", 10), refused(TokenUse::Accepted));
    assert_eq!(use_token(&mut s, "s", 11), refused(TokenUse::UsedUp));
    run(&mut s, Command::RevokeToken { id: "t1".into() });
    assert_eq!(use_token(&mut s, "s", 12), refused(TokenUse::Revoked));
    assert_eq!(s.tokens["t1"].used, 1);
}

#[test]
fn an_unchanged_spec_keeps_its_revision_and_history_is_capped() {
    let mut s = ClusterState::default();
    assert_eq!(deploy(&mut s, "web", "a"), Response::Revision(1));
    assert_eq!(deploy(&mut s, "web", "a"), Response::Revision(1));
    for i in 0..15 {
        deploy(&mut s, "web", &format!("b{i}"));
    }
    let d = &s.deployments["web"];
    assert_eq!(d.current.revision, 16);
    assert_eq!(d.history.len(), KEPT_REVISIONS);
    assert_eq!(d.history.last().unwrap().revision, 15);
}

#[test]
fn placements_are_fenced_by_generation() {
    let mut s = ClusterState::default();
    deploy(&mut s, "web", "a");
    let place = |s: &mut ClusterState, place, stop| run(s, Command::Placements { place, stop });
    place(&mut s, vec![asg("web/api", 0, "n1", 4)], vec![]);
    assert_eq!(s.next_generation, 5);

    // An older generation does not replace a newer one; a stop of a
    // generation that is no longer there does nothing.
    let r = place(
        &mut s,
        vec![asg("web/api", 0, "n2", 3)],
        vec![asg("web/api", 0, "n1", 2)],
    );
    assert_eq!(
        r,
        Response::Placed {
            placed: 0,
            stopped: 0,
            stale: 2
        }
    );
    assert_eq!(s.assignments.values().next().unwrap().node, "n1");

    // A service of a deployment that is gone is not placed.
    let r = place(&mut s, vec![asg("gone/api", 0, "n1", 9)], vec![]);
    assert!(matches!(r, Response::Placed { stale: 1, .. }));

    let r = place(&mut s, vec![], vec![asg("web/api", 0, "n1", 4)]);
    assert!(matches!(r, Response::Placed { stopped: 1, .. }));
    assert!(s.assignments.is_empty());
}

#[test]
fn removing_a_deployment_removes_its_assignments_only() {
    let mut s = ClusterState::default();
    deploy(&mut s, "web", "a");
    deploy(&mut s, "webapp", "a");
    let place = vec![asg("web/api", 0, "n1", 1), asg("webapp/api", 0, "n1", 2)];
    run(
        &mut s,
        Command::Placements {
            place,
            stop: vec![],
        },
    );
    let mut touched = Vec::new();
    s.apply(
        Command::RemoveDeployment { name: "web".into() },
        &mut touched,
    );
    let left: Vec<&str> = s.assignments.keys().map(|k| k.workload.as_str()).collect();
    assert_eq!(left, ["webapp/api"]);
    assert!(touched.contains(&Touched::Deployment("web".into())));
}

#[test]
fn a_node_name_belongs_to_one_member() {
    let mut s = ClusterState::default();
    let node = |id| NodeRecord {
        id,
        name: "edge-1".into(),
        addr: "10.0.0.1:7443".into(),
        ..NodeRecord::default()
    };
    assert_eq!(run(&mut s, Command::AddNode(node(1))), Response::Done);
    assert!(matches!(
        run(&mut s, Command::AddNode(node(2))),
        Response::Refused(m) if m.contains("taken by member 1")
    ));
}

#[test]
fn the_serialized_form_round_trips() {
    let mut s = ClusterState::default();
    deploy(&mut s, "web", "a");
    let place = vec![asg("web/api", 0, "n1", 1), asg("web/api", 1, "n2", 2)];
    run(
        &mut s,
        Command::Placements {
            place,
            stop: vec![],
        },
    );
    run(&mut s, Command::CreateToken(token(None)));
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<ClusterState>(&json).unwrap(), s);
}

#[test]
fn an_api_token_never_admits_a_node() {
    let mut s = ClusterState::default();
    let mut t = Vec::new();
    let api = TokenRecord {
        kind: TokenKind::Api,
        ..token(None)
    };
    s.apply(Command::CreateToken(api), &mut t);
    let before = s.clone();
    let r = s.apply(
        Command::UseToken {
            id: "t1".into(),
            secret_sha256: "s".into(),
            now_ms: 0,
        },
        &mut Vec::new(),
    );
    assert_eq!(r, Response::Token(TokenUse::Unknown));
    assert_eq!(s, before);
}

fn admit(s: &mut ClusterState, secret: &str, now_ms: u64, id: u64, name: &str) -> Response {
    admit_at(s, secret, now_ms, id, name, &format!("10.0.0.{id}:7443"))
}

fn admit_at(
    s: &mut ClusterState,
    secret: &str,
    now_ms: u64,
    id: u64,
    name: &str,
    addr: &str,
) -> Response {
    let node = NodeRecord {
        id,
        name: name.into(),
        addr: addr.into(),
        // What the joiner claims; the token decides.
        role: zlayer_model::ClusterRole::Manager,
        ..NodeRecord::default()
    };
    let cmd = Command::Admit {
        token_id: "t1".into(),
        secret_sha256: secret.into(),
        now_ms,
        node,
    };
    let mut touched = Vec::new();
    let r = s.apply(cmd, &mut touched);
    if r != Response::Token(TokenUse::Accepted) {
        assert!(
            touched.is_empty(),
            "a refused admission touched {touched:?}"
        );
    }
    r
}

#[test]
fn admission_uses_the_token_and_records_the_node_in_one_command() {
    let mut s = ClusterState::default();
    run(&mut s, Command::CreateToken(token(Some(1))));
    run(
        &mut s,
        Command::AddNode(NodeRecord {
            id: 1,
            name: "n1".into(),
            addr: "10.0.0.1:7443".into(),
            ..NodeRecord::default()
        }),
    );
    let before = s.clone();
    assert_eq!(
        admit(&mut s, "x", 10, 2, "n2"),
        Response::Token(TokenUse::WrongSecret)
    );
    assert_eq!(
        admit(&mut s, "s", 5_000, 2, "n2"),
        Response::Token(TokenUse::Expired)
    );
    // A taken name refuses the join without spending the token's only use.
    assert!(matches!(
        admit(&mut s, "s", 10, 2, "n1"),
        Response::Refused(m) if m.contains("taken")
    ));
    assert_eq!(s, before);

    assert_eq!(
        admit(&mut s, "s", 10, 2, "n2"),
        Response::Token(TokenUse::Accepted)
    );
    assert_eq!(s.tokens["t1"].used, 1);
    assert_eq!(s.nodes[&2].name, "n2");
    assert_eq!(
        admit(&mut s, "s", 11, 3, "n3"),
        Response::Token(TokenUse::UsedUp)
    );
    assert!(!s.nodes.contains_key(&3));
}

#[test]
fn admission_takes_the_role_from_the_token_and_refuses_a_taken_address_or_removed_id() {
    let mut s = ClusterState::default();
    let worker = TokenRecord {
        kind: TokenKind::Worker,
        ..token(Some(3))
    };
    run(&mut s, Command::CreateToken(worker));
    assert_eq!(
        admit(&mut s, "s", 10, 2, "n2"),
        Response::Token(TokenUse::Accepted)
    );
    assert_eq!(s.nodes[&2].role, zlayer_model::ClusterRole::Worker);
    let before = s.clone();
    assert!(matches!(
        admit_at(&mut s, "s", 10, 3, "n3", "10.0.0.2:7443"),
        Response::Refused(m) if m.starts_with("address 10.0.0.2:7443 is already advertised by node n2")
    ));
    assert_eq!(s, before);
    run(&mut s, Command::RemoveNode { id: 2 });
    assert!(s.removed.contains(&2));
    assert!(matches!(
        admit(&mut s, "s", 10, 2, "n2"),
        Response::Refused(m) if m.contains("was removed")
    ));
}

#[test]
fn an_unchanged_heartbeat_touches_only_the_liveness_record() {
    let mut s = ClusterState::default();
    run(
        &mut s,
        Command::AddNode(NodeRecord {
            id: 7,
            name: "n7".into(),
            ..NodeRecord::default()
        }),
    );
    let beat = |reports: Option<Vec<zlayer_model::ReplicaReport>>| Command::Heartbeat {
        id: 7,
        at_ms: 1,
        replica_reports: reports,
        replica_changes: None,
        health: None,
        rollout_reports: None,
        volume_reports: None,
    };
    let mut touched = Vec::new();
    s.apply(beat(None), &mut touched);
    assert_eq!(touched, vec![Touched::Liveness(7)]);
    // A report equal to the stored one changes nothing either.
    touched.clear();
    s.apply(beat(Some(Vec::new())), &mut touched);
    assert_eq!(touched, vec![Touched::Liveness(7)]);
    let report = zlayer_model::ReplicaReport::new(
        "d/s",
        0,
        zlayer_model::ReplicaState::Running,
        zlayer_model::Health::None,
        "r",
    );
    touched.clear();
    s.apply(beat(Some(vec![report])), &mut touched);
    assert_eq!(
        touched,
        vec![
            Touched::Report(7, "d/s".into(), 0, false),
            Touched::Liveness(7)
        ]
    );
    assert_eq!(s.nodes[&7].heartbeats, 3);
}

#[test]
fn a_renewal_keeps_only_the_certificate_it_was_asked_with() {
    let mut s = ClusterState::default();
    let node = NodeRecord {
        id: 7,
        name: "n7".into(),
        cert_fingerprint: "a".into(),
        ..NodeRecord::default()
    };
    assert_eq!(run(&mut s, Command::AddNode(node)), Response::Done);
    let renew = |previous: &str, new: &str| Command::RenewCertificate {
        id: 7,
        previous: previous.into(),
        cert_fingerprint: new.into(),
    };
    assert_eq!(run(&mut s, renew("a", "b")), Response::Done);
    let n = &s.nodes[&7];
    assert!(n.holds_certificate("a") && n.holds_certificate("b"));
    assert_eq!(run(&mut s, renew("b", "c")), Response::Done);
    let n = &s.nodes[&7];
    assert!(
        !n.holds_certificate("a"),
        "the second renewal retires the first certificate"
    );
    assert!(n.holds_certificate("b") && n.holds_certificate("c"));
    // A certificate the node no longer holds cannot ask, and an empty one never matches.
    assert!(matches!(run(&mut s, renew("a", "d")), Response::Refused(_)));
    assert!(!s.nodes[&7].holds_certificate("d") && !s.nodes[&7].holds_certificate(""));
    let unknown = Command::RenewCertificate {
        id: 8,
        previous: "c".into(),
        cert_fingerprint: "e".into(),
    };
    assert!(matches!(run(&mut s, unknown), Response::Refused(_)));
}

fn with_network(cidr: &str) -> ClusterState {
    let mut s = ClusterState::default();
    let ca = CaRecord {
        cluster_id: "c".into(),
        cert_pem: "pem".into(),
        key_pem: String::new(),
        fingerprint: "f".into(),
    };
    let network = Some(ClusterNetwork {
        cidr: cidr.into(),
        node_prefix: 24,
    });
    assert_eq!(
        run(&mut s, Command::Bootstrap { ca, network }),
        Response::Done
    );
    run(&mut s, Command::CreateToken(token(None)));
    s
}

fn subnet_of(s: &ClusterState, id: u64) -> Option<String> {
    s.nodes.get(&id).and_then(|n| n.network.subnet.clone())
}

/// A joiner that claims another node's subnet gets its own: the cluster
/// picks, lowest free first, and a slice is free again only once the
/// record holding it is gone.
#[test]
fn subnets_are_the_clusters_to_pick_and_never_shared() {
    let mut s = with_network("10.240.0.0/16");
    let mut claims = NodeRecord {
        id: 1,
        name: "n1".into(),
        addr: "10.0.0.1:7443".into(),
        ..NodeRecord::default()
    };
    claims.network.subnet = Some("10.240.9.0/24".into());
    assert_eq!(run(&mut s, Command::AddNode(claims)), Response::Done);
    assert_eq!(subnet_of(&s, 1).as_deref(), Some("10.240.0.0/24"));
    admit(&mut s, "s", 10, 2, "n2");
    admit(&mut s, "s", 10, 3, "n3");
    assert_eq!(subnet_of(&s, 2).as_deref(), Some("10.240.1.0/24"));
    assert_eq!(subnet_of(&s, 3).as_deref(), Some("10.240.2.0/24"));
    // Re-recording a node keeps its subnet.
    let again = s.nodes[&2].clone();
    run(&mut s, Command::AddNode(again));
    assert_eq!(subnet_of(&s, 2).as_deref(), Some("10.240.1.0/24"));
    run(&mut s, Command::RemoveNode { id: 2 });
    admit(&mut s, "s", 10, 4, "n4");
    assert_eq!(subnet_of(&s, 4).as_deref(), Some("10.240.1.0/24"));
}

#[test]
fn a_full_cluster_cidr_refuses_the_join_and_changes_nothing() {
    // Of a /22 the last /24 is the stock peers': three nodes fit.
    let mut s = with_network("10.9.0.0/22");
    for id in 1..=3 {
        admit(&mut s, "s", 10, id, &format!("n{id}"));
    }
    let before = s.clone();
    let r = admit(&mut s, "s", 10, 4, "n4");
    assert!(
        matches!(&r, Response::Refused(why) if why.contains("no free /24")),
        "{r:?}"
    );
    assert_eq!(s, before);
}

#[test]
fn a_wireguard_key_belongs_to_one_node_and_a_cluster_without_network_assigns_nothing() {
    let mut s = with_network("10.240.0.0/16");
    admit(&mut s, "s", 10, 1, "n1");
    admit(&mut s, "s", 10, 2, "n2");
    let set = |id, key: &str| Command::SetNodeNetwork {
        id,
        wg_public_key: wg_key(key),
        wg_endpoint: format!("10.0.0.{id}:51820"),
        wg_device: "userspace".into(),
    };
    assert_eq!(run(&mut s, set(1, "key-one")), Response::Done);
    let r = run(&mut s, set(2, "key-one"));
    assert!(
        matches!(&r, Response::Refused(why) if why.contains("already node n1's")),
        "{r:?}"
    );
    assert_eq!(run(&mut s, set(2, "key-two")), Response::Done);
    assert_eq!(
        s.nodes[&2].network.wg_endpoint.as_deref(),
        Some("10.0.0.2:51820")
    );
    assert_eq!(subnet_of(&s, 2).as_deref(), Some("10.240.1.0/24"));

    let mut legacy = ClusterState::default();
    run(&mut legacy, Command::CreateToken(token(None)));
    admit(&mut legacy, "s", 10, 1, "n1");
    assert_eq!(subnet_of(&legacy, 1), None);
}

#[test]
fn stock_peers_get_addresses_of_the_last_slice_and_never_a_nodes_key() {
    let mut s = with_network("10.240.0.0/16");
    admit(&mut s, "s", 10, 1, "n1");
    run(
        &mut s,
        Command::SetNodeNetwork {
            id: 1,
            wg_public_key: wg_key("node-key"),
            wg_endpoint: "10.0.0.1:51820".into(),
            wg_device: "userspace".into(),
        },
    );
    let add = |name: &str, key: &str| Command::AddPeer {
        name: name.into(),
        public_key: wg_key(key),
    };
    assert_eq!(run(&mut s, add("laptop", "k1")), Response::Done);
    assert_eq!(s.peers["laptop"].address, "10.240.255.1/32");
    assert_eq!(run(&mut s, add("phone", "k2")), Response::Done);
    assert_eq!(s.peers["phone"].address, "10.240.255.2/32");
    for (name, key, why) in [
        ("laptop", "k9", "exists"),
        ("evil", "node-key", "already in use"),
        ("evil", "k1", "already in use"),
    ] {
        let before = s.clone();
        let r = run(&mut s, add(name, key));
        assert!(
            matches!(&r, Response::Refused(m) if m.contains(why)),
            "{r:?}"
        );
        assert_eq!(s, before);
    }
    run(
        &mut s,
        Command::RemovePeer {
            name: "laptop".into(),
        },
    );
    assert_eq!(run(&mut s, add("tablet", "k3")), Response::Done);
    assert_eq!(s.peers["tablet"].address, "10.240.255.1/32");
    let mut legacy = ClusterState::default();
    let r = run(&mut legacy, add("laptop", "k1"));
    assert!(
        matches!(&r, Response::Refused(m) if m.contains("no overlay")),
        "{r:?}"
    );
}

/// A distinct, well-formed WireGuard public key per tag.
fn wg_key(tag: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(tag))
}

#[test]
fn a_manager_skipping_the_cli_cannot_record_a_malformed_key_endpoint_or_peer_name() {
    let mut s = with_network("10.240.0.0/16");
    admit(&mut s, "s", 10, 1, "n1");
    let before = s.clone();
    let hostile = [
        Command::SetNodeNetwork {
            id: 1,
            wg_public_key: "k".into(),
            wg_endpoint: "10.0.0.1:51820".into(),
            wg_device: "userspace".into(),
        },
        Command::SetNodeNetwork {
            id: 1,
            wg_public_key: format!("{}\nallowed_ip=0.0.0.0/0", wg_key("a")),
            wg_endpoint: "10.0.0.1:51820".into(),
            wg_device: "userspace".into(),
        },
        Command::SetNodeNetwork {
            id: 1,
            wg_public_key: wg_key("a"),
            wg_endpoint: "10.0.0.1:51820\nlisten_port=1".into(),
            wg_device: "userspace".into(),
        },
        Command::SetNodeNetwork {
            id: 1,
            wg_public_key: wg_key("a"),
            wg_endpoint: "10.0.0.1:51820".into(),
            wg_device: "gre".into(),
        },
        Command::AddPeer {
            name: "laptop\nPostUp = rm -rf /".into(),
            public_key: wg_key("b"),
        },
        Command::AddPeer {
            name: "laptop".into(),
            public_key: "not-a-key".into(),
        },
    ];
    for cmd in hostile {
        let r = run(&mut s, cmd.clone());
        assert!(matches!(r, Response::Refused(_)), "{cmd:?} gave {r:?}");
        assert_eq!(s, before, "{cmd:?} changed the state");
    }
}

fn admit_behind_nat(s: &mut ClusterState, id: u64, subnet: &str, key: &str) -> Response {
    let mut node = NodeRecord {
        id,
        name: format!("n{id}"),
        addr: format!("10.250.{id}.1:7443"),
        ..NodeRecord::default()
    };
    node.network.behind_nat = true;
    node.network.subnet = Some(subnet.into());
    node.network.wg_public_key = Some(wg_key(key));
    let mut touched = Vec::new();
    s.apply(
        Command::Admit {
            token_id: "t1".into(),
            secret_sha256: "s".into(),
            now_ms: 10,
            node,
        },
        &mut touched,
    )
}

/// Behind NAT the leader picks the subnet ahead (the node's certificate
/// names its gateway): the command keeps it only while it is a free node
/// slice, and the key it brings is checked like any other.
#[test]
fn a_node_behind_nat_keeps_the_subnet_picked_ahead_only_while_it_is_free() {
    let mut s = with_network("10.240.0.0/16");
    admit(&mut s, "s", 10, 1, "n1");
    assert_eq!(
        admit_behind_nat(&mut s, 2, "10.240.7.0/24", "a"),
        Response::Token(TokenUse::Accepted)
    );
    assert_eq!(subnet_of(&s, 2).as_deref(), Some("10.240.7.0/24"));
    assert!(s.nodes[&2].network.behind_nat);
    let before = s.clone();
    for (id, subnet, key, why) in [
        (3, "10.240.7.0/24", "b", "was taken meanwhile"),
        (3, "10.240.255.0/24", "b", "was taken meanwhile"),
        (3, "10.240.8.0/24", "a", "already node n2's"),
    ] {
        let r = admit_behind_nat(&mut s, id, subnet, key);
        assert!(
            matches!(&r, Response::Refused(w) if w.contains(why)),
            "{subnet} {key}: {r:?}"
        );
        assert_eq!(s, before);
    }
    // A key that is not a WireGuard public key (a hostile joiner's, or one
    // a bad leader let through) is refused by every member at apply.
    let mut bad = NodeRecord {
        id: 4,
        name: "n4".into(),
        addr: "10.250.4.1:7443".into(),
        ..NodeRecord::default()
    };
    bad.network.wg_public_key = Some("not-a-key\nPostUp = touch /tmp/pwned".into());
    let r = s.apply(
        Command::Admit {
            token_id: "t1".into(),
            secret_sha256: "s".into(),
            now_ms: 10,
            node: bad,
        },
        &mut Vec::new(),
    );
    assert!(
        matches!(&r, Response::Refused(w) if w.contains("is not a WireGuard public key")),
        "{r:?}"
    );
    assert_eq!(s, before);
    // The address it sees is no one's way in: its endpoint stays unknown.
    run(
        &mut s,
        Command::SetNodeNetwork {
            id: 2,
            wg_public_key: wg_key("a"),
            wg_endpoint: "192.168.4.2:51820".into(),
            wg_device: "userspace".into(),
        },
    );
    assert_eq!(s.nodes[&2].network.wg_endpoint, None);
}

/// `zlayer scale` sets a fixed service's count; an `up` of the same spec,
/// or of a spec that changes something else, keeps it; a spec that
/// changes that service's count takes over.
#[test]
fn a_hand_set_count_holds_until_the_spec_changes_that_count() {
    let spec = |replicas: u32, image: &str| {
        format!("version: v1\ndeployment: d\nservices:\n  web:\n    image: {{ name: {image} }}\n    scale: {{ mode: fixed, replicas: {replicas} }}\n  auto:\n    image: {{ name: demo }}\n    scale: {{ mode: adaptive, min: 1, max: 3 }}\n")
    };
    let scaled = |s: &ClusterState| s.deployments["d"].scaled.get("web").map(|t| t.replicas);
    let scale = |s: &mut ClusterState, service: &str, n: u32| {
        run(
            s,
            Command::ScaleService {
                deployment: "d".into(),
                service: service.into(),
                replicas: n,
            },
        )
    };
    let mut s = ClusterState::default();
    deploy(&mut s, "d", &spec(2, "demo"));
    assert_eq!(scale(&mut s, "web", 5), Response::Done);
    assert_eq!(scaled(&s), Some(5));
    deploy(&mut s, "d", &spec(2, "demo"));
    assert_eq!(scaled(&s), Some(5), "the same spec again");
    deploy(&mut s, "d", &spec(2, "demo:v2"));
    assert_eq!(scaled(&s), Some(5), "another field changed, not the count");
    deploy(&mut s, "d", &spec(3, "demo:v2"));
    assert_eq!(scaled(&s), None, "the spec's new count takes over");

    for (service, why) in [("auto", "scales itself"), ("nope", "has no service `nope`")] {
        match scale(&mut s, service, 1) {
            Response::Refused(r) => assert!(r.contains(why), "{r}"),
            other => panic!("{other:?}"),
        }
    }
    match run(
        &mut s,
        Command::ScaleService {
            deployment: "x".into(),
            service: "web".into(),
            replicas: 1,
        },
    ) {
        Response::Refused(r) => assert!(r.contains("no deployment `x`"), "{r}"),
        other => panic!("{other:?}"),
    }
}

/// Each `zlayer restart` counts up for its service only; an unknown one is refused.
#[test]
fn a_restart_counts_up_for_its_service() {
    let mut s = ClusterState::default();
    deploy(
        &mut s,
        "d",
        "version: v1\ndeployment: d\nservices:\n  web:\n    image: { name: demo }\n  db:\n    image: { name: demo }\n",
    );
    let restart = |s: &mut ClusterState, service: &str| {
        run(
            s,
            Command::RestartService {
                deployment: "d".into(),
                service: service.into(),
            },
        )
    };
    assert_eq!(restart(&mut s, "web"), Response::Done);
    assert_eq!(restart(&mut s, "web"), Response::Done);
    assert_eq!(s.deployments["d"].restarts.get("web"), Some(&2));
    assert_eq!(s.deployments["d"].restarts.get("db"), None);
    assert!(
        matches!(restart(&mut s, "nope"), Response::Refused(r) if r.contains("no service `nope`"))
    );
}

/// Applying never parses the spec text: two members that would read the
/// text differently (a newer parser, a field one of them lacks) still reach
/// the same state, because the counts travel in the command.
#[test]
fn apply_decides_from_the_proposers_counts_not_the_spec_text() {
    let put = |counts: ServiceCounts| Command::PutDeployment {
        name: "d".into(),
        file: "d.yaml".into(),
        text: "a spec this member's parser cannot read".into(),
        env: BTreeMap::new(),
        at_ms: 0,
        counts,
        if_revision: None,
    };
    let mut s = ClusterState::default();
    run(&mut s, put(BTreeMap::from([("web".to_string(), Some(2))])));
    let scale = Command::ScaleService {
        deployment: "d".into(),
        service: "web".into(),
        replicas: 4,
    };
    assert_eq!(run(&mut s, scale), Response::Done);
    assert_eq!(
        s.deployments["d"].scaled.get("web"),
        Some(&ScaledTo {
            replicas: 4,
            spec_replicas: 2
        })
    );
    let restart = Command::RestartService {
        deployment: "d".into(),
        service: "web".into(),
    };
    assert_eq!(run(&mut s, restart), Response::Done);
}

/// A rollback decided against revision N lands only while N is current: a
/// second node's copy of it, or one racing a newer apply, changes nothing.
#[test]
fn a_put_guarded_by_a_revision_lands_only_while_it_is_current() {
    let mut s = ClusterState::default();
    deploy(&mut s, "d", "v1");
    deploy(&mut s, "d", "v2");
    let guarded = |text: &str, at: u64| Command::PutDeployment {
        name: "d".into(),
        file: "f.yaml".into(),
        text: text.into(),
        env: BTreeMap::new(),
        at_ms: 0,
        counts: BTreeMap::new(),
        if_revision: Some(at),
    };
    assert_eq!(run(&mut s, guarded("v1", 2)), Response::Revision(3));
    let again = run(&mut s, guarded("v1", 2));
    assert!(
        matches!(again, Response::Refused(ref r) if r.contains("at revision 3 now, not 2")),
        "{again:?}"
    );
    assert_eq!(s.deployments["d"].current.revision, 3);
    assert_eq!(s.deployments["d"].current.text, "v1");
}

#[test]
fn pending_replicas_with_one_reason_in_a_row_are_one_record() {
    let rec = |w: &str, replica: u32, reason: &str| PendingRecord {
        workload: w.into(),
        replica,
        through: None,
        reason: reason.into(),
    };
    let waiting = (0..10_000).map(|i| rec("d/job", i, "waiting"));
    let runs = PendingRecord::runs(
        [rec("d/a", 0, "no node fits"), rec("d/a", 2, "no node fits")]
            .into_iter()
            .chain(waiting)
            .chain([
                rec("d/job", 10_000, "no volume"),
                rec("d/b", 10_001, "no volume"),
            ]),
    );
    let shown: Vec<_> = runs
        .iter()
        .map(|r| (r.workload.as_str(), r.replicas(), r.reason.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            ("d/a", 0..=0, "no node fits"),
            ("d/a", 2..=2, "no node fits"),
            ("d/job", 0..=9_999, "waiting"),
            ("d/job", 10_000..=10_000, "no volume"),
            ("d/b", 10_001..=10_001, "no volume"),
        ]
    );
    // A record written before runs existed reads as one replica.
    let old: PendingRecord =
        serde_json::from_str(r#"{"workload":"d/a","replica":3,"reason":"x"}"#).unwrap();
    assert_eq!(old.replicas(), 3..=3);
}

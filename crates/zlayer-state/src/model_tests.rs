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
        kind: TokenKind::Join,
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
        },
    )
}

fn asg(workload: &str, replica: u32, node: &str, generation: u64) -> Assignment {
    Assignment {
        workload: workload.into(),
        replica,
        node: node.into(),
        generation,
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
    let node = NodeRecord {
        id,
        name: name.into(),
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
        health: None,
        rollout_reports: None,
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
    assert_eq!(touched, vec![Touched::Node(7)]);
    assert_eq!(s.nodes[&7].heartbeats, 3);
}

//! Who may call what over the member transport. A caller is its
//! certificate: the CA signing it proves only that it joined once, so every
//! call maps the certificate to a current node record, and that record's
//! role decides. A removed node's certificate maps to nothing.
//!
//! - Forwarded writes: a heartbeat only for the caller's own id; tokens,
//!   specs, placements and node changes only from a manager.
//! - Raft RPCs: only a manager, and only as itself (the leader or candidate
//!   id in the RPC is the one its certificate carries).

use serde::{Deserialize, Serialize};
use zlayer_model::ClusterRole;

use crate::join::member_id;
use crate::{ClusterState, Command, StateMachine};

/// A member another node may trust before its own state knows anyone:
/// the managers the admitting leader named in its join reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedMember {
    pub id: u64,
    pub cert_fingerprint: String,
}

/// The current node record behind a certificate.
#[derive(Clone, Debug)]
pub(crate) struct KnownCaller {
    pub id: u64,
    pub name: String,
    pub role: ClusterRole,
}

/// The caller's live record, or why there is none.
pub(crate) fn known_caller(
    machine: &StateMachine,
    cert_fingerprint: &str,
) -> Result<KnownCaller, String> {
    machine.read(|s| {
        if let Some(n) = s
            .nodes
            .values()
            .find(|n| n.holds_certificate(cert_fingerprint))
        {
            return Ok(KnownCaller {
                id: n.id,
                name: n.name.clone(),
                role: n.role,
            });
        }
        let id = member_id(cert_fingerprint);
        Err(if s.removed.contains(&id) {
            format!(
                "the certificate of member {id} belongs to a removed node; it is refused for good"
            )
        } else {
            format!("no current node record holds this certificate (member {id})")
        })
    })
}

/// Whether `caller` may commit `cmd` through `/cluster/write`.
pub(crate) fn may_write(caller: &KnownCaller, cmd: &Command) -> Result<(), String> {
    match cmd {
        Command::Heartbeat { id, .. } | Command::SetNodeNetwork { id, .. } if *id == caller.id => {
            Ok(())
        }
        Command::Heartbeat { id, .. } | Command::SetNodeNetwork { id, .. } => Err(format!(
            "node {} (member {}) may not send a {} for member {id}: a node speaks only for itself",
            caller.name,
            caller.id,
            if matches!(cmd, Command::Heartbeat { .. }) {
                "heartbeat"
            } else {
                "WireGuard key or endpoint"
            }
        )),
        // Billing rests on these: a node meters only its own containers.
        Command::RecordUsage(records) => match records.iter().find(|r| r.node != caller.name) {
            None => Ok(()),
            Some(r) => Err(format!(
                "node {} may not record usage of node {}'s container {}: a node meters only its own",
                caller.name, r.node, r.container_id
            )),
        },
        _ if caller.role == ClusterRole::Manager => Ok(()),
        other => Err(format!(
            "node {} is a worker and may not commit {}: only managers change tokens, specs, placements and nodes (join a manager with `zlayer token create --role manager`)",
            caller.name,
            command_name(other)
        )),
    }
}

/// Whether a Raft RPC that names `claimed` as its leader or candidate may
/// come from the holder of `cert_fingerprint`.
pub(crate) fn may_send_raft(
    machine: &StateMachine,
    seed: &[SeedMember],
    cert_fingerprint: &str,
    claimed: Option<u64>,
) -> Result<(), String> {
    machine.read(|s| raft_sender_allowed(s, seed, cert_fingerprint, claimed))
}

/// [`may_send_raft`] against one view of the state.
fn raft_sender_allowed(
    s: &ClusterState,
    seed: &[SeedMember],
    cert_fingerprint: &str,
    claimed: Option<u64>,
) -> Result<(), String> {
    {
        let recorded = s
            .nodes
            .values()
            .find(|n| n.holds_certificate(cert_fingerprint));
        let seeded = seed.iter().find(|m| m.cert_fingerprint == cert_fingerprint);
        let id = recorded
            .map(|n| n.id)
            .or(seeded.map(|m| m.id))
            .unwrap_or_else(|| member_id(cert_fingerprint));
        if claimed != Some(id) {
            return Err(format!(
                "the certificate of member {id} sent a Raft RPC as member {}; a member speaks only for itself",
                claimed.map_or("none".to_string(), |c| c.to_string())
            ));
        }
        if s.removed.contains(&id) {
            return Err(format!(
                "member {id} was removed; its Raft RPCs are refused for good"
            ));
        }
        match recorded {
            Some(n) if n.role != ClusterRole::Manager => Err(format!(
                "node {} is a worker; only managers take part in Raft",
                n.name
            )),
            Some(_) => Ok(()),
            // A node that has not applied anything yet knows only the
            // managers its join reply named.
            None if s.nodes.is_empty() => seeded.map(drop).ok_or_else(|| {
                format!("member {id} is not among the managers this node joined through")
            }),
            // This node's log is behind the caller's admission: it cannot
            // know the record yet, and refusing would keep it behind.
            None => Ok(()),
        }
    }
}

fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Bootstrap { .. } => "Bootstrap",
        Command::AcmeHttp01 { .. } => "AcmeHttp01",
        Command::AcmeAlpn01 { .. } => "AcmeAlpn01",
        Command::AcmeCertificate { .. } => "AcmeCertificate",
        Command::AcmeAccount { .. } => "AcmeAccount",
        Command::AddNode(_) => "AddNode",
        Command::SetNodeNetwork { .. } => "SetNodeNetwork",
        Command::AddPeer { .. } => "AddPeer",
        Command::RemovePeer { .. } => "RemovePeer",
        Command::SetNodeState { .. } => "SetNodeState",
        Command::RemoveNode { .. } => "RemoveNode",
        Command::Heartbeat { .. } => "Heartbeat",
        Command::SetPending(_) => "SetPending",
        Command::PutDeployment { .. } => "PutDeployment",
        Command::RemoveDeployment { .. } => "RemoveDeployment",
        Command::ScaleService { .. } => "ScaleService",
        Command::RestartService { .. } => "RestartService",
        Command::PutSecret(_) => "PutSecret",
        Command::PutConfig(_) => "PutConfig",
        Command::RemoveConfig { .. } => "RemoveConfig",
        Command::ClaimVolumes(_) => "ClaimVolumes",
        Command::RecordTaskFailures(_) => "RecordTaskFailures",
        Command::RecordUsage(_) => "RecordUsage",
        Command::RemoveVolume { .. } => "RemoveVolume",
        Command::RemoveSecret { .. } => "RemoveSecret",
        Command::RotateSecretsKey(_) => "RotateSecretsKey",
        Command::Placements { .. } => "Placements",
        Command::CreateToken(_) => "CreateToken",
        Command::RevokeToken { .. } => "RevokeToken",
        Command::UseToken { .. } => "UseToken",
        Command::Admit { .. } => "Admit",
        Command::RenewCertificate { .. } => "RenewCertificate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: ClusterRole) -> KnownCaller {
        KnownCaller {
            id: 7,
            name: "n7".into(),
            role,
        }
    }

    fn heartbeat(id: u64) -> Command {
        Command::Heartbeat {
            id,
            at_ms: 1,
            replica_reports: None,
            replica_changes: None,
            health: None,
            rollout_reports: None,
            volume_reports: None,
        }
    }

    #[test]
    fn heartbeats_only_for_oneself_whatever_the_role() {
        for role in [ClusterRole::Manager, ClusterRole::Worker] {
            assert!(may_write(&caller(role), &heartbeat(7)).is_ok());
            let err = may_write(&caller(role), &heartbeat(8)).unwrap_err();
            assert_eq!(
                err,
                "node n7 (member 7) may not send a heartbeat for member 8: a node speaks only for itself"
            );
        }
    }

    #[test]
    fn a_node_records_usage_only_of_its_own_containers_whatever_the_role() {
        let usage = |node: &str| {
            Command::RecordUsage(vec![zlayer_model::UsageRecord {
                node: node.into(),
                container_id: "c1".into(),
                ..Default::default()
            }])
        };
        for role in [ClusterRole::Manager, ClusterRole::Worker] {
            assert!(may_write(&caller(role), &usage("n7")).is_ok());
            let err = may_write(&caller(role), &usage("n8")).unwrap_err();
            assert_eq!(
                err,
                "node n7 may not record usage of node n8's container c1: a node meters only its own"
            );
        }
    }

    /// Another node's WireGuard key in its record would pull its subnet's
    /// traffic to the attacker: a node sets only its own, manager or not.
    #[test]
    fn a_node_sets_only_its_own_wireguard_key() {
        let set = |id| Command::SetNodeNetwork {
            id,
            wg_public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
            wg_endpoint: "10.0.0.1:51820".into(),
            wg_device: "userspace".into(),
        };
        for role in [ClusterRole::Manager, ClusterRole::Worker] {
            assert!(may_write(&caller(role), &set(7)).is_ok());
            let err = may_write(&caller(role), &set(8)).unwrap_err();
            assert!(
                err.contains("may not send a WireGuard key or endpoint for member 8"),
                "{err}"
            );
        }
    }

    /// A stock peer is a key that may enter the mesh: only managers add or
    /// remove one. An ACME answer is what every node's ingress shows a CA:
    /// a worker that could set one could get any host's certificate
    /// issued, so only managers (the leader's ACME loop) commit them.
    #[test]
    fn workers_commit_nothing_else() {
        let cmds = [
            (
                Command::RemoveDeployment { name: "x".into() },
                "RemoveDeployment",
            ),
            (
                Command::AddPeer {
                    name: "laptop".into(),
                    public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
                },
                "AddPeer",
            ),
            (
                Command::RemovePeer {
                    name: "laptop".into(),
                },
                "RemovePeer",
            ),
            (
                Command::ScaleService {
                    deployment: "d".into(),
                    service: "web".into(),
                    replicas: 0,
                },
                "ScaleService",
            ),
            (
                Command::RestartService {
                    deployment: "d".into(),
                    service: "web".into(),
                },
                "RestartService",
            ),
            // A worker holds no key to seal with, but could still replace a
            // value with garbage, drop a secret, or swap the keyring.
            (
                Command::PutSecret(crate::secrets::PutSecret {
                    name: "db".into(),
                    version: 2,
                    new_key: None,
                    key: 1,
                    sealed: "garbage".into(),
                    bytes: 7,
                    at_ms: 0,
                }),
                "PutSecret",
            ),
            (Command::RemoveSecret { name: "db".into() }, "RemoveSecret"),
            (
                Command::RotateSecretsKey(crate::secrets::RotateKey {
                    from: 1,
                    key: crate::secrets::SealedKey {
                        id: 2,
                        sealed: "garbage".into(),
                    },
                    resealed: Default::default(),
                }),
                "RotateSecretsKey",
            ),
            (
                Command::PutConfig(crate::configs::PutConfig {
                    name: "app".into(),
                    version: 1,
                    data: "eA==".into(),
                    bytes: 1,
                    at_ms: 0,
                }),
                "PutConfig",
            ),
            (Command::RemoveConfig { name: "app".into() }, "RemoveConfig"),
            (
                Command::ClaimVolumes(vec![crate::volumes::VolumeClaim {
                    deployment: "d".into(),
                    name: "data".into(),
                    node: "n7".into(),
                    size_bytes: None,
                    user: "d/web".into(),
                    at_ms: 1,
                }]),
                "ClaimVolumes",
            ),
            (
                Command::RecordTaskFailures(vec![crate::jobs::TaskFailure {
                    workload: "d/batch".into(),
                    replica: 1,
                    revision: "r".into(),
                    attempt: 1,
                    node: "n7".into(),
                    generation: 3,
                    ran_ms: 10,
                }]),
                "RecordTaskFailures",
            ),
            (
                Command::RemoveVolume {
                    volume: "d/data".into(),
                    id: 1,
                },
                "RemoveVolume",
            ),
            (
                Command::AcmeHttp01 {
                    token: "t".into(),
                    key_authorization: Some("t.thumb".into()),
                },
                "AcmeHttp01",
            ),
            (
                Command::AcmeAlpn01 {
                    host: "shop.test".into(),
                    challenge: None,
                },
                "AcmeAlpn01",
            ),
            (
                Command::AcmeCertificate {
                    host: "shop.test".into(),
                    cert: None,
                },
                "AcmeCertificate",
            ),
            (
                Command::AcmeAccount {
                    directory: "https://ca.test/dir".into(),
                    sealed: None,
                },
                "AcmeAccount",
            ),
        ];
        for (cmd, name) in cmds {
            assert!(may_write(&caller(ClusterRole::Manager), &cmd).is_ok());
            let err = may_write(&caller(ClusterRole::Worker), &cmd).unwrap_err();
            assert!(
                err.starts_with(&format!("node n7 is a worker and may not commit {name}")),
                "{err}"
            );
        }
    }

    fn record(id: u64, fingerprint: &str, role: ClusterRole) -> crate::NodeRecord {
        crate::NodeRecord {
            id,
            name: format!("n{id}"),
            cert_fingerprint: fingerprint.into(),
            role,
            ..crate::NodeRecord::default()
        }
    }

    #[test]
    fn raft_rpcs_only_from_managers_as_themselves() {
        let manager = "aa".repeat(32);
        let worker = "bb".repeat(32);
        let (m, w) = (member_id(&manager), member_id(&worker));
        let mut s = ClusterState::default();
        s.nodes.insert(m, record(m, &manager, ClusterRole::Manager));
        s.nodes.insert(w, record(w, &worker, ClusterRole::Worker));
        assert!(raft_sender_allowed(&s, &[], &manager, Some(m)).is_ok());
        let err = raft_sender_allowed(&s, &[], &manager, Some(w)).unwrap_err();
        assert!(
            err.contains(&format!("sent a Raft RPC as member {w}")),
            "{err}"
        );
        let err = raft_sender_allowed(&s, &[], &worker, Some(w)).unwrap_err();
        assert_eq!(
            err,
            format!("node n{w} is a worker; only managers take part in Raft")
        );
        s.nodes.remove(&m);
        s.removed.insert(m);
        let err = raft_sender_allowed(&s, &[], &manager, Some(m)).unwrap_err();
        assert!(err.contains("was removed"), "{err}");
    }

    #[test]
    fn an_empty_state_trusts_only_the_seed() {
        let seeded = "cc".repeat(32);
        let stranger = "dd".repeat(32);
        let seed = [SeedMember {
            id: member_id(&seeded),
            cert_fingerprint: seeded.clone(),
        }];
        let empty = ClusterState::default();
        assert!(raft_sender_allowed(&empty, &seed, &seeded, Some(member_id(&seeded))).is_ok());
        let err =
            raft_sender_allowed(&empty, &seed, &stranger, Some(member_id(&stranger))).unwrap_err();
        assert!(
            err.contains("is not among the managers this node joined through"),
            "{err}"
        );
    }
}

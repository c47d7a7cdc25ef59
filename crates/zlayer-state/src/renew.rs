//! Certificate renewal over mTLS. A node with a current record sends the
//! leader a CSR for a fresh key (`/cluster/renew`, made with the certificate
//! it holds); the leader signs it for the name and address in the record and
//! commits the new fingerprint before it answers. The record keeps the
//! certificate the request came with as `previous_cert_fingerprint`, so a
//! node that dies before saving its new certificate still gets in with the
//! old one; the next renewal retires it.

use serde::{Deserialize, Serialize};

use crate::ca_key::CaKey;
use crate::{pki, Command, Raft, Response, StateMachine};

pub const RENEW: &str = "/cluster/renew";

#[derive(Debug, Serialize, Deserialize)]
pub struct RenewRequest {
    pub csr_pem: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RenewReply {
    Signed { cert_pem: String },
    NotLeader,
    Refused(String),
}

/// The leader's answer to the holder of `caller_fingerprint`.
pub(crate) async fn answer(
    raft: &Raft,
    machine: &StateMachine,
    ca_key: &CaKey,
    caller_fingerprint: &str,
    req: RenewRequest,
) -> RenewReply {
    let me = raft.metrics().borrow().id;
    if raft.metrics().borrow().current_leader != Some(me) {
        return RenewReply::NotLeader;
    }
    let (record, ca) = machine.read(|s| {
        let record = s
            .nodes
            .values()
            .find(|n| n.holds_certificate(caller_fingerprint))
            .cloned();
        (record, s.ca.clone())
    });
    let Some(record) = record else {
        return RenewReply::Refused("no current node record holds this certificate".into());
    };
    let Some(ca) = ca else {
        return RenewReply::Refused("this cluster has no CA yet".into());
    };
    let cert_pem = match pki::sign_member(
        ca,
        ca_key.get(),
        &req.csr_pem,
        &record.name,
        &record.addr,
        None,
    ) {
        Ok(c) => c,
        Err(why) => return RenewReply::Refused(why),
    };
    let cert_fingerprint = match pki::fingerprint_pem(&cert_pem) {
        Ok(f) => f,
        Err(e) => return RenewReply::Refused(e.to_string()),
    };
    let cmd = Command::RenewCertificate {
        id: record.id,
        previous: caller_fingerprint.to_string(),
        cert_fingerprint,
    };
    match raft.client_write(cmd).await.map(|r| r.data) {
        Ok(Response::Done) => RenewReply::Signed { cert_pem },
        Ok(Response::Refused(why)) => RenewReply::Refused(why),
        Ok(other) => RenewReply::Refused(format!("{other:?}")),
        Err(openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ForwardToLeader(_),
        )) => RenewReply::NotLeader,
        Err(e) => RenewReply::Refused(e.to_string()),
    }
}

//! Service discovery: a small authoritative DNS server on the bridge's
//! gateway address. Names are `<service>`, `<service>.<deployment>` and
//! `<service>-<n>` for one replica; the agent keeps the table current with
//! the addresses of running replicas. Other names get NXDOMAIN (no
//! forwarding: a container's lookup never leaves the node through us).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

use crate::error::NetError;

/// Name -> addresses, shared between the agent (writer) and the server.
#[derive(Clone, Default)]
pub struct DnsTable(Arc<RwLock<HashMap<String, Vec<Ipv4Addr>>>>);

impl DnsTable {
    /// Replaces the whole table.
    pub fn replace(&self, entries: HashMap<String, Vec<Ipv4Addr>>) {
        if let Ok(mut t) = self.0.write() {
            *t = entries;
        }
    }
    /// Drops an address from every name, ahead of the next full replace.
    pub fn forget(&self, ip: Ipv4Addr) {
        if let Ok(mut t) = self.0.write() {
            for ips in t.values_mut() {
                ips.retain(|x| *x != ip);
            }
            t.retain(|_, ips| !ips.is_empty());
        }
    }
    pub fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        self.0.read().ok()?.get(&key).cloned()
    }
}

pub struct DnsServer;

impl DnsServer {
    /// Serves `table` on UDP `addr` until the task is dropped.
    pub async fn bind(
        addr: SocketAddr,
        table: DnsTable,
    ) -> Result<tokio::task::JoinHandle<()>, NetError> {
        let sock = UdpSocket::bind(addr)
            .await
            .map_err(|e| NetError::Dns(format!("binding {addr}: {e}")))?;
        Ok(tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..n], &table) {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        }))
    }
}

fn answer(query: &[u8], table: &DnsTable) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.message_type = MessageType::Response;
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.authoritative = true;
    let mut found = false;
    for q in &req.queries {
        resp.add_query(q.clone());
        let name = q.name().to_ascii();
        if let Some(ips) = table.lookup(&name) {
            found = true;
            if q.query_type() == RecordType::A {
                for ip in ips {
                    resp.add_answer(Record::from_rdata(q.name().clone(), 5, RData::A(A(ip))));
                }
            }
        }
    }
    if !found {
        resp.metadata.response_code = ResponseCode::NXDomain;
    }
    resp.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    #[test]
    fn answers_known_names_and_nxdomain_otherwise() {
        let t = DnsTable::default();
        t.replace(HashMap::from([(
            "web".to_string(),
            vec![Ipv4Addr::new(10, 1, 0, 2)],
        )]));
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("web.").unwrap(),
            RecordType::A,
        ));
        let r = Message::from_vec(&answer(&q.to_vec().unwrap(), &t).unwrap()).unwrap();
        assert_eq!(r.answers.len(), 1);
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("nope.").unwrap(),
            RecordType::A,
        ));
        let r = Message::from_vec(&answer(&q.to_vec().unwrap(), &t).unwrap()).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }
}

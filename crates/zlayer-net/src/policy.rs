//! Network policy, as two typed nftables tables replaced whole: one in the
//! `ip` family (traffic routed in, from other nodes through the mesh) and
//! one in the `bridge` family (traffic between containers on this node's
//! bridge, which is switched, never routed). Both hook `forward`, so what
//! the node itself sends (published ports, health checks) is untouched.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, SetItem};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::error::NetError;

/// Connections to `to` are dropped unless they come from one of `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressRule {
    pub to: Ipv4Addr,
    pub from: Vec<Ipv4Addr>,
}

/// Makes `table` (in both families) hold exactly `rules`; no rules removes it.
pub fn ensure_policy(table: &str, rules: &[IngressRule]) -> Result<(), NetError> {
    let mut batch = Batch::new();
    for family in [NfFamily::IP, NfFamily::Bridge] {
        let t = Table {
            family,
            name: Cow::Owned(table.to_string()),
            handle: None,
        };
        // Adding first makes the delete valid when the table is absent.
        batch.add(NfListObject::Table(t.clone()));
        batch.delete(NfListObject::Table(t.clone()));
        if rules.is_empty() {
            continue;
        }
        batch.add(NfListObject::Table(t));
        batch.add(NfListObject::Chain(Chain {
            family,
            table: Cow::Owned(table.to_string()),
            name: Cow::Borrowed("forward"),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Forward),
            prio: Some(0),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
        for r in rules {
            let mut expr = vec![crate::nft::ip_match(
                "daddr",
                Operator::EQ,
                Expression::String(Cow::Owned(r.to.to_string())),
            )];
            if !r.from.is_empty() {
                let set = r
                    .from
                    .iter()
                    .map(|a| SetItem::Element(Expression::String(Cow::Owned(a.to_string()))))
                    .collect();
                expr.push(crate::nft::ip_match(
                    "saddr",
                    Operator::NEQ,
                    Expression::Named(NamedExpression::Set(set)),
                ));
            }
            expr.push(Statement::Drop(None));
            batch.add(NfListObject::Rule(Rule {
                family,
                table: Cow::Owned(table.to_string()),
                chain: Cow::Borrowed("forward"),
                expr: Cow::Owned(expr),
                ..Rule::default()
            }));
        }
    }
    nftables::helper::apply_ruleset(&batch.to_nftables())
        .map_err(|e| NetError::Nftables(e.to_string()))
}

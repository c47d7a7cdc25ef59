//! Masquerading of container traffic leaving the node, as a typed nftables
//! ruleset applied through `nft`'s JSON API (the `nftables` crate). The
//! table is replaced whole, so re-applying is idempotent.

use std::borrow::Cow;

use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression};
use nftables::schema::{Chain, NfListObject, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainType, NfFamily, NfHook};

use crate::error::NetError;
use crate::ipam::Cidr;

/// Masquerades what the node's containers (`cidr`) send out of any other
/// interface than `bridge`, except to `exempt` (the cluster's container
/// space, reached through the mesh with the caller's own address).
pub fn ensure_masquerade(
    table: &str,
    bridge: &str,
    cidr: &Cidr,
    exempt: Option<&Cidr>,
) -> Result<(), NetError> {
    let mut batch = Batch::new();
    let t = Table {
        family: NfFamily::IP,
        name: Cow::Owned(table.to_string()),
        handle: None,
    };
    batch.add(NfListObject::Table(t.clone()));
    batch.delete(NfListObject::Table(t.clone()));
    batch.add(NfListObject::Table(t));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::IP,
        table: Cow::Owned(table.to_string()),
        name: Cow::Borrowed("postrouting"),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(100),
        ..Chain::default()
    }));
    let mut expr = vec![crate::nft::ip_match(
        "saddr",
        Operator::EQ,
        crate::nft::prefix(cidr),
    )];
    if let Some(cluster) = exempt {
        expr.push(crate::nft::ip_match(
            "daddr",
            Operator::NEQ,
            crate::nft::prefix(cluster),
        ));
    }
    expr.extend([
        Statement::Match(Match {
            left: Expression::Named(NamedExpression::Meta(Meta {
                key: MetaKey::Oifname,
            })),
            right: Expression::String(Cow::Owned(bridge.to_string())),
            op: Operator::NEQ,
        }),
        Statement::Masquerade(None),
    ]);
    batch.add(NfListObject::Rule(Rule {
        family: NfFamily::IP,
        table: Cow::Owned(table.to_string()),
        chain: Cow::Borrowed("postrouting"),
        expr: Cow::Owned(expr),
        ..Rule::default()
    }));
    nftables::helper::apply_ruleset(&batch.to_nftables())
        .map_err(|e| NetError::Nftables(e.to_string()))
}

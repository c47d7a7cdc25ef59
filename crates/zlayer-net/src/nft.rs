//! Typed nftables expressions the rulesets share.

use std::borrow::Cow;

use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::stmt::{Match, Operator, Statement};

use crate::ipam::Cidr;

/// `ip FIELD OP RIGHT`, FIELD being `saddr` or `daddr`.
pub(crate) fn ip_match(
    field: &'static str,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: Cow::Borrowed("ip"),
                field: Cow::Borrowed(field),
            },
        ))),
        right,
        op,
    })
}

/// `NETWORK/PREFIX` as a match's right side.
pub(crate) fn prefix(cidr: &Cidr) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(Cow::Owned(cidr.network.to_string()))),
        len: cidr.prefix as u32,
    }))
}

//! Why a replica cannot be placed, in words a user can act on:
//! `no node with 2 free GPUs and label gpu=true (3 nodes: 2 without label
//! gpu=true, 1 short of GPUs)`.

use std::fmt;

use crate::feasibility::Exclusion;
use crate::NodeMode;
use zlayer_model::Resources;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaceable {
    pub request: Resources,
    pub mode: NodeMode,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// How many nodes each check excluded (each node counted once, by the
    /// first check it failed), in check order.
    pub excluded: Vec<(Exclusion, usize)>,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn cpus(milli: u64) -> String {
    let s = format!("{:.3}", milli as f64 / 1000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} free CPU{}", if milli == 1000 { "" } else { "s" })
}

impl Unplaceable {
    /// What the replica needs that the excluded nodes lacked.
    fn need(&self, e: &Exclusion) -> Option<String> {
        Some(match e {
            Exclusion::Down | Exclusion::Draining => return None,
            Exclusion::MissingLabel(k, v) => format!("label {k}={v}"),
            Exclusion::NotPinnedNode(n) => format!("its volume (node {n})"),
            Exclusion::Cpu => cpus(self.request.cpu_milli),
            Exclusion::Memory => format!(
                "{} free memory",
                zlayer_spec::Size(self.request.memory_bytes)
            ),
            Exclusion::Gpu => plural(self.request.gpus as u64, "free GPU", "free GPUs"),
            Exclusion::AlreadyRunsOne if self.mode == NodeMode::Exclusive => {
                "nothing else running (exclusive)".into()
            }
            Exclusion::AlreadyRunsOne => "no replica of this service yet (dedicated)".into(),
            Exclusion::NotEmpty => "nothing else running (exclusive)".into(),
            Exclusion::HeldExclusively => "no exclusive tenant".into(),
        })
    }

    fn why(e: &Exclusion, n: usize) -> String {
        match e {
            Exclusion::Down => format!("{n} down"),
            Exclusion::Draining => format!("{n} draining"),
            Exclusion::MissingLabel(k, v) => format!("{n} without label {k}={v}"),
            Exclusion::NotPinnedNode(_) => format!("{n} not holding its volume"),
            Exclusion::Cpu => format!("{n} short of CPU"),
            Exclusion::Memory => format!("{n} short of memory"),
            Exclusion::Gpu => format!("{n} short of GPUs"),
            Exclusion::AlreadyRunsOne => format!("{n} already running one"),
            Exclusion::NotEmpty => format!("{n} running other work"),
            Exclusion::HeldExclusively => format!("{n} held by an exclusive service"),
        }
    }
}

impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return write!(f, "no nodes in the cluster");
        }
        let mut needs: Vec<String> = Vec::new();
        for (e, _) in &self.excluded {
            if let Some(n) = self.need(e) {
                if !needs.contains(&n) {
                    needs.push(n);
                }
            }
        }
        match needs.split_last() {
            None => write!(f, "no ready node")?,
            Some((last, [])) => write!(f, "no node with {last}")?,
            Some((last, rest)) => write!(f, "no node with {} and {last}", rest.join(", "))?,
        }
        let why: Vec<String> = self
            .excluded
            .iter()
            .map(|(e, n)| Unplaceable::why(e, *n))
            .collect();
        write!(
            f,
            " ({}: {})",
            plural(self.nodes as u64, "node", "nodes"),
            why.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_is_missing_and_where() {
        let u = Unplaceable {
            request: Resources {
                cpu_milli: 500,
                memory_bytes: 1 << 30,
                gpus: 2,
            },
            mode: NodeMode::Shared,
            nodes: 3,
            excluded: vec![
                (Exclusion::MissingLabel("gpu".into(), "true".into()), 2),
                (Exclusion::Gpu, 1),
            ],
        };
        assert_eq!(
            u.to_string(),
            "no node with label gpu=true and 2 free GPUs (3 nodes: 2 without label gpu=true, 1 short of GPUs)"
        );
        let u = Unplaceable {
            request: Resources {
                cpu_milli: 1500,
                memory_bytes: 1536 << 20,
                gpus: 0,
            },
            mode: NodeMode::Shared,
            nodes: 4,
            excluded: vec![
                (Exclusion::Down, 1),
                (Exclusion::Cpu, 2),
                (Exclusion::Memory, 1),
            ],
        };
        assert_eq!(
            u.to_string(),
            "no node with 1.5 free CPUs and 1536Mi free memory (4 nodes: 1 down, 2 short of CPU, 1 short of memory)"
        );
        let u = Unplaceable {
            nodes: 1,
            excluded: vec![(Exclusion::Down, 1)],
            ..u
        };
        assert_eq!(u.to_string(), "no ready node (1 node: 1 down)");
    }
}

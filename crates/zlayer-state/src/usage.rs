//! Metering records in the cluster state: each finished container's use,
//! kept for the newest [`MAX_RECORDS`] (by when they finished), and running
//! totals per node and service that outlive them. A record is keyed by its
//! container id, so a node that sends one twice (its write's outcome was
//! unknown) counts it once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zlayer_model::{UsageRecord, UsageTotals};

/// Records kept; older ones live on only in the totals.
pub const MAX_RECORDS: usize = 20_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageState {
    /// By container id.
    pub records: BTreeMap<String, UsageRecord>,
    /// By [`totals_key`].
    pub totals: BTreeMap<String, UsageTotals>,
}

pub fn totals_key(node: &str, deployment: &str, service: &str) -> String {
    format!("{node}|{deployment}/{service}")
}

/// What [`UsageState::record`] changed.
#[derive(Default)]
pub struct Recorded {
    pub added: Vec<String>,
    pub dropped: Vec<String>,
}

impl UsageState {
    /// Adds the records not seen yet, then drops the oldest past the bound.
    pub fn record(&mut self, records: Vec<UsageRecord>) -> Recorded {
        let mut out = Recorded::default();
        for r in records {
            if self.records.contains_key(&r.container_id) {
                continue;
            }
            self.totals
                .entry(totals_key(&r.node, &r.deployment, &r.service))
                .or_insert_with(|| UsageTotals {
                    node: r.node.clone(),
                    deployment: r.deployment.clone(),
                    service: r.service.clone(),
                    ..Default::default()
                })
                .add(&r);
            out.added.push(r.container_id.clone());
            self.records.insert(r.container_id.clone(), r);
        }
        while self.records.len() > MAX_RECORDS {
            let Some(oldest) = self
                .records
                .values()
                .min_by_key(|r| (r.finished_ms, r.container_id.clone()))
                .map(|r| r.container_id.clone())
            else {
                break;
            };
            self.records.remove(&oldest);
            out.dropped.push(oldest);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, finished_ms: u64, cpu_ms: u64) -> UsageRecord {
        UsageRecord {
            deployment: "batch".into(),
            service: "crunch".into(),
            node: "n1".into(),
            container_id: id.into(),
            finished_ms,
            cpu_ms,
            ..Default::default()
        }
    }

    #[test]
    fn a_record_counts_once_and_totals_outlive_retention() {
        let mut u = UsageState::default();
        let r = u.record(vec![run("a", 10, 100), run("a", 10, 100), run("b", 5, 50)]);
        assert_eq!(r.added, ["a", "b"]);
        assert!(u.record(vec![run("a", 10, 100)]).added.is_empty());
        let t = &u.totals[&totals_key("n1", "batch", "crunch")];
        assert_eq!((t.runs, t.cpu_ms), (2, 150));
        // Past the bound the oldest goes; the totals keep it.
        let many: Vec<UsageRecord> = (0..MAX_RECORDS as u64)
            .map(|i| run(&format!("c{i}"), 100 + i, 1))
            .collect();
        let r = u.record(many);
        assert_eq!(r.dropped, ["b", "a"]);
        assert_eq!(u.records.len(), MAX_RECORDS);
        assert_eq!(
            u.totals[&totals_key("n1", "batch", "crunch")].runs,
            2 + MAX_RECORDS as u64
        );
    }
}

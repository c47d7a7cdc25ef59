//! Which slots a node may replace now, so that `update.parallelism` bounds a
//! rollout across the whole cluster and not per node. Each node rolls only
//! its own slots, but every node decides from the same reports: the room is
//! the parallelism less every replacement under way anywhere, and the stale
//! slots of the whole service take their turns in index order. Two nodes
//! therefore never pick different slots for the same room; a report that
//! lags only makes a node wait longer. A rollout stopped on one node keeps
//! its slot stale, so the slots after it wait too, as Swarm's `pause` does.

use std::collections::BTreeSet;

use zlayer_model::{ReplicaReport, ReplicaState};

/// This node's side of the service: its stale slots (running an older
/// revision, no replacement yet) and how many replacements it runs.
pub(crate) struct Local<'a> {
    pub stale: &'a [u32],
    pub surging: usize,
}

/// The stale slots of this node that may start a replacement now.
/// `reported` are the service's replicas on the other nodes.
pub(crate) fn slots_to_start(
    parallelism: i64,
    revision: &str,
    local: Local<'_>,
    reported: &[ReplicaReport],
) -> Vec<u32> {
    let surging_elsewhere: BTreeSet<u32> = reported
        .iter()
        .filter(|v| v.surge && v.revision == revision)
        .filter(|v| matches!(v.state, ReplicaState::Pending | ReplicaState::Running))
        .map(|v| v.replica)
        .collect();
    let room = (parallelism.max(1) as usize)
        .saturating_sub(local.surging)
        .saturating_sub(surging_elsewhere.len());
    // A slot whose replacement is under way has had its turn.
    let stale_elsewhere = reported
        .iter()
        .filter(|v| !v.surge && v.is_running() && v.revision != revision)
        .map(|v| v.replica)
        .filter(|i| !surging_elsewhere.contains(i));
    let turn: BTreeSet<u32> = local
        .stale
        .iter()
        .copied()
        .chain(stale_elsewhere)
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .take(room)
        .collect();
    local
        .stale
        .iter()
        .copied()
        .filter(|i| turn.contains(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elsewhere(replica: u32, revision: &str, state: ReplicaState, surge: bool) -> ReplicaReport {
        ReplicaReport {
            surge,
            ..ReplicaReport::new(
                "d/web",
                replica,
                state,
                zlayer_model::Health::Healthy,
                revision,
            )
        }
    }

    fn start(
        parallelism: i64,
        stale: &[u32],
        surging: usize,
        reported: &[ReplicaReport],
    ) -> Vec<u32> {
        slots_to_start(parallelism, "v2", Local { stale, surging }, reported)
    }

    #[test]
    fn one_at_a_time_the_lowest_stale_slot_goes_first_wherever_it_runs() {
        let other = [elsewhere(1, "v1", ReplicaState::Running, false)];
        assert_eq!(start(1, &[2, 3], 0, &other), Vec::<u32>::new());
        let done = [elsewhere(1, "v2", ReplicaState::Running, false)];
        assert_eq!(start(1, &[2, 3], 0, &done), vec![2]);
    }

    #[test]
    fn a_replacement_under_way_elsewhere_takes_the_room() {
        let other = [
            elsewhere(1, "v1", ReplicaState::Running, false),
            elsewhere(1, "v2", ReplicaState::Running, true),
        ];
        assert_eq!(start(1, &[2], 0, &other), Vec::<u32>::new());
        assert_eq!(start(2, &[2, 3], 0, &other), vec![2]);
    }

    #[test]
    fn slots_that_do_not_run_elsewhere_do_not_wait_their_turn() {
        let other = [
            elsewhere(2, "v1", ReplicaState::Exited, false),
            elsewhere(4, "v2", ReplicaState::Exited, true),
        ];
        assert_eq!(start(1, &[3], 0, &other), vec![3]);
    }

    #[test]
    fn this_nodes_own_replacements_count_too() {
        assert_eq!(start(2, &[2, 3], 1, &[]), vec![2]);
        assert_eq!(start(2, &[2, 3], 2, &[]), Vec::<u32>::new());
    }
}

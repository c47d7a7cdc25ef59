//! The leader's membership keeper: every node recorded in the state is in
//! Raft, as a learner at first; manager learners become voters so that the
//! cluster has the largest odd number of voters up to five (workers stay
//! learners); removed nodes leave.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};

use crate::{Raft, StateMachine};

pub const MAX_VOTERS: usize = 5;

/// How many voters a cluster of `members` should have.
pub fn wanted_voters(members: usize) -> usize {
    let n = members.min(MAX_VOTERS);
    if n.is_multiple_of(2) {
        n.saturating_sub(1).max(1)
    } else {
        n
    }
}

/// One pass; does nothing unless this member leads.
pub async fn keep(raft: &Raft, machine: &StateMachine, me: u64) {
    let metrics = raft.metrics().borrow().clone();
    if metrics.current_leader != Some(me) {
        return;
    }
    let membership = metrics.membership_config.membership().clone();
    let in_raft: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    let recorded: Vec<(u64, String)> =
        machine.read(|s| s.nodes.values().map(|n| (n.id, n.addr.clone())).collect());
    let managers: BTreeSet<u64> = machine.read(|s| {
        s.nodes
            .values()
            .filter(|n| n.role == zlayer_model::ClusterRole::Manager)
            .map(|n| n.id)
            .collect()
    });

    for (id, addr) in &recorded {
        if !in_raft.contains(id) {
            if let Err(e) = raft.add_learner(*id, BasicNode::new(addr), false).await {
                tracing::warn!("adding node {id} as a learner: {e}");
            }
            return;
        }
    }
    let gone: BTreeSet<u64> = in_raft
        .iter()
        .filter(|id| **id != me && !recorded.iter().any(|(r, _)| r == *id))
        .copied()
        .collect();
    if !gone.is_empty() && !recorded.is_empty() {
        let change = ChangeMembers::RemoveNodes(gone);
        if let Err(e) = raft.change_membership(change, false).await {
            tracing::warn!("removing nodes from Raft: {e}");
        }
        return;
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let want = wanted_voters(managers.iter().filter(|id| in_raft.contains(id)).count());
    if voters.len() >= want {
        return;
    }
    // Promote learners that have caught up with the leader.
    let last = metrics.last_log_index.unwrap_or(0);
    let ready: BTreeSet<u64> = metrics
        .replication
        .iter()
        .flatten()
        .filter(|(id, matched)| {
            !voters.contains(id)
                && managers.contains(id)
                && matched.is_some_and(|m| m.index + 100 >= last)
        })
        .map(|(id, _)| *id)
        .take(want - voters.len())
        .collect();
    if ready.is_empty() {
        return;
    }
    if let Err(e) = raft
        .change_membership(ChangeMembers::AddVoterIds(ready), false)
        .await
    {
        tracing::warn!("promoting learners: {e}");
    }
}

/// Runs [`keep`] every half second until the task is aborted.
pub fn spawn(raft: Raft, machine: StateMachine, me: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            keep(&raft, &machine, me).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn voters_stay_odd_and_at_most_five() {
        let got: Vec<usize> = (1..=8).map(super::wanted_voters).collect();
        assert_eq!(got, [1, 1, 3, 3, 5, 5, 5, 5]);
    }
}

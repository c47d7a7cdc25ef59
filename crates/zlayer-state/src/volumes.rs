//! Named volumes in the cluster state. A volume is `deployment/name`: the
//! leader claims it on one node the first time it places a replica that
//! mounts it, and from then on every replica that mounts it goes to that
//! node, across `down`, scale to zero and rescheduling, until `zlayer
//! volume rm`. Removal leaves a tombstone naming the volume's id; the
//! holding node deletes its data only on that tombstone, never because a
//! record is missing from its view (a view still catching up would
//! otherwise cost a user their data).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

/// Tombstones kept; a node away for longer than this many removals keeps
/// the data of a volume removed meanwhile (never the reverse).
pub const MAX_TOMBSTONES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub deployment: String,
    pub name: String,
    /// Numbers this claim: a volume removed and claimed again is another.
    pub id: u64,
    /// The node that holds the data.
    pub node: String,
    /// The size enforced on the node (`None`: a plain directory).
    pub size_bytes: Option<u64>,
    pub created_ms: u64,
    /// The services (`deployment/service`) placed with it mounted.
    pub users: BTreeSet<String>,
}

impl VolumeRecord {
    pub fn key(&self) -> String {
        key(&self.deployment, &self.name)
    }
}

pub use zlayer_model::VolumeUsage;

/// A claim the leader commits: the volume on `node`, used by `user`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeClaim {
    pub deployment: String,
    pub name: String,
    pub node: String,
    pub size_bytes: Option<u64>,
    pub user: String,
    pub at_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesState {
    pub records: BTreeMap<String, VolumeRecord>,
    /// `(deployment/name, id)` of removed volumes, oldest first.
    pub removed: VecDeque<(String, u64)>,
    pub next_id: u64,
}

pub fn key(deployment: &str, name: &str) -> String {
    format!("{deployment}/{name}")
}

impl VolumesState {
    /// Records each claim: a new volume on the claim's node, or one more
    /// user of a volume already held (wherever it is held: the first claim
    /// wins). Whether anything changed.
    pub fn claim(&mut self, claims: Vec<VolumeClaim>) -> bool {
        let mut changed = false;
        for c in claims {
            let k = key(&c.deployment, &c.name);
            match self.records.get_mut(&k) {
                Some(r) => changed |= r.users.insert(c.user),
                None => {
                    self.next_id += 1;
                    self.records.insert(
                        k,
                        VolumeRecord {
                            deployment: c.deployment,
                            name: c.name,
                            id: self.next_id,
                            node: c.node,
                            size_bytes: c.size_bytes,
                            created_ms: c.at_ms,
                            users: BTreeSet::from([c.user]),
                        },
                    );
                    changed = true;
                }
            }
        }
        changed
    }

    /// Removes volume `key` (claim `id`) unless one of `running` (the
    /// services with a replica placed) uses it.
    pub fn remove(&mut self, key: &str, id: u64, running: &BTreeSet<String>) -> Result<(), String> {
        let Some(r) = self.records.get(key) else {
            return Err(format!("no volume `{key}`"));
        };
        if r.id != id {
            return Err(format!(
                "volume `{key}` was claimed again meanwhile; look at it again"
            ));
        }
        let busy: Vec<&str> = r
            .users
            .iter()
            .filter(|u| running.contains(*u))
            .map(String::as_str)
            .collect();
        if !busy.is_empty() {
            return Err(format!(
                "volume `{key}` is in use by {}; run `zlayer down {}` or scale {} to 0 first",
                busy.join(", "),
                r.deployment,
                busy.join(", ")
            ));
        }
        self.records.remove(key);
        self.removed.push_back((key.to_string(), id));
        while self.removed.len() > MAX_TOMBSTONES {
            self.removed.pop_front();
        }
        Ok(())
    }

    /// What the volume's own node last reported for this claim. A node's
    /// heartbeat may list anything; only the holder's word counts.
    pub fn usage_of<'a>(
        r: &VolumeRecord,
        nodes: impl IntoIterator<Item = &'a crate::NodeRecord>,
    ) -> Option<VolumeUsage> {
        nodes
            .into_iter()
            .find(|n| n.name == r.node)?
            .volume_reports
            .iter()
            .find(|u| u.volume == r.key() && u.id == r.id)
            .cloned()
    }

    pub fn is_removed(&self, key: &str, id: u64) -> bool {
        self.removed.iter().any(|(k, i)| k == key && *i == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, node: &str, user: &str) -> VolumeClaim {
        VolumeClaim {
            deployment: "d".into(),
            name: name.into(),
            node: node.into(),
            size_bytes: Some(1 << 20),
            user: format!("d/{user}"),
            at_ms: 1,
        }
    }

    #[test]
    fn the_first_claim_wins_and_later_ones_only_add_users() {
        let mut v = VolumesState::default();
        assert!(v.claim(vec![claim("data", "a", "web")]));
        assert!(v.claim(vec![claim("data", "b", "worker")]));
        assert!(!v.claim(vec![claim("data", "b", "worker")]));
        let r = &v.records["d/data"];
        assert_eq!(r.node, "a");
        assert_eq!(r.users.len(), 2);
    }

    #[test]
    fn removal_is_refused_while_a_user_runs_and_leaves_a_tombstone() {
        let mut v = VolumesState::default();
        v.claim(vec![claim("data", "a", "web")]);
        let id = v.records["d/data"].id;
        let running = BTreeSet::from(["d/web".to_string()]);
        let err = v.remove("d/data", id, &running).unwrap_err();
        assert!(err.contains("in use by d/web"), "{err}");
        assert!(v.remove("d/data", id + 1, &BTreeSet::new()).is_err());
        v.remove("d/data", id, &BTreeSet::new()).unwrap();
        assert!(v.is_removed("d/data", id));
        v.claim(vec![claim("data", "b", "web")]);
        let again = &v.records["d/data"];
        assert_ne!(again.id, id, "a volume claimed again is another volume");
        assert!(!v.is_removed("d/data", again.id));
    }

    /// Node b claims a use of `d/data`, which node a holds: ignored.
    #[test]
    fn only_the_holding_node_reports_a_volumes_use() {
        let mut v = VolumesState::default();
        v.claim(vec![claim("data", "a", "web")]);
        let r = v.records["d/data"].clone();
        let usage = |used| VolumeUsage {
            volume: "d/data".into(),
            id: r.id,
            used_bytes: used,
            capacity_bytes: None,
        };
        let node = |name: &str, used| crate::NodeRecord {
            name: name.into(),
            volume_reports: vec![usage(used)],
            ..Default::default()
        };
        let liar = node("b", 999);
        assert_eq!(VolumesState::usage_of(&r, [&liar]), None);
        let holder = node("a", 7);
        assert_eq!(
            VolumesState::usage_of(&r, [&liar, &holder]).map(|u| u.used_bytes),
            Some(7)
        );
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut v = VolumesState::default();
        for i in 0..(MAX_TOMBSTONES + 10) {
            v.claim(vec![claim(&format!("v{i}"), "a", "web")]);
            let id = v.records[&format!("d/v{i}")].id;
            v.remove(&format!("d/v{i}"), id, &BTreeSet::new()).unwrap();
        }
        assert_eq!(v.removed.len(), MAX_TOMBSTONES);
    }
}

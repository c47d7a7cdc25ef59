//! Committed specs, each revision validated once on this node and kept
//! beside its text. A revision this node's parser refuses is logged once
//! and handed on with its error, never skipped silently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zlayer_spec::DeploymentRevision;
use zlayer_state::SpecRevision;

#[derive(Default)]
pub(crate) struct SpecCache {
    by_name: Mutex<HashMap<String, Arc<DeploymentRevision>>>,
}

impl SpecCache {
    /// The current revision of every deployment in `s`.
    #[cfg(test)]
    pub(crate) fn current(&self, s: &zlayer_state::ClusterState) -> Vec<Arc<DeploymentRevision>> {
        let committed: Vec<(String, SpecRevision)> = s
            .deployments
            .values()
            .map(|d| (d.name.clone(), d.current.clone()))
            .collect();
        self.of(&committed)
    }

    /// The revisions named, each parsed unless the cache has it.
    pub(crate) fn of(&self, committed: &[(String, SpecRevision)]) -> Vec<Arc<DeploymentRevision>> {
        let Ok(mut cache) = self.by_name.lock() else {
            return Vec::new();
        };
        cache.retain(|name, _| committed.iter().any(|(n, _)| n == name));
        committed
            .iter()
            .map(|(name, c)| {
                if let Some(known) = cache
                    .get(name)
                    .filter(|k| k.is(c.revision, &c.text, &c.env))
                {
                    return known.clone();
                }
                let parsed = Arc::new(DeploymentRevision::new(
                    name, c.revision, &c.file, &c.text, &c.env,
                ));
                if let Err(e) = &parsed.parsed {
                    tracing::error!(
                        deployment = %name,
                        revision = c.revision,
                        "the committed spec does not parse on this node, so it runs nothing of it: {e}"
                    );
                }
                cache.insert(name.clone(), parsed.clone());
                parsed
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use zlayer_state::{ClusterState, Command};

    fn put(s: &mut ClusterState, text: &str) {
        s.apply(
            Command::PutDeployment {
                name: "d".into(),
                file: "d.yaml".into(),
                text: text.into(),
                env: BTreeMap::new(),
                at_ms: 0,
                counts: Default::default(),
                if_revision: None,
            },
            &mut Vec::new(),
        );
    }

    const SPEC: &str =
        "version: v1\ndeployment: d\nservices:\n  web:\n    image: { name: busybox }\n";

    #[test]
    fn a_revision_is_parsed_once_and_a_bad_one_carries_its_error() {
        let cache = SpecCache::default();
        let mut s = ClusterState::default();
        put(&mut s, SPEC);
        let first = cache.current(&s);
        let again = cache.current(&s);
        assert!(Arc::ptr_eq(&first[0], &again[0]), "parsed twice");
        assert!(first[0].parsed.is_ok());
        put(&mut s, "version: v1\ndeployment: d\nservices: 3\n");
        let bad = cache.current(&s);
        assert_eq!(bad[0].revision, 2);
        let err = bad[0].parsed.as_ref().expect_err("refused");
        assert!(err.contains("d.yaml"), "{err}");
        s.apply(
            Command::RemoveDeployment { name: "d".into() },
            &mut Vec::new(),
        );
        assert!(cache.current(&s).is_empty());
    }
}

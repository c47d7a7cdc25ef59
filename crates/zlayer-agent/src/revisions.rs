//! Templates by revision: the service as its replicas run it, stored so a
//! replica restarts from its own revision after the spec has moved on.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use zlayer_spec::{DeploymentRevision, Spec};

use crate::agent::Agent;
use crate::reconcile::Specs;
use crate::state::Replica;
use crate::template::{Rolls, Template};

impl Agent {
    /// The service's current template, stored so that replicas started from
    /// it can restart from it after the spec has moved on.
    pub(crate) fn current_template(
        &self,
        spec: &Spec,
        d: &DeploymentRevision,
        name: &str,
    ) -> Option<Arc<Template>> {
        let svc = spec.services.get(name)?;
        let rolls = Rolls {
            restarts: self.cluster.restarts(&d.name, name),
            secrets: self.cluster.secret_versions(&svc.secret_refs()),
            configs: self.cluster.config_versions(&svc.config_refs()),
        };
        let t = Template::rolled(spec, name, &d.env, rolls)?;
        let key = t.key();
        let mut cache = self.templates.lock().ok()?;
        if let Some(t) = cache.get(&key) {
            return Some(t.clone());
        }
        if let Err(e) = self.store.put_template(&t) {
            self.store_failed(&format!("template {key}"), &e);
        }
        let t = Arc::new(t);
        cache.insert(key, t.clone());
        Some(t)
    }

    /// The template a replica was started from.
    pub(crate) fn template_of(&self, r: &Replica) -> Option<Arc<Template>> {
        self.template_by_key(&crate::template::key(
            &r.deployment,
            &r.service,
            &r.revision,
        ))
    }

    /// The stored template `deployment/service/revision`, if this node has it.
    pub(crate) fn template_by_key(&self, key: &str) -> Option<Arc<Template>> {
        let key = key.to_string();
        let mut cache = self.templates.lock().ok()?;
        if let Some(t) = cache.get(&key) {
            return Some(t.clone());
        }
        let t = Arc::new(self.store.template(&key)?);
        cache.insert(key, t.clone());
        Some(t)
    }

    /// Drops templates and rollout records that nothing names any more.
    pub(crate) fn forget_templates(
        &self,
        specs: &Specs,
        replicas: &BTreeMap<String, Replica>,
        mut keep: HashSet<String>,
    ) {
        keep.extend(
            replicas
                .values()
                .map(|r| crate::template::key(&r.deployment, &r.service, &r.revision)),
        );
        if let Err(e) = self.store.retain_templates(&keep) {
            self.store_failed("dropping unused templates", &e);
        }
        if let Ok(mut cache) = self.templates.lock() {
            cache.retain(|k, _| keep.contains(k));
        }
        for r in self.store.rollouts() {
            let live = specs
                .iter()
                .any(|(_, s)| s.deployment == r.deployment && s.services.contains_key(&r.service));
            if !live {
                if let Err(e) = self.store.remove_rollout(&r.deployment, &r.service) {
                    self.store_failed(&format!("rollout {}/{}", r.deployment, r.service), &e);
                }
            }
        }
    }
}

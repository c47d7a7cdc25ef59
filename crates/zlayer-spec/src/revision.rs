//! A committed revision of a deployment: its text as written, beside the
//! form it validated to, so each revision is parsed once on each node.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Spec;

#[derive(Clone, Debug)]
pub struct DeploymentRevision {
    pub name: String,
    /// Counts up from 1 with each changed apply of the deployment.
    pub revision: u64,
    pub file: String,
    pub text: String,
    /// Values for `$E:` references, from the applying client's environment.
    pub env: BTreeMap<String, String>,
    /// The validated spec, or the parser's message when this node's parser
    /// refuses the text (a member of another version accepted it).
    pub parsed: Result<Arc<Spec>, String>,
}

impl DeploymentRevision {
    /// Parses and validates `text` once.
    pub fn new(
        name: &str,
        revision: u64,
        file: &str,
        text: &str,
        env: &BTreeMap<String, String>,
    ) -> DeploymentRevision {
        DeploymentRevision {
            name: name.to_string(),
            revision,
            file: file.to_string(),
            text: text.to_string(),
            env: env.clone(),
            parsed: crate::parse(file, text)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        }
    }

    /// Whether this is the revision `text` was committed as: a deployment
    /// removed and applied again starts again at revision 1.
    pub fn is(&self, revision: u64, text: &str, env: &BTreeMap<String, String>) -> bool {
        self.revision == revision && self.text == text && self.env == *env
    }
}

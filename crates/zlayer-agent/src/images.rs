//! Getting a service's image onto the node according to its `pull_policy`,
//! when a spec is applied: `if_not_present` pulls what the store lacks,
//! `always` pulls on every apply (so a moved tag is picked up), `never`
//! only checks the store. A node that starts a replica whose image it lacks
//! (placed there, while `up` ran on another node) pulls it then, with the
//! spec's `pull_secret` when it names one.

use zlayer_image::{ImageError, ImageStore, RegistryOptions, Silent};
use zlayer_spec::{Image, PullPolicy};

pub(crate) async fn ensure_image(
    images: &ImageStore,
    registries: &RegistryOptions,
    image: &Image,
) -> Result<(), ImageError> {
    let present = images.contains(&image.name);
    let pull = match image.pull_policy {
        PullPolicy::Never => false,
        PullPolicy::IfNotPresent => !present,
        PullPolicy::Always => true,
    };
    if !pull {
        return images.lookup(&image.name).map(|_| ());
    }
    tracing::info!(image = %image.name, policy = ?image.pull_policy, "pulling");
    let pulled = images
        .pull(&image.name, registries, std::sync::Arc::new(Silent))
        .await?;
    tracing::info!(image = %pulled.name, digest = %pulled.digest, "pulled");
    Ok(())
}

impl crate::agent::Agent {
    /// Before a start: pulls the template's image if this node lacks it
    /// (unless its policy is `never`), with its pull secret's credentials.
    pub(crate) async fn image_for_start(
        &self,
        t: &crate::template::Template,
    ) -> Result<(), String> {
        let image = &t.service.image;
        if image.pull_policy == PullPolicy::Never || self.launcher.has_image(&image.name) {
            return Ok(());
        }
        let mut registries = self.registries.clone();
        if let Some(secret) = &image.pull_secret {
            let values = self
                .cluster
                .secret_values(&t.deployment, &t.service_name, vec![secret.clone()])
                .await
                .map_err(|e| format!("its image's pull secret `{secret}`: {e}"))?;
            let credentials = values
                .get(secret)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(zlayer_image::BasicCredentials::parse)
                .ok_or_else(|| format!("pull secret `{secret}` does not hold USER:PASSWORD"))?;
            registries.credentials = Some(credentials);
        }
        let pull = Image {
            pull_policy: PullPolicy::IfNotPresent,
            ..image.clone()
        };
        self.launcher
            .pull(pull, registries)
            .await
            .map_err(|e| format!("pulling {}: {e}", image.name))
    }
}

//! Getting a service's image onto the node according to its `pull_policy`,
//! when a spec is applied: `if_not_present` pulls what the store lacks,
//! `always` pulls on every apply (so a moved tag is picked up), `never`
//! only checks the store.

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

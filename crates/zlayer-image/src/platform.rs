//! Choosing this node's entry from an image index (OCI index or Docker
//! manifest list), for imports and pulls alike.

use oci_spec::image::{Arch, ImageIndex, Os};

use crate::error::ImageError;

/// `linux/amd64`, `linux/arm64/v8`, … as registries and `docker` spell it.
pub fn host_platform() -> String {
    format!("linux/{}", host_arch())
}

pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The manifest digest for this node in `index`, or an error that lists the
/// platforms the index does offer.
pub(crate) fn pick_manifest(index: &ImageIndex, image: &str) -> Result<String, ImageError> {
    let arch = host_arch();
    let matching = index.manifests().iter().find(|m| {
        m.platform()
            .as_ref()
            .is_some_and(|p| *p.os() == Os::Linux && p.architecture().to_string() == arch)
    });
    if let Some(m) = matching {
        return Ok(m.digest().to_string());
    }
    let available: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|m| m.platform().as_ref())
        .filter(|p| *p.architecture() != Arch::Other("unknown".into()))
        .map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    Err(ImageError::WrongPlatform {
        image: image.to_string(),
        wanted: host_platform(),
        available: if available.is_empty() {
            "none named".into()
        } else {
            available.join(", ")
        },
    })
}

/// Media types that mean "a list of per-platform manifests".
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

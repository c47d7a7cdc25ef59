//! `zlayer image import FILE`: OCI image-layout tarballs (skopeo, umoci,
//! buildah, `docker save` since 25) and classic `docker save` tarballs. Every
//! file becomes a blob (OCI blobs are checked against their names); then the
//! index or manifest.json names the images to tag.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest as OciDigest, ImageIndex, ImageManifestBuilder, MediaType,
};
use serde::Deserialize;

use crate::error::{ImageError, IoContext};
use crate::store::{read_document, ImageStore};

const METADATA_FILES: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

struct Unpacked {
    /// Archive path -> stored blob digest and size.
    files: HashMap<String, (String, u64)>,
    symlinks: HashMap<String, String>,
    metadata: HashMap<String, Vec<u8>>,
}

impl ImageStore {
    /// Imports every image in the archive; returns the names tagged.
    pub fn import(&self, archive: &Path) -> Result<Vec<String>, ImageError> {
        let _lock = self.lock()?;
        let f = File::open(archive).at(archive)?;
        let mut reader: Box<dyn Read> = Box::new(BufReader::new(f));
        let mut magic = [0u8; 2];
        let gz = File::open(archive)
            .at(archive)?
            .read_exact(&mut magic)
            .is_ok()
            && magic == [0x1f, 0x8b];
        if gz {
            reader = Box::new(flate2::read::MultiGzDecoder::new(reader));
        }
        let u = self.store_entries(reader, archive)?;
        let fallback = archive
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.trim_end_matches(".tar").to_string())
            .unwrap_or_else(|| "imported".into());
        if let Some(index) = u.metadata.get("index.json") {
            self.import_oci(index, &fallback)
        } else if let Some(manifest) = u.metadata.get("manifest.json") {
            self.import_docker(manifest, &u)
        } else {
            Err(ImageError::UnknownArchive(archive.display().to_string()))
        }
    }

    fn store_entries(&self, reader: Box<dyn Read>, archive: &Path) -> Result<Unpacked, ImageError> {
        let mut u = Unpacked {
            files: HashMap::new(),
            symlinks: HashMap::new(),
            metadata: HashMap::new(),
        };
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().at(archive)? {
            let mut entry = entry.at(archive)?;
            let path = clean(&entry.path().at(archive)?);
            match entry.header().entry_type() {
                tar::EntryType::Regular => {
                    if METADATA_FILES.contains(&path.as_str()) {
                        let b =
                            read_document(&mut entry, &format!("{}: {path}", archive.display()))?;
                        u.metadata.insert(path, b);
                    } else {
                        let expected = path
                            .strip_prefix("blobs/sha256/")
                            .map(|hex| format!("sha256:{hex}"));
                        let stored = self.put_blob(&mut entry, expected.as_deref())?;
                        u.files.insert(path, stored);
                    }
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name().at(archive)?.unwrap_or_default();
                    let dir = Path::new(&path).parent().unwrap_or(Path::new(""));
                    u.symlinks.insert(path.clone(), clean(&dir.join(target)));
                }
                _ => {}
            }
        }
        Ok(u)
    }

    fn import_oci(&self, index: &[u8], fallback: &str) -> Result<Vec<String>, ImageError> {
        let index = ImageIndex::from_reader(index)
            .map_err(|e| ImageError::Metadata(format!("index.json: {e}")))?;
        let mut names = Vec::new();
        for desc in index.manifests() {
            let annotations = desc.annotations().clone().unwrap_or_default();
            let name = match annotations
                .get("io.containerd.image.name")
                .or(annotations.get("org.opencontainers.image.ref.name"))
            {
                Some(n) if n.contains(':') || n.contains('/') => n.clone(),
                Some(tag) => format!("{fallback}:{tag}"),
                None => format!("{fallback}:latest"),
            };
            let manifest_digest = self.pick_platform(desc, &name)?;
            self.check_complete(&manifest_digest)?;
            names.push(self.tag_locked(&name, &manifest_digest)?);
        }
        Ok(names)
    }

    /// A manifest digest for this node: the descriptor itself, or for an
    /// index, the entry for this node's platform.
    fn pick_platform(&self, desc: &Descriptor, image: &str) -> Result<String, ImageError> {
        if !crate::platform::is_index(desc.media_type().as_ref()) {
            return Ok(desc.digest().to_string());
        }
        let b = self.read_blob(desc.digest().as_ref())?;
        let idx =
            ImageIndex::from_reader(&b[..]).map_err(|e| ImageError::Metadata(e.to_string()))?;
        crate::platform::pick_manifest(&idx, image)
    }

    pub(crate) fn check_complete(&self, manifest_digest: &str) -> Result<(), ImageError> {
        let m = self.manifest(manifest_digest)?;
        for d in std::iter::once(m.config()).chain(m.layers()) {
            if !self.has_blob(d.digest().as_ref()) {
                return Err(ImageError::MissingBlob(d.digest().to_string()));
            }
        }
        Ok(())
    }

    fn import_docker(&self, manifest: &[u8], u: &Unpacked) -> Result<Vec<String>, ImageError> {
        let entries: Vec<DockerSaveEntry> = serde_json::from_slice(manifest)
            .map_err(|e| ImageError::Metadata(format!("manifest.json: {e}")))?;
        let lookup = |p: &str| -> Result<(String, u64), ImageError> {
            let p = u.symlinks.get(p).map(String::as_str).unwrap_or(p);
            u.files
                .get(p)
                .cloned()
                .ok_or_else(|| ImageError::MissingBlob(p.to_string()))
        };
        let mut names = Vec::new();
        for e in entries {
            let (cfg_digest, cfg_size) = lookup(&e.config)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let (d, size) = lookup(l)?;
                layers.push(descriptor(MediaType::ImageLayer, &d, size)?);
            }
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .config(descriptor(MediaType::ImageConfig, &cfg_digest, cfg_size)?)
                .layers(layers)
                .build()
                .map_err(|e| ImageError::Metadata(e.to_string()))?;
            let body =
                serde_json::to_vec(&manifest).map_err(|e| ImageError::Metadata(e.to_string()))?;
            let (digest, _) = self.put_blob(&mut &body[..], None)?;
            let tags = e.repo_tags.clone().unwrap_or_default();
            if tags.is_empty() {
                names.push(digest.clone());
            }
            for t in tags {
                names.push(self.tag_locked(&t, &digest)?);
            }
        }
        Ok(names)
    }
}

pub(crate) fn descriptor(
    media: MediaType,
    digest: &str,
    size: u64,
) -> Result<Descriptor, ImageError> {
    let d: OciDigest = digest
        .parse()
        .map_err(|e| ImageError::Metadata(format!("{digest}: {e}")))?;
    DescriptorBuilder::default()
        .media_type(media)
        .digest(d)
        .size(size)
        .build()
        .map_err(|e| ImageError::Metadata(e.to_string()))
}

fn clean(p: &Path) -> String {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

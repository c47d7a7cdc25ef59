//! Read-only questions about the image being built, answered from its
//! unpacked layers without mounting them: does a path exist, is it a
//! directory, what does a file hold. Upper layers win; an overlay whiteout
//! (a 0:0 character device) or an opaque directory hides what is below.

use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The most [`LayerView::read_to_string`] reads (an image's `/etc/passwd`).
pub const MAX_READ: u64 = 1 << 20;

pub struct LayerView<'a> {
    /// Bottom first.
    pub dirs: &'a [PathBuf],
}

impl LayerView<'_> {
    /// Where `path` (relative, no leading `/`) lives in the merged view.
    pub fn find(&self, path: &str) -> Option<(PathBuf, Metadata)> {
        self.find_layer(path).map(|(_, p, md)| (p, md))
    }

    fn find_layer(&self, path: &str) -> Option<(&Path, PathBuf, Metadata)> {
        let rel = Path::new(path.trim_start_matches('/'));
        for dir in self.dirs.iter().rev() {
            let candidate = dir.join(rel);
            if let Ok(md) = fs::symlink_metadata(&candidate) {
                if is_whiteout(&md) {
                    return None;
                }
                return Some((dir, candidate, md));
            }
            if hidden_below(dir, rel) {
                return None;
            }
        }
        None
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.find(path).is_some_and(|(_, md)| md.is_dir())
    }

    pub fn exists(&self, path: &str) -> bool {
        self.find(path).is_some()
    }

    /// A small text file (at most [`MAX_READ`] bytes), resolved inside the
    /// layer that holds it; anything else reads as empty.
    pub fn read_to_string(&self, path: &str) -> String {
        let rel = Path::new(path.trim_start_matches('/'));
        self.find_layer(path)
            .and_then(|(layer, _, _)| {
                zlayer_confined::Confined::open(layer)
                    .and_then(|root| root.read_capped(rel, MAX_READ))
                    .ok()
                    .flatten()
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

pub fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Whether an ancestor of `rel` in this layer is a whiteout or opaque, so
/// nothing further down can show through.
fn hidden_below(layer: &Path, rel: &Path) -> bool {
    rel.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .any(|a| {
            let p = layer.join(a);
            match fs::symlink_metadata(&p) {
                Ok(md) if is_whiteout(&md) => true,
                Ok(md) if md.is_dir() => xattr::get(&p, "trusted.overlay.opaque")
                    .ok()
                    .flatten()
                    .is_some_and(|v| v == b"y"),
                _ => false,
            }
        })
}

//! Writing a layer archive: a tar stream, gzip-compressed into the image
//! store's temporary directory, with the diff id (sha256 of the tar) and the
//! blob digest (sha256 of the gzip) computed in the same pass. Entries are
//! written in the order given, with explicit owners, modes and times, so a
//! layer built twice from the same inputs has the same digests.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> Hashing<W> {
    Hashing {
        inner,
        hasher: Sha256::new(),
        bytes: 0,
    }
}

type Sink = Hashing<GzEncoder<Hashing<BufWriter<File>>>>;

pub struct LayerWriter {
    path: PathBuf,
    tar: tar::Builder<Sink>,
}

/// A finished archive, not yet in the store.
pub struct LayerArchive {
    pub path: PathBuf,
    pub blob_digest: String,
    pub size: u64,
    pub diff_id: String,
}

/// Owner, mode and time of an entry.
#[derive(Clone, Copy, Debug)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: u64,
}

impl LayerWriter {
    pub fn create(path: PathBuf) -> io::Result<LayerWriter> {
        let file = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(hashing(file), Compression::fast());
        let mut tar = tar::Builder::new(hashing(gz));
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Complete);
        Ok(LayerWriter { path, tar })
    }

    fn header(kind: EntryType, a: Attrs, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_uid(a.uid.into());
        h.set_gid(a.gid.into());
        h.set_mode(a.mode & 0o7777);
        h.set_mtime(a.mtime);
        h.set_size(size);
        h
    }

    pub fn dir(&mut self, path: &Path, a: Attrs) -> io::Result<()> {
        let mut h = Self::header(EntryType::Directory, a, 0);
        self.tar.append_data(&mut h, path, io::empty())
    }

    pub fn file(&mut self, path: &Path, a: Attrs, source: &Path) -> io::Result<()> {
        let f = File::open(source)?;
        let size = f.metadata()?.len();
        let mut h = Self::header(EntryType::Regular, a, size);
        self.tar.append_data(&mut h, path, f)
    }

    pub fn file_from(
        &mut self,
        path: &Path,
        a: Attrs,
        size: u64,
        data: impl io::Read,
    ) -> io::Result<()> {
        let mut h = Self::header(EntryType::Regular, a, size);
        self.tar.append_data(&mut h, path, data)
    }

    pub fn symlink(&mut self, path: &Path, a: Attrs, target: &Path) -> io::Result<()> {
        let mut h = Self::header(EntryType::Symlink, a, 0);
        self.tar.append_link(&mut h, path, target)
    }

    pub fn hardlink(&mut self, path: &Path, a: Attrs, target: &Path) -> io::Result<()> {
        let mut h = Self::header(EntryType::Link, a, 0);
        self.tar.append_link(&mut h, path, target)
    }

    /// An entry copied from the filesystem as it is (owner, mode, time, and
    /// the device numbers of special files).
    pub fn copy_from_fs(&mut self, path: &Path, source: &Path) -> io::Result<()> {
        self.tar.append_path_with_name(source, path)
    }

    /// An entry with a header made elsewhere (from another archive).
    pub fn append(
        &mut self,
        header: &mut Header,
        path: &Path,
        data: impl io::Read,
    ) -> io::Result<()> {
        self.tar.append_data(header, path, data)
    }

    pub fn append_link(
        &mut self,
        header: &mut Header,
        path: &Path,
        target: &Path,
    ) -> io::Result<()> {
        self.tar.append_link(header, path, target)
    }

    /// The marker that hides `path` from the layers below.
    pub fn whiteout(&mut self, path: &Path) -> io::Result<()> {
        let name = path
            .file_name()
            .map(|n| format!(".wh.{}", n.to_string_lossy()))
            .unwrap_or_default();
        let marker = path.with_file_name(name);
        let a = Attrs {
            uid: 0,
            gid: 0,
            mode: 0o644,
            mtime: 0,
        };
        self.file_from(&marker, a, 0, io::empty())
    }

    /// The marker that hides everything below directory `dir` in lower layers.
    pub fn opaque(&mut self, dir: &Path) -> io::Result<()> {
        let a = Attrs {
            uid: 0,
            gid: 0,
            mode: 0o644,
            mtime: 0,
        };
        self.file_from(&dir.join(".wh..wh..opq"), a, 0, io::empty())
    }

    pub fn finish(self) -> io::Result<LayerArchive> {
        let tar_sink = self.tar.into_inner()?;
        let diff_id = format!("sha256:{}", hex::encode(tar_sink.hasher.finalize()));
        let blob_sink = tar_sink.inner.finish()?;
        let blob_digest = format!("sha256:{}", hex::encode(blob_sink.hasher.finalize()));
        let size = blob_sink.bytes;
        let file = blob_sink.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(LayerArchive {
            path: self.path,
            blob_digest,
            size,
            diff_id,
        })
    }
}

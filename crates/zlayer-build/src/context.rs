//! The build context: the directory `COPY` and `ADD` read from, with
//! `.dockerignore` applied. Sources are resolved inside it (a source that
//! climbs out is refused; a symlink on the way resolves as if the context
//! were `/`) and expanded into the files to copy. A source that is itself a
//! symlink is copied as a symlink, never followed, as Docker does, and
//! `.dockerignore` applies to the path a source really names, so a symlink
//! to an ignored directory does not reach into it.

use std::fs;
use std::path::{Path, PathBuf};

use globset::GlobBuilder;
use walkdir::WalkDir;

use crate::ignore::{clean, Ignore};

pub struct Context {
    pub root: PathBuf,
    pub ignore: Ignore,
}

/// One file, directory or symlink of the context to put in the image.
#[derive(Debug, Clone)]
pub struct ContextEntry {
    /// Path on disk.
    pub path: PathBuf,
    /// Path relative to the source it came from (empty for the source itself).
    pub rel: PathBuf,
}

/// A source as named in the instruction, matched in the context.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub is_dir: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("`{0}` is outside the build context")]
    Outside(String),
    #[error("`{0}` is not in the build context {1}")]
    Missing(String, String),
    #[error("`{0}` is excluded by .dockerignore")]
    Excluded(String),
    #[error("no file in the build context matches `{0}`")]
    NoMatch(String),
    #[error("bad pattern `{0}`: {1}")]
    Pattern(String, String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl Context {
    pub fn open(root: &Path) -> Result<Context, crate::BuildError> {
        let root = fs::canonicalize(root)
            .map_err(|e| crate::BuildError::Context(ContextError::Io(root.to_path_buf(), e)))?;
        let ignore = match fs::read_to_string(root.join(".dockerignore")) {
            Ok(text) => Ignore::parse(&text)?,
            Err(_) => Ignore::default(),
        };
        Ok(Context { root, ignore })
    }

    fn rel_str(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    }

    /// The context paths `pattern` names: one path, or every match of a glob.
    pub fn sources(&self, pattern: &str) -> Result<Vec<Source>, ContextError> {
        if climbs_out(pattern) {
            return Err(ContextError::Outside(pattern.into()));
        }
        let cleaned = clean(pattern);
        if !pattern.contains(['*', '?', '[']) {
            let missing = || ContextError::Missing(pattern.into(), self.root.display().to_string());
            let path = self.resolve(&cleaned).ok_or_else(missing)?;
            let md = fs::symlink_metadata(&path).map_err(|_| missing())?;
            let real = self.rel_str(&path);
            if !cleaned.is_empty()
                && (self.ignore.excludes(&cleaned) || self.ignore.excludes(&real))
            {
                return Err(ContextError::Excluded(pattern.into()));
            }
            return Ok(vec![Source {
                path,
                is_dir: md.is_dir(),
            }]);
        }
        let glob = GlobBuilder::new(&cleaned)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| ContextError::Pattern(pattern.into(), e.kind().to_string()))?
            .compile_matcher();
        let depth = cleaned.split('/').count();
        let mut out = Vec::new();
        for entry in WalkDir::new(&self.root)
            .min_depth(depth)
            .max_depth(depth)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| ContextError::Io(self.root.clone(), e.into()))?;
            let rel = self.rel_str(entry.path());
            if glob.is_match(&rel) && !self.ignore.excludes(&rel) {
                let is_dir = entry.file_type().is_dir();
                out.push(Source {
                    path: entry.path().to_path_buf(),
                    is_dir,
                });
            }
        }
        if out.is_empty() {
            return Err(ContextError::NoMatch(pattern.into()));
        }
        Ok(out)
    }

    /// Where `rel` really is: its parent resolved inside the context (a
    /// symlink there is followed within it), its last component as named.
    fn resolve(&self, rel: &str) -> Option<PathBuf> {
        let rel = Path::new(rel);
        let Some(name) = rel.file_name() else {
            return Some(self.root.clone());
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = zlayer_confined::Confined::open(&self.root)
            .and_then(|c| c.real_path(parent))
            .ok()?;
        dir.starts_with(&self.root).then(|| dir.join(name))
    }

    /// Everything under directory source `dir` that is not ignored, parents
    /// before children, sorted by name.
    pub fn walk(&self, dir: &Path) -> Result<Vec<ContextEntry>, ContextError> {
        let mut out = Vec::new();
        let mut walker = WalkDir::new(dir)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = walker.next() {
            let entry = entry.map_err(|e| ContextError::Io(dir.to_path_buf(), e.into()))?;
            let rel_ctx = self.rel_str(entry.path());
            if self.ignore.excludes(&rel_ctx) {
                // An excluded directory is still entered when a later `!` line may
                // bring something under it back.
                if entry.file_type().is_dir() && !self.ignore.has_exceptions() {
                    walker.skip_current_dir();
                }
                continue;
            }
            out.push(ContextEntry {
                path: entry.path().to_path_buf(),
                rel: entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap_or(entry.path())
                    .to_path_buf(),
            });
        }
        Ok(out)
    }
}

fn climbs_out(pattern: &str) -> bool {
    let mut depth: i32 = 0;
    for c in pattern.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_sources_outside() {
        assert!(climbs_out("../x"));
        assert!(climbs_out("a/../../x"));
        assert!(!climbs_out("a/../x"));
        assert!(
            !climbs_out("/etc/passwd"),
            "a leading / is the context root"
        );
    }

    #[test]
    fn sources_globs_and_ignore() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a.txt", "b.txt", "c.log", "sub/d.txt", "skip/e.txt"] {
            let p = d.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        fs::write(d.path().join(".dockerignore"), "skip\nb.txt\n").unwrap();
        let ctx = Context::open(d.path()).unwrap();
        let names = |v: Vec<Source>| {
            v.iter()
                .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(ctx.sources("*.txt").unwrap()), ["a.txt"]);
        assert_eq!(names(ctx.sources("*/d.txt").unwrap()), ["d.txt"]);
        assert!(matches!(
            ctx.sources("b.txt"),
            Err(ContextError::Excluded(_))
        ));
        assert!(matches!(
            ctx.sources("nope"),
            Err(ContextError::Missing(..))
        ));
        assert!(matches!(ctx.sources("*.md"), Err(ContextError::NoMatch(_))));
        let all: Vec<String> = ctx
            .walk(&ctx.root)
            .unwrap()
            .iter()
            .map(|e| e.rel.display().to_string())
            .collect();
        assert_eq!(all, [".dockerignore", "a.txt", "c.log", "sub", "sub/d.txt"]);
    }

    #[test]
    fn symlinks_never_lead_out_of_the_context_or_past_dockerignore() {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("hostfile"), "host secret").unwrap();
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("private")).unwrap();
        fs::write(d.path().join("private/key"), "k").unwrap();
        fs::write(d.path().join(".dockerignore"), "private\n").unwrap();
        std::os::unix::fs::symlink(host.path(), d.path().join("hostdir")).unwrap();
        std::os::unix::fs::symlink("private", d.path().join("alias")).unwrap();
        let ctx = Context::open(d.path()).unwrap();
        assert_eq!(
            ctx.sources("hostdir/hostfile").unwrap_err().to_string(),
            format!(
                "`hostdir/hostfile` is not in the build context {}",
                ctx.root.display()
            )
        );
        let link = ctx.sources("hostdir").unwrap();
        assert!(!link[0].is_dir, "a symlinked directory is a symlink source");
        assert_eq!(
            ctx.sources("alias/key").unwrap_err().to_string(),
            "`alias/key` is excluded by .dockerignore"
        );
        let globbed = ctx.sources("host*").unwrap();
        assert!(!globbed[0].is_dir);
    }
}

//! `.dockerignore`, applied the way Docker applies it: one pattern per line,
//! `#` comments, `!` exceptions, the last matching line decides, and a
//! pattern that matches a directory excludes everything below it. Patterns
//! are globs with Go's `filepath.Match` rules plus `**` (`globset`, with `*`
//! and `?` not crossing `/`).

use globset::{GlobBuilder, GlobMatcher};

#[derive(Debug, thiserror::Error)]
#[error(".dockerignore line {line}: `{pattern}`: {reason}")]
pub struct IgnoreError {
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

#[derive(Default)]
pub struct Ignore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let err = |reason: String| IgnoreError {
                line: i + 1,
                pattern: line.to_string(),
                reason,
            };
            let cleaned = clean(pattern);
            if cleaned.is_empty() {
                return Err(err("the pattern is empty".into()));
            }
            let glob = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| err(e.kind().to_string()))?;
            rules.push((glob.compile_matcher(), negated));
        }
        Ok(Ignore { rules })
    }

    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, negated)| *negated)
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (glob, negated) in &self.rules {
            if prefixes(path).any(|p| glob.is_match(p)) {
                excluded = !negated;
            }
        }
        excluded
    }
}

/// `a/b/c`, then `a/b`, then `a`.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| p.rsplit_once('/').map(|(head, _)| head))
}

/// Go's `filepath.Clean` for a context-relative pattern, leading `/` dropped.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_semantics() {
        let ig = Ignore::parse(
            "# comment\n\ntarget\n*.log\n!keep.log\ndocs/**/*.md\n/secret\n**/.git\n",
        )
        .unwrap();
        assert!(ig.excludes("target"));
        assert!(ig.excludes("target/debug/x"));
        assert!(ig.excludes("a.log"));
        assert!(!ig.excludes("keep.log"));
        assert!(!ig.excludes("sub/a.log"), "* does not cross /");
        assert!(ig.excludes("docs/a/b/c.md"));
        assert!(ig.excludes("docs/c.md"));
        assert!(!ig.excludes("docs/c.txt"));
        assert!(ig.excludes("secret"));
        assert!(ig.excludes("x/y/.git/config"));
        assert!(!ig.excludes("src/main.rs"));
    }

    #[test]
    fn later_lines_win() {
        let ig = Ignore::parse("*\n!src\nsrc/gen\n").unwrap();
        assert!(ig.excludes("README"));
        assert!(!ig.excludes("src/lib.rs"));
        assert!(ig.excludes("src/gen/out.rs"));
    }

    #[test]
    fn bad_pattern_names_its_line() {
        let e = Ignore::parse("ok\n[unclosed\n").err().unwrap();
        assert_eq!(e.line, 2);
    }
}

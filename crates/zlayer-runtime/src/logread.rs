//! Reading a replica's log: what it holds so far, then following it. A log
//! rotates (`LOG.N` ... `LOG.1`, `LOG`), so reading starts at the oldest
//! file kept, and following moves on to the new `LOG` when it is replaced.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The log's complete lines so far (the last `tail` of them; with
/// `follow`, a last line without its newline waits for the follower), and
/// a follower positioned after them.
pub fn read_log(path: &Path, tail: Option<usize>, follow: bool) -> (Vec<String>, Follower) {
    // One stream: a rotation may split a line between two files.
    let mut text = String::new();
    for older in crate::log_files(path).iter().filter(|p| *p != path) {
        if let Ok(mut f) = File::open(older) {
            let _ = f.read_to_string(&mut text);
        }
    }
    let mut current = Follower::open(path.to_path_buf());
    current.partial = std::mem::take(&mut text);
    current.read_lines(&mut |line| text.push_str(line));
    if !follow {
        text.push_str(&std::mem::take(&mut current.partial));
    }
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    (lines[skip..].to_vec(), current)
}

/// Reads a log's complete lines as they come, across rotations.
pub struct Follower {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    inode: u64,
    /// Bytes of the current file read so far.
    consumed: u64,
    partial: String,
}

impl Follower {
    pub fn open(path: PathBuf) -> Follower {
        let mut f = Follower {
            path,
            reader: None,
            inode: 0,
            consumed: 0,
            partial: String::new(),
        };
        f.reopen();
        f
    }

    fn reopen(&mut self) {
        self.reader = File::open(&self.path).ok().map(BufReader::new);
        self.inode = self
            .reader
            .as_ref()
            .and_then(|r| r.get_ref().metadata().ok())
            .map_or(0, |m| m.ino());
        self.consumed = 0;
    }

    /// Hands each complete line (with its newline) read so far to `emit`.
    fn read_lines(&mut self, emit: &mut dyn FnMut(&str)) -> usize {
        let Some(r) = self.reader.as_mut() else {
            return 0;
        };
        let mut n = 0;
        loop {
            match r.read_line(&mut self.partial) {
                Ok(0) | Err(_) => return n,
                Ok(got) => {
                    self.consumed += got as u64;
                    if self.partial.ends_with('\n') {
                        emit(&self.partial);
                        self.partial.clear();
                        n += 1;
                    }
                }
            }
        }
    }

    /// New lines since the last call; when the log was rotated, the rest of
    /// the old file first, then the new one from its start (a line the
    /// rotation split is put back together).
    pub fn poll(&mut self, emit: &mut dyn FnMut(&str)) -> usize {
        let mut n = self.read_lines(emit);
        let now = std::fs::metadata(&self.path).map_or((0, 0), |m| (m.ino(), m.len()));
        // Replaced (rotated to LOG.1), or cut back in place (a one-file log).
        if now.0 != 0 && (now.0 != self.inode || now.1 < self.consumed) {
            self.reopen();
            n += self.read_lines(emit);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn polled(f: &mut Follower) -> String {
        let mut got = String::new();
        f.poll(&mut |line| got.push_str(line));
        got
    }

    #[test]
    fn following_a_log_carries_on_across_a_rotation_and_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("web-1.log");
        std::fs::write(&log, "one\ntw").unwrap();
        let mut f = Follower::open(log.clone());
        assert_eq!(polled(&mut f), "one\n");

        let mut old = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        old.write_all(b"o\nthr").unwrap();
        std::fs::rename(&log, dir.path().join("web-1.log.1")).unwrap();
        std::fs::write(&log, "ee\nfour\n").unwrap();
        assert_eq!(polled(&mut f), "two\nthree\nfour\n");

        // A one-file log is cut back to empty in place.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        std::fs::write(&log, "5\n").unwrap();
        assert_eq!(polled(&mut f), "5\n");
    }
}

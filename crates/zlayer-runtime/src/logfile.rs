//! A replica's log with a size cap: the container writes into a pipe, the
//! shim copies it to `LOG`, and when `LOG` would pass `max_bytes` it becomes
//! `LOG.1` (`LOG.1` becomes `LOG.2`, and so on), keeping `max_files` files
//! in all, as Docker's `max-size`/`max-file` and the kubelet's
//! `containerLogMaxSize`/`containerLogMaxFiles` do. A write that fails (a
//! full disk) drops that output instead of blocking the container.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How much of a replica's output is kept on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLimit {
    /// The most one file holds; 0 keeps everything in one file.
    pub max_bytes: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for LogLimit {
    /// The kubelet's defaults: 10 MiB, 5 files.
    fn default() -> Self {
        LogLimit {
            max_bytes: 10 << 20,
            max_files: 5,
        }
    }
}

/// `LOG.N`, the Nth older file of `LOG`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The files of a log that exist, oldest first (`LOG.N`, ..., `LOG.1`, `LOG`).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

/// The writer end: appends to `LOG`, rotating before a write would make it
/// pass the limit.
pub struct RotatingLog {
    path: PathBuf,
    limit: LogLimit,
    file: File,
    size: u64,
}

impl RotatingLog {
    pub fn open(path: &Path, limit: LogLimit) -> io::Result<RotatingLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            limit,
            file,
            size,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.limit.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
        } else {
            let _ = fs::remove_file(rotated(&self.path, keep - 1));
            for n in (1..keep - 1).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }

    /// Writes all of `buf`, split across files where it crosses the limit.
    pub fn write_chunk(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let max = self.limit.max_bytes;
        while !buf.is_empty() {
            if max > 0 && self.size >= max {
                self.rotate()?;
            }
            let room = if max == 0 {
                buf.len() as u64
            } else {
                max - self.size
            };
            let n = buf.len().min(room as usize);
            self.file.write_all(&buf[..n])?;
            self.size += n as u64;
            buf = &buf[n..];
        }
        Ok(())
    }
}

/// Copies `source` (the read end of the container's output pipe) into the
/// log until every writer has closed it. Output that cannot be written is
/// dropped, so a full disk never stalls the container.
pub fn copy_to_log(mut source: impl Read, path: &Path, limit: LogLimit) {
    let mut log = RotatingLog::open(path, limit).ok();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let written = match log.as_mut() {
            Some(l) => l.write_chunk(&buf[..n]).is_ok(),
            None => false,
        };
        if !written {
            // Reopen on the next chunk: the failure may have been transient.
            log = RotatingLog::open(path, limit).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(path: &Path) -> Vec<u64> {
        log_files(path)
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .collect()
    }

    #[test]
    fn a_log_past_its_limit_keeps_the_newest_output_in_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web-1.log");
        let limit = LogLimit {
            max_bytes: 100,
            max_files: 3,
        };
        let lines: String = (0..200).map(|i| format!("line {i:04}\n")).collect();
        copy_to_log(lines.as_bytes(), &path, limit);

        assert_eq!(sizes(&path), [100, 100, 100]);
        assert!(!rotated(&path, 3).exists(), "a fourth file is never kept");
        let kept: String = log_files(&path)
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect();
        assert!(lines.ends_with(&kept), "the newest output, in order");
        assert!(kept.ends_with("line 0199\n"));
    }

    #[test]
    fn one_file_is_truncated_in_place_and_zero_means_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.log");
        let mut log = RotatingLog::open(
            &one,
            LogLimit {
                max_bytes: 10,
                max_files: 1,
            },
        )
        .unwrap();
        log.write_chunk(b"0123456789abc").unwrap();
        assert_eq!(fs::read_to_string(&one).unwrap(), "abc");
        assert_eq!(log_files(&one), std::slice::from_ref(&one));

        let all = dir.path().join("all.log");
        let unlimited = LogLimit {
            max_bytes: 0,
            max_files: 1,
        };
        copy_to_log(&[b'x'; 5000][..], &all, unlimited);
        assert_eq!(sizes(&all), [5000]);
    }

    #[test]
    fn a_log_that_grew_before_a_restart_rotates_on_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        fs::write(&path, [b'o'; 150]).unwrap();
        let limit = LogLimit {
            max_bytes: 100,
            max_files: 2,
        };
        copy_to_log(&b"new\n"[..], &path, limit);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(sizes(&path), [150, 4]);
    }
}

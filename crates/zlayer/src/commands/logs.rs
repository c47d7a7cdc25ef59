//! `zlayer logs`: a replica's output, followed or tailed.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Result;

pub fn logs(data: &Path, target: &str, follow: bool, tail: Option<usize>) -> Result<i32> {
    let locs = super::block_on(super::client(data).locate(target))?;
    let multi = locs.len() > 1;
    let mut readers = Vec::new();
    for l in &locs {
        let prefix = if multi {
            format!("{}/{} | ", l.service, l.replica)
        } else {
            String::new()
        };
        let Ok(f) = std::fs::File::open(&l.log_path) else {
            continue;
        };
        let mut r = BufReader::new(f);
        let lines: Vec<String> = (&mut r).lines().map_while(Result::ok).collect();
        let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
        let mut out = std::io::stdout().lock();
        for line in &lines[skip..] {
            writeln!(out, "{prefix}{line}")?;
        }
        readers.push((prefix, r));
    }
    if !follow {
        return Ok(0);
    }
    loop {
        let mut any = false;
        for (prefix, r) in readers.iter_mut() {
            let mut line = String::new();
            while r.read_line(&mut line)? > 0 {
                if line.ends_with('\n') {
                    print!("{prefix}{line}");
                    any = true;
                    line.clear();
                } else {
                    let back = line.len() as i64;
                    r.seek(SeekFrom::Current(-back))?;
                    break;
                }
            }
        }
        std::io::stdout().flush()?;
        if !any {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

//! Lets a waiting shim hold almost no memory: the page-table entries of its
//! clean file-backed mappings (the code and read-only data of the binary and
//! its libraries) are dropped before it blocks. The pages stay in the page
//! cache, shared with the node; whatever the shim touches again is simply
//! faulted back in. Mappings holding any private (written) page are left
//! alone, since dropping those would lose the writes.

use std::ops::Range;

/// One mapping of `/proc/self/smaps`, with what decides whether it is clean.
struct Mapping {
    range: Range<usize>,
    file_backed: bool,
    writable: bool,
    dirty_kb: u64,
}

impl Mapping {
    fn clean_file_pages(&self) -> bool {
        self.file_backed && !self.writable && self.dirty_kb == 0
    }
}

fn parse(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).unwrap_or("0");
            out.push(Mapping {
                range: start..end,
                file_backed: inode != "0",
                writable: perms.contains('w'),
                dirty_kb: 0,
            });
        } else if matches!(
            first,
            "Private_Dirty:" | "Shared_Dirty:" | "Anonymous:" | "Swap:"
        ) {
            let kb: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if let Some(m) = out.last_mut() {
                m.dirty_kb += kb;
            }
        }
    }
    out
}

/// Drops the mappings' resident pages where that loses nothing. Best effort.
pub fn release_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let clean: Vec<Range<usize>> = parse(&smaps)
        .into_iter()
        .filter(Mapping::clean_file_pages)
        .map(|m| m.range)
        .collect();
    drop(smaps);
    for r in clean {
        // SAFETY: the range is a whole mapping of this process that is
        // read-only, file-backed and holds no private page; MADV_DONTNEED
        // on it only drops page-table entries, and later accesses fault the
        // unchanged file pages back in.
        unsafe {
            libc::madvise(
                r.start as *mut libc::c_void,
                r.end - r.start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
00400000-00500000 r-xp 00000000 08:01 123 /usr/bin/zlayer
Rss:                 100 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
00600000-00601000 r--p 00100000 08:01 123 /usr/bin/zlayer
Private_Dirty:         4 kB
Anonymous:             4 kB
00601000-00602000 rw-p 00101000 08:01 123 /usr/bin/zlayer
Private_Dirty:         0 kB
7fff0000-7fff1000 rw-p 00000000 00:00 0 [stack]
Private_Dirty:         4 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_are_released() {
        let clean: Vec<Range<usize>> = parse(SAMPLE)
            .into_iter()
            .filter(Mapping::clean_file_pages)
            .map(|m| m.range)
            .collect();
        assert_eq!(clean, vec![0x400000..0x500000]);
    }

    #[test]
    fn this_process_survives_a_release() {
        release_clean_file_pages();
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 500_500);
    }
}

//! What the node offers the scheduler: its CPUs, memory and GPUs.

use std::path::Path;

/// CPU in millicores, memory in bytes, and GPU count of this machine.
pub fn capacity(gpu_root: &Path) -> (u64, u64, u32) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total(&m))
        .unwrap_or(0);
    let gpus = zlayer_runtime::GpuInventory::discover(gpu_root)
        .gpus()
        .len() as u32;
    (cpus * 1000, memory, gpus)
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_mem_total_in_kib() {
        let m = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(super::mem_total(m), Some(24_576_000 * 1024));
        assert_eq!(super::mem_total("nothing"), None);
    }
}

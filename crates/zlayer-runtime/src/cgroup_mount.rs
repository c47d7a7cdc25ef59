//! Mounting the cgroup hierarchy where nothing mounted it.
//!
//! A host without systemd (a minimal init, a microVM, a container host whose
//! init script never ran `cgroupfs-mount`) can leave `/sys/fs/cgroup` a bare
//! sysfs directory. libcontainer then refuses every container ("failed to
//! detect cgroup setup"). zlayer does what `cgroupfs-mount` does, once, before
//! its first container: where the kernel already binds controllers to v1
//! hierarchies (another mount namespace mounted them), it mounts those
//! hierarchies again under a tmpfs, with cgroup2 at `unified` (the hybrid
//! layout); where none is bound, it mounts cgroup2 alone (the unified layout).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};

const ROOT: &str = "/sys/fs/cgroup";

/// What to mount at `/sys/fs/cgroup`.
#[derive(Debug, PartialEq, Eq)]
enum MountPlan {
    /// cgroup2 alone at the root.
    Unified,
    /// A tmpfs holding one directory per bound v1 hierarchy (its controllers
    /// joined by commas), and cgroup2 at `unified` where the kernel has it.
    Hybrid {
        hierarchies: Vec<Vec<String>>,
        unified: bool,
    },
}

/// The plan for a kernel whose `/proc/cgroups` reads `proc_cgroups`.
fn plan(proc_cgroups: &str, has_cgroup2: bool) -> MountPlan {
    let mut bound: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut free = Vec::new();
    for line in proc_cgroups.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, hierarchy, _, "1"] = fields[..] else {
            continue;
        };
        match hierarchy.parse::<u32>() {
            Ok(0) => free.push(vec![name.to_string()]),
            Ok(h) => bound.entry(h).or_default().push(name.into()),
            Err(_) => {}
        }
    }
    match (bound.is_empty(), has_cgroup2) {
        (true, true) => MountPlan::Unified,
        // A v1-only kernel with nothing bound: one new hierarchy per controller.
        (true, false) => MountPlan::Hybrid {
            hierarchies: free,
            unified: false,
        },
        (false, _) => MountPlan::Hybrid {
            hierarchies: bound.into_values().collect(),
            unified: has_cgroup2,
        },
    }
}

/// Makes sure a cgroup hierarchy is mounted at `/sys/fs/cgroup`, mounting one
/// if none is. Checked once per process.
pub(crate) fn ensure_mounted() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        if is_mounted() {
            return Ok(());
        }
        let cgroups =
            fs::read_to_string("/proc/cgroups").map_err(|e| format!("/proc/cgroups: {e}"))?;
        let has_cgroup2 = fs::read_to_string("/proc/filesystems")
            .map(|f| {
                f.lines()
                    .any(|l| l.split_whitespace().last() == Some("cgroup2"))
            })
            .unwrap_or(false);
        let plan = plan(&cgroups, has_cgroup2);
        apply(&plan).map_err(|e| {
            format!(
                "no cgroup hierarchy is mounted at {ROOT}, and mounting one failed: {e}; \
                 mount one (for example `mount -t cgroup2 none {ROOT}`) and try again"
            )
        })?;
        tracing::info!(
            ?plan,
            "no cgroup hierarchy was mounted at {ROOT}: mounted one"
        );
        Ok(())
    })
    .clone()
}

fn is_mounted() -> bool {
    statfs(ROOT)
        .map(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC || s.filesystem_type() == TMPFS_MAGIC)
        .unwrap_or(false)
}

const FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn apply(plan: &MountPlan) -> Result<(), String> {
    match plan {
        MountPlan::Unified => mount_fs("cgroup2", Path::new(ROOT), "cgroup2", None),
        MountPlan::Hybrid {
            hierarchies,
            unified,
        } => {
            mount_fs("cgroup", Path::new(ROOT), "tmpfs", Some("mode=755"))?;
            for controllers in hierarchies {
                let name = controllers.join(",");
                let dir = Path::new(ROOT).join(&name);
                fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                mount_fs("cgroup", &dir, "cgroup", Some(&name))?;
                if controllers.len() > 1 {
                    // `cpu,cpuacct` is also reachable as `cpu` and `cpuacct`, as systemd lays it out.
                    for c in controllers {
                        let _ = std::os::unix::fs::symlink(&name, Path::new(ROOT).join(c));
                    }
                }
            }
            if *unified {
                let dir = Path::new(ROOT).join("unified");
                fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                mount_fs("cgroup2", &dir, "cgroup2", None)?;
            }
            Ok(())
        }
    }
}

fn mount_fs(source: &str, target: &Path, fstype: &str, data: Option<&str>) -> Result<(), String> {
    mount(Some(source), target, Some(fstype), FLAGS, data).map_err(|e| {
        format!(
            "mount -t {fstype} {} {}: {e}",
            data.unwrap_or(""),
            target.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t4\t1
cpu\t1\t4\t1
cpuacct\t1\t4\t1
memory\t4\t101\t1
net_cls\t0\t1\t1
pids\t8\t4\t1
";

    #[test]
    fn controllers_bound_to_v1_are_mounted_hybrid_by_hierarchy() {
        assert_eq!(
            plan(BOUND, true),
            MountPlan::Hybrid {
                hierarchies: vec![
                    vec!["cpu".to_string(), "cpuacct".to_string()],
                    vec!["cpuset".to_string()],
                    vec!["memory".to_string()],
                    vec!["pids".to_string()],
                ],
                unified: true,
            }
        );
    }

    #[test]
    fn no_bound_controller_gives_cgroup2_alone() {
        let free = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t1\t1\nmemory\t0\t1\t1\n";
        assert_eq!(plan(free, true), MountPlan::Unified);
    }

    #[test]
    fn a_kernel_without_cgroup2_gets_v1_alone() {
        let bound = "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t2\t1\t1\nbad line\n";
        assert_eq!(
            plan(bound, false),
            MountPlan::Hybrid {
                hierarchies: vec![vec!["memory".to_string()]],
                unified: false,
            }
        );
        let free = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t1\t1\npids\t0\t1\t1\nhugetlb\t0\t1\t0\n";
        assert_eq!(
            plan(free, false),
            MountPlan::Hybrid {
                hierarchies: vec![vec!["cpu".to_string()], vec!["pids".to_string()]],
                unified: false,
            }
        );
    }
}

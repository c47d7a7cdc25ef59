//! The default seccomp profile. Like Docker's, it keeps containers from the
//! kernel's administrative surface (modules, kexec, mounts, namespaces,
//! keyrings, tracing other processes, clocks); unlike Docker's 300-entry
//! allowlist it is written as a denylist, so new harmless syscalls keep
//! working. Denied calls fail with EPERM rather than killing the process.
//!
//! As in Docker's profile, `clone` may not create namespaces (any of the
//! `CLONE_NEW*` flags fails with EPERM; threads and forks are unaffected),
//! and `clone3`, whose flags sit in memory a filter cannot read, fails with
//! ENOSYS so libc falls back to `clone`. `io_uring` is denied: its rings
//! perform I/O no syscall filter sees.

use serde_json::{json, Value};

const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
];

/// `clone` flags that create a namespace (x86_64 and aarch64 pass the flags first).
const NAMESPACE_FLAGS: &[i32] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

pub(crate) fn default_profile() -> Value {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "SCMP_ARCH_AARCH64",
        _ => "SCMP_ARCH_X86_64",
    };
    let mut syscalls = vec![
        json!({ "names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM }),
        json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS }),
    ];
    // One rule per flag: a filter's argument conditions are ANDed, rules ORed.
    syscalls.extend(NAMESPACE_FLAGS.iter().map(|flag| {
        json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::EPERM,
            "args": [{ "index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ" }]
        })
    }));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": [arch],
        "syscalls": syscalls
    })
}

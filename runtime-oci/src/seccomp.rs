//! `seccompProfile: RuntimeDefault`: the syscalls the container runtimes' default profile keeps
//! from containers. Docker and containerd write that profile as an allow-list of some 350
//! syscalls; this one states the same outcome from the other side, denying with `EPERM` the
//! syscalls Docker documents as blocked ("Significant syscalls blocked by the default profile"),
//! lifted where the container holds the capability that makes them legitimate, as theirs is.
//! A syscall unknown to the kernel is therefore allowed: the kernel refuses it anyway.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Always denied: kernel keyrings, module loading, clock and swap control, kexec, ptrace-style
/// access to other processes, and obsolete calls.
const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "mount",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
    "name_to_handle_at",
    "fanotify_init",
    "syslog",
    "vhangup",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
];

/// Lifted by a capability, as the default profile's `includes.caps` entries lift them.
const LIFTED_BY: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["pivot_root"]),
    (
        Capability::SysModule,
        &[
            "create_module",
            "delete_module",
            "finit_module",
            "init_module",
            "query_module",
        ],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "process_vm_readv", "process_vm_writev", "ptrace"],
    ),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (
        Capability::SysTime,
        &["clock_adjtime", "clock_settime", "settimeofday", "stime"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &["get_mempolicy", "mbind", "set_mempolicy", "move_pages"],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
];

/// `clone` flags that make namespaces: refused without CAP_SYS_ADMIN, so a container cannot
/// nest user namespaces to regain privileges.
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

fn architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        _ => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
    }
}

fn deny(names: Vec<String>, errno: u32, args: Option<Vec<LinuxSeccompArg>>) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names);
    syscall.set_action(LinuxSeccompAction::ScmpActErrno);
    syscall.set_errno_ret(Some(errno));
    syscall.set_args(args);
    syscall
}

/// The RuntimeDefault profile for a container holding `capabilities`.
pub(crate) fn runtime_default(capabilities: &[Capability]) -> LinuxSeccomp {
    let lifted: Vec<&str> = LIFTED_BY
        .iter()
        .filter(|(cap, _)| capabilities.contains(cap))
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    let mut denied: Vec<String> = DENIED
        .iter()
        .filter(|name| !lifted.contains(name))
        .map(|name| name.to_string())
        .collect();
    denied.sort();
    let mut syscalls = vec![deny(denied, EPERM, None)];
    if !lifted.contains(&"clone") {
        for flag in NAMESPACE_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(*flag)
                .value_two(*flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()
                .expect("every field of a seccomp argument is given");
            syscalls.push(deny(vec!["clone".into()], EPERM, Some(vec![arg])));
        }
        // clone3 passes its flags in memory, where seccomp cannot look: ENOSYS makes libc fall
        // back to clone, whose flags it can.
        syscalls.push(deny(vec!["clone3".into()], ENOSYS, None));
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_architectures(Some(architectures()));
    profile.set_syscalls(Some(syscalls));
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied_names(profile: &LinuxSeccomp) -> Vec<String> {
        profile
            .syscalls()
            .as_ref()
            .expect("syscalls")
            .iter()
            .filter(|s| s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_denies_what_docker_documents_and_capabilities_lift_it() {
        let plain = runtime_default(&[Capability::Chown, Capability::Kill]);
        let denied = denied_names(&plain);
        for name in [
            "mount",
            "unshare",
            "ptrace",
            "keyctl",
            "kexec_load",
            "bpf",
            "clone3",
        ] {
            assert!(denied.iter().any(|d| d == name), "{name} is denied");
        }
        let json = serde_json::to_value(&plain).expect("json");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ALLOW");
        let clone_rules = json["syscalls"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| r["names"][0] == "clone")
            .count();
        assert_eq!(
            clone_rules,
            NAMESPACE_FLAGS.len(),
            "one rule per namespace flag"
        );

        let admin = runtime_default(&[Capability::SysAdmin, Capability::SysPtrace]);
        let denied = denied_names(&admin);
        for name in ["mount", "unshare", "setns", "ptrace", "clone3"] {
            assert!(!denied.iter().any(|d| d == name), "{name} is lifted");
        }
        assert!(
            denied.iter().any(|d| d == "kexec_load"),
            "kexec stays denied"
        );
    }
}

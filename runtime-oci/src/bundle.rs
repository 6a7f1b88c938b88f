//! A container's OCI runtime spec (`config.json`), built from its resolved [`ContainerSpec`] the
//! way containerd's CRI plugin builds it for the kubelet: the pod's network namespace joined by
//! path, fresh pid/ipc/uts/mount namespaces, Kubernetes' default capability set adjusted by the
//! security context, masked and read-only /proc paths, seccomp RuntimeDefault on request, the
//! container's cgroup below its pod's with `linux.resources` from its requests and limits.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder,
    LinuxSeccomp, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
    get_default_maskedpaths, get_default_readonly_paths,
};
use skiff_sandbox::{ContainerSpec, SandboxSpec, SeccompProfile, cgroups};

use crate::user::Identity;

/// The capabilities a container gets unless its security context says otherwise: the set
/// containerd and Docker have long granted (containerd `oci/spec.go`, `defaultUnixCaps`).
const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleError {
    #[error("unknown capability {0:?} in securityContext.capabilities")]
    UnknownCapability(String),
    #[error("seccomp profile {path}: {reason}")]
    SeccompProfile { path: PathBuf, reason: String },
    #[error("building the runtime spec: {0}")]
    Spec(#[from] OciSpecError),
}

/// Everything a container's spec is made of beyond its [`ContainerSpec`].
pub(crate) struct Bundle<'a> {
    pub pod: &'a SandboxSpec,
    pub container: &'a ContainerSpec,
    pub rootfs: &'a Path,
    /// The container's own cgroup, absolute below the hierarchy root (`/skiff/…/pod<uid>/<id>`).
    pub cgroups_path: Option<PathBuf>,
    pub identity: &'a Identity,
}

/// The capabilities the container's processes hold.
pub(crate) fn capabilities(container: &ContainerSpec) -> Result<Vec<Capability>, BundleError> {
    let security = &container.security;
    let parse = |name: &String| -> Result<Option<Capability>, BundleError> {
        if name.eq_ignore_ascii_case("ALL") {
            return Ok(None);
        }
        let bare = name.strip_prefix("CAP_").unwrap_or(name);
        Capability::from_str(&bare.to_ascii_uppercase())
            .map(Some)
            .map_err(|_| BundleError::UnknownCapability(name.clone()))
    };
    // "All" is what this process may grant (containerd's `WithAllCurrentCapabilities`): runc
    // fails to start a container asked for one the host has taken away.
    let held = bounding_set();
    let all = || {
        ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(bit, _)| held & (1u64 << bit) != 0)
            .filter_map(|(_, n)| Capability::from_str(n).ok())
            .collect::<Vec<_>>()
    };
    if security.privileged {
        return Ok(all());
    }
    let mut caps: Vec<Capability> = DEFAULT_CAPABILITIES.to_vec();
    let grantable = all();
    caps.retain(|c| grantable.contains(c));
    for drop in &security.capabilities_drop {
        match parse(drop)? {
            Some(cap) => caps.retain(|c| *c != cap),
            None => caps.clear(),
        }
    }
    for add in &security.capabilities_add {
        match parse(add)? {
            Some(cap) if !caps.contains(&cap) => caps.push(cap),
            Some(_) => {}
            None => caps = all(),
        }
    }
    Ok(caps)
}

/// This process's capability bounding set (`CapBnd` in /proc/self/status), all bits when
/// unreadable.
fn bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// Every capability Linux 6 defines, in the order of their numbers (bit `i` is entry `i`), for
/// `privileged` and `add: [ALL]`.
const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn mount(
    destination: &str,
    typ: &str,
    source: &str,
    options: &[&str],
) -> Result<Mount, BundleError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The filesystems every container has, then the pod's volumes (containerd's defaults:
/// `/sys` and the cgroup tree read-only unless privileged).
fn mounts(container: &ContainerSpec) -> Result<Vec<Mount>, BundleError> {
    let sys_mode = if container.security.privileged {
        "rw"
    } else {
        "ro"
    };
    let mut all = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        )?,
    ];
    if !container
        .mounts
        .iter()
        .any(|m| m.container_path == "/dev/shm")
    {
        all.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?);
    }
    for volume in &container.mounts {
        let mode = if volume.read_only { "ro" } else { "rw" };
        all.push(
            MountBuilder::default()
                .destination(&volume.container_path)
                .typ("bind")
                .source(&volume.host_path)
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    mode.to_string(),
                ])
                .build()?,
        );
    }
    Ok(all)
}

fn env(container: &ContainerSpec, pod: &SandboxSpec, identity: &Identity) -> Vec<String> {
    let mut env: Vec<String> = Vec::with_capacity(container.env.len() + 3);
    let has = |name: &str| container.env.iter().any(|(n, _)| n == name);
    // containerd's CRI plugin puts these first; the container's own values override them.
    if !has("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOSTNAME") {
        env.push(format!("HOSTNAME={}", pod.hostname));
    }
    if !has("HOME") {
        env.push(format!("HOME={}", identity.home));
    }
    env.extend(container.env.iter().map(|(n, v)| format!("{n}={v}")));
    env
}

fn seccomp(
    container: &ContainerSpec,
    caps: &[Capability],
) -> Result<Option<LinuxSeccomp>, BundleError> {
    if container.security.privileged {
        return Ok(None);
    }
    match &container.security.seccomp {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => Ok(Some(crate::seccomp::runtime_default(caps))),
        SeccompProfile::Localhost(path) => {
            let text = std::fs::read(path).map_err(|e| BundleError::SeccompProfile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            serde_json::from_slice(&text)
                .map(Some)
                .map_err(|e| BundleError::SeccompProfile {
                    path: path.clone(),
                    reason: e.to_string(),
                })
        }
    }
}

/// The runtime spec of one container.
pub(crate) fn runtime_spec(bundle: &Bundle) -> Result<Spec, BundleError> {
    let Bundle {
        pod,
        container,
        rootfs,
        cgroups_path,
        identity,
    } = bundle;
    let security = &container.security;
    let caps = capabilities(container)?;
    let cap_set: oci_spec::runtime::Capabilities = caps.iter().copied().collect();
    let process = ProcessBuilder::default()
        .terminal(container.tty)
        .user(
            UserBuilder::default()
                .uid(identity.uid)
                .gid(identity.gid)
                .additional_gids(identity.additional_gids.clone())
                .build()?,
        )
        .args(container.argv.clone())
        .env(env(container, pod, identity))
        .cwd(container.working_dir.clone().unwrap_or_else(|| "/".into()))
        .capabilities(
            // No inheritable or ambient capabilities: a process that is not root keeps none
            // across exec, as under containerd.
            LinuxCapabilitiesBuilder::default()
                .bounding(cap_set.clone())
                .effective(cap_set.clone())
                .permitted(cap_set)
                .inheritable(oci_spec::runtime::Capabilities::new())
                .ambient(oci_spec::runtime::Capabilities::new())
                .build()?,
        )
        .no_new_privileges(security.no_new_privileges && !security.privileged)
        .build()?;

    let mut namespaces = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Ipc)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Uts)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
    ];
    if let Some(netns) = &pod.network_namespace {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(netns)
                .build()?,
        );
    }

    let limits = &container.resources;
    let mut cpu = LinuxCpuBuilder::default().shares(cgroups::cpu_shares(limits.cpu_request_millis));
    if let Some(quota) = limits.cpu_limit_millis.and_then(cgroups::cpu_quota) {
        cpu = cpu.quota(quota as i64).period(cgroups::QUOTA_PERIOD_US);
    }
    let mut resources = LinuxResourcesBuilder::default()
        .cpu(cpu.build()?)
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(security.privileged)
                .access("rwm")
                .build()?,
        ]);
    if let Some(bytes) = limits.memory_limit_bytes {
        // Swap equal to the limit: no swap on top of it, as the kubelet runs containers.
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes as i64)
                .swap(bytes as i64)
                .build()?,
        );
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?);
    if let Some(path) = cgroups_path {
        linux = linux.cgroups_path(path.clone());
    }
    // The builder starts from the OCI defaults, which mask paths: privileged containers must
    // say they mask none.
    let (masked, read_only) = if security.privileged || security.unmasked_proc {
        (Vec::new(), Vec::new())
    } else {
        let mut masked = get_default_maskedpaths();
        masked.push("/sys/devices/virtual/powercap".into());
        (masked, get_default_readonly_paths())
    };
    linux = linux.masked_paths(masked).readonly_paths(read_only);
    if let Some(profile) = seccomp(container, &caps)? {
        linux = linux.seccomp(profile);
    }

    Ok(SpecBuilder::default()
        .version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path(rootfs.to_path_buf())
                .readonly(security.read_only_root_filesystem)
                .build()?,
        )
        .hostname(pod.hostname.clone())
        .process(process)
        .mounts(mounts(container)?)
        .linux(linux.build()?)
        .build()?)
}

#[cfg(test)]
mod tests;

//! Linux control groups for pods, on either kind of host: cgroup v2 (one unified tree) or cgroup
//! v1 (a tree per controller, possibly beside a v2 mount, as on hybrid hosts). Which one is
//! detected from the mounts, never assumed. Kubernetes' conversions of CPU millicores to shares,
//! quota and weight live here too, so that pod cgroups and container specs agree.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The controllers Skiff sets limits through.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// Kubernetes' constants (kubelet `cm/helpers_linux.go`).
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const SHARES_PER_CPU: u64 = 1024;
pub const QUOTA_PERIOD_US: u64 = 100_000;
const MIN_QUOTA_US: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading the mounts ({path}): {source}")]
    Mounts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no cgroup hierarchy is mounted (neither cgroup2 nor v1 controllers)")]
    NotMounted,
    #[error("the {controller} controller is not mounted (cgroup v1)")]
    MissingController { controller: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the host's cgroups are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2: every controller in one tree, mounted here.
    Unified(PathBuf),
    /// cgroup v1: where the tree of each controller Skiff sets limits through is mounted, and
    /// every cgroup mount (other controllers, named hierarchies, a hybrid host's v2 mount): runc
    /// puts a container in all of them, so a pod is removed from all of them. A hybrid host's v2
    /// mount holds no controllers Skiff uses, so it counts as v1.
    PerController {
        controllers: BTreeMap<String, PathBuf>,
        mounts: Vec<PathBuf>,
    },
}

impl Hierarchy {
    /// The host's hierarchy, from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Mounts {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_mountinfo(&text)
    }

    /// The hierarchy described by mountinfo text: v2 when a `cgroup2` mount is the cgroup root
    /// (`/sys/fs/cgroup`), else the `cgroup` (v1) mounts, each listing its controllers in its
    /// super options.
    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut unified = None;
        let mut controllers = BTreeMap::new();
        let mut mounts = Vec::new();
        for line in text.lines() {
            let Some((mount, fs)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = mount.split(' ').nth(4) else {
                continue;
            };
            let mut fs = fs.split(' ');
            let (Some(fs_type), Some(_source), Some(options)) = (fs.next(), fs.next(), fs.next())
            else {
                continue;
            };
            match fs_type {
                "cgroup2" if mount_point == "/sys/fs/cgroup" => {
                    unified = Some(PathBuf::from(mount_point));
                }
                "cgroup2" => mounts.push(PathBuf::from(mount_point)),
                "cgroup" => {
                    for controller in options.split(',').filter(|o| CONTROLLERS.contains(o)) {
                        controllers.insert(controller.to_string(), PathBuf::from(mount_point));
                    }
                    mounts.push(PathBuf::from(mount_point));
                }
                _ => {}
            }
        }
        match unified {
            Some(root) => Ok(Hierarchy::Unified(root)),
            None if !controllers.is_empty() => Ok(Hierarchy::PerController {
                controllers,
                mounts,
            }),
            None => Err(CgroupError::NotMounted),
        }
    }
}

/// `cpu.shares` for a CPU request, as the kubelet computes it (also for no request: the minimum).
pub fn cpu_shares(milli_cpu: u64) -> u64 {
    (milli_cpu * SHARES_PER_CPU / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota per [`QUOTA_PERIOD_US`] for a CPU limit; `None` for no limit.
pub fn cpu_quota(milli_cpu: u64) -> Option<u64> {
    (milli_cpu > 0).then(|| (milli_cpu * QUOTA_PERIOD_US / 1000).max(MIN_QUOTA_US))
}

/// cgroup v2's `cpu.weight` (1–10,000) for v1 shares (2–262,144), as runc converts them.
pub fn cpu_weight(shares: u64) -> u64 {
    1 + (shares.clamp(MIN_SHARES, MAX_SHARES) - MIN_SHARES) * 9999 / (MAX_SHARES - MIN_SHARES)
}

/// What a cgroup is limited to; `None` leaves a limit unset (the parent's applies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The CPU request, in millicores: decides the share of contended CPU.
    pub cpu_request_milli: u64,
    /// The CPU limit, in millicores: a CFS quota.
    pub cpu_limit_milli: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
}

/// One cgroup, by its path below the hierarchy's root (e.g. `skiff/pod<uid>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    path: PathBuf,
}

impl Cgroup {
    pub fn new(hierarchy: Hierarchy, path: impl Into<PathBuf>) -> Self {
        Self {
            hierarchy,
            path: path.into(),
        }
    }

    /// Its directory in each tree it lives in, by controller: one per controller on v1, the one
    /// (`None`) on v2.
    fn dirs(&self) -> Result<Vec<(Option<&'static str>, PathBuf)>, CgroupError> {
        match &self.hierarchy {
            Hierarchy::Unified(root) => Ok(vec![(None, root.join(&self.path))]),
            Hierarchy::PerController { controllers, .. } => CONTROLLERS
                .iter()
                .map(|&controller| {
                    let mount = controllers
                        .get(controller)
                        .ok_or(CgroupError::MissingController { controller })?;
                    Ok((Some(controller), mount.join(&self.path)))
                })
                .collect(),
        }
    }

    /// Creates the cgroup (and its parents) and sets `limits`.
    pub fn create(&self, limits: &Limits) -> Result<(), CgroupError> {
        if let Hierarchy::Unified(root) = &self.hierarchy {
            // On v2 a child can use a controller only once each ancestor delegates it.
            let delegate = CONTROLLERS.map(|c| format!("+{c}")).join(" ");
            let mut dir = root.clone();
            for part in self.path.iter() {
                write(&dir.join("cgroup.subtree_control"), &delegate)?;
                dir.push(part);
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            }
        } else {
            for (_, dir) in self.dirs()? {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            }
        }
        self.apply(limits)
    }

    /// Sets `limits` on the existing cgroup.
    pub fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        let shares = cpu_shares(limits.cpu_request_milli);
        let quota = limits.cpu_limit_milli.and_then(cpu_quota);
        for (controller, dir) in self.dirs()? {
            match controller {
                None => {
                    write(&dir.join("cpu.weight"), &cpu_weight(shares).to_string())?;
                    let max = or_max(quota);
                    write(&dir.join("cpu.max"), &format!("{max} {QUOTA_PERIOD_US}"))?;
                    write(&dir.join("memory.max"), &or_max(limits.memory_bytes))?;
                    write(&dir.join("pids.max"), &or_max(limits.pids))?;
                }
                Some("cpu") => {
                    write(&dir.join("cpu.shares"), &shares.to_string())?;
                    write(&dir.join("cpu.cfs_period_us"), &QUOTA_PERIOD_US.to_string())?;
                    let quota = quota.map_or("-1".to_string(), |q| q.to_string());
                    write(&dir.join("cpu.cfs_quota_us"), &quota)?;
                }
                Some("memory") => {
                    let limit = limits
                        .memory_bytes
                        .map_or("-1".to_string(), |m| m.to_string());
                    write(&dir.join("memory.limit_in_bytes"), &limit)?;
                }
                Some(_) => write(&dir.join("pids.max"), &or_max(limits.pids))?,
            }
        }
        Ok(())
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let (file, dir) = match &self.hierarchy {
            Hierarchy::Unified(root) => ("memory.events", root.join(&self.path)),
            Hierarchy::PerController { controllers, .. } => {
                let mount = controllers
                    .get("memory")
                    .ok_or(CgroupError::MissingController {
                        controller: "memory",
                    })?;
                ("memory.oom_control", mount.join(&self.path))
            }
        };
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Removes the cgroup and every cgroup below it (those runc made for containers, and the
    /// empty parents it leaves), deepest first. Gone already is fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let roots = match &self.hierarchy {
            Hierarchy::Unified(root) => std::slice::from_ref(root),
            Hierarchy::PerController { mounts, .. } => mounts.as_slice(),
        };
        for root in roots {
            for sub in subdirs_deepest_first(&root.join(&self.path))? {
                match std::fs::remove_dir(&sub) {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(&sub)(e)),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn or_max(limit: Option<u64>) -> String {
    limit.map_or("max".to_string(), |l| l.to_string())
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io(path))
}

/// `dir` and every directory below it, children before their parents.
fn subdirs_deepest_first(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        if entry.file_type().map_err(io(dir))?.is_dir() {
            dirs.extend(subdirs_deepest_first(&entry.path())?);
        }
    }
    dirs.push(dir.to_path_buf());
    Ok(dirs)
}

#[cfg(test)]
mod tests;

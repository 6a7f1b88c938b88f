use super::*;

/// This machine's mounts: cgroup v1 with a hybrid `unified` mount.
const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const UNIFIED: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

#[test]
fn the_hierarchy_is_read_from_the_mounts() {
    let v1 = Hierarchy::from_mountinfo(HYBRID).expect("v1");
    let Hierarchy::PerController {
        controllers,
        mounts,
    } = v1
    else {
        panic!("a hybrid host is v1: {v1:?}")
    };
    assert_eq!(
        mounts
            .iter()
            .map(|m| m.to_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "/sys/fs/cgroup/cpu",
            "/sys/fs/cgroup/cpuacct",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/systemd",
            "/sys/fs/cgroup/unified"
        ]
    );
    assert_eq!(
        controllers,
        BTreeMap::from([
            ("cpu".to_string(), PathBuf::from("/sys/fs/cgroup/cpu")),
            ("memory".to_string(), PathBuf::from("/sys/fs/cgroup/memory")),
            ("pids".to_string(), PathBuf::from("/sys/fs/cgroup/pids")),
        ])
    );
    // Joint mounts list several controllers.
    let joint = HYBRID.replace(
        "/sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
        "/sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
    );
    let Ok(Hierarchy::PerController { controllers, .. }) = Hierarchy::from_mountinfo(&joint) else {
        panic!("v1")
    };
    assert_eq!(controllers["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct"));

    assert_eq!(
        Hierarchy::from_mountinfo(UNIFIED).expect("v2"),
        Hierarchy::Unified(PathBuf::from("/sys/fs/cgroup"))
    );
    assert!(matches!(
        Hierarchy::from_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n"),
        Err(CgroupError::NotMounted)
    ));
}

#[test]
fn cpu_converts_as_the_kubelet_and_runc_convert_it() {
    assert_eq!(cpu_shares(0), 2);
    assert_eq!(cpu_shares(1), 2);
    assert_eq!(cpu_shares(100), 102);
    assert_eq!(cpu_shares(1000), 1024);
    assert_eq!(cpu_shares(1_000_000), 262_144);
    assert_eq!(cpu_quota(0), None);
    assert_eq!(cpu_quota(1), Some(1000));
    assert_eq!(cpu_quota(100), Some(10_000));
    assert_eq!(cpu_quota(2500), Some(250_000));
    assert_eq!(cpu_weight(2), 1);
    assert_eq!(cpu_weight(1024), 39);
    assert_eq!(cpu_weight(262_144), 10_000);
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const LIMITS: Limits = Limits {
    cpu_request_milli: 250,
    cpu_limit_milli: Some(500),
    memory_bytes: Some(64 << 20),
    pids: Some(1024),
};

#[test]
fn v1_limits_go_to_each_controllers_tree() {
    let root = tempfile::tempdir().unwrap();
    let controllers: BTreeMap<String, PathBuf> = CONTROLLERS
        .iter()
        .map(|c| (c.to_string(), root.path().join(c)))
        .collect();
    let mounts = controllers.values().cloned().collect();
    let pod = Cgroup::new(
        Hierarchy::PerController {
            controllers,
            mounts,
        },
        "skiff/pod1",
    );
    pod.create(&LIMITS).unwrap();
    let at = |controller: &str, file: &str| {
        read(root.path().join(controller).join("skiff/pod1").join(file))
    };
    assert_eq!(at("cpu", "cpu.shares"), "256");
    assert_eq!(at("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(at("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(at("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(at("pids", "pids.max"), "1024");

    pod.apply(&Limits::default()).unwrap();
    assert_eq!(at("cpu", "cpu.shares"), "2");
    assert_eq!(at("cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(at("memory", "memory.limit_in_bytes"), "-1");
    assert_eq!(at("pids", "pids.max"), "max");

    std::fs::write(
        root.path().join("memory/skiff/pod1/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    )
    .unwrap();
    assert_eq!(pod.oom_kills().unwrap(), 2);
}

#[test]
fn v2_limits_go_to_one_tree_with_controllers_delegated() {
    let root = tempfile::tempdir().unwrap();
    let pod = Cgroup::new(Hierarchy::Unified(root.path().to_path_buf()), "skiff/pod1");
    pod.create(&LIMITS).unwrap();
    for parent in ["", "skiff"] {
        assert_eq!(
            read(root.path().join(parent).join("cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
    }
    let at = |file: &str| read(root.path().join("skiff/pod1").join(file));
    assert_eq!(at("cpu.weight"), "10");
    assert_eq!(at("cpu.max"), "50000 100000");
    assert_eq!(at("memory.max"), "67108864");
    assert_eq!(at("pids.max"), "1024");
    pod.apply(&Limits::default()).unwrap();
    assert_eq!(at("cpu.max"), "max 100000");
    assert_eq!(at("memory.max"), "max");

    std::fs::write(
        root.path().join("skiff/pod1/memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    )
    .unwrap();
    assert_eq!(pod.oom_kills().unwrap(), 1);
}

#[test]
fn removal_takes_the_container_cgroups_below_first() {
    // Bare directories: a real cgroupfs lets empty cgroups be removed despite their files.
    let root = tempfile::tempdir().unwrap();
    for dir in [
        "skiff/pod1/ctr-a/leftover",
        "skiff/pod1/ctr-b",
        "skiff/pod2",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    let pod = Cgroup::new(Hierarchy::Unified(root.path().to_path_buf()), "skiff/pod1");
    pod.remove().unwrap();
    assert!(!root.path().join("skiff/pod1").exists());
    assert!(root.path().join("skiff/pod2").exists());
    // Gone already is fine.
    pod.remove().unwrap();
}

/// The real thing on this host, whichever hierarchy it has (the test command runs as root).
#[test]
fn a_pod_cgroup_on_the_hosts_own_hierarchy() {
    let hierarchy = Hierarchy::detect().expect("this host has cgroups");
    let path = format!("skiff-test-{}/pod", std::process::id());
    let pod = Cgroup::new(hierarchy.clone(), &path);
    pod.create(&LIMITS).expect("creating a cgroup (as root)");
    let file = match &hierarchy {
        Hierarchy::Unified(root) => root.join(&path).join("memory.max"),
        Hierarchy::PerController { controllers, .. } => controllers["memory"]
            .join(&path)
            .join("memory.limit_in_bytes"),
    };
    assert_eq!(read(file).trim(), "67108864");
    assert_eq!(pod.oom_kills().unwrap(), 0);
    // A container's cgroup as runc leaves it: in every hierarchy, below the pod's.
    let trees = match &hierarchy {
        Hierarchy::Unified(root) => vec![root.clone()],
        Hierarchy::PerController { mounts, .. } => mounts.clone(),
    };
    for tree in &trees {
        std::fs::create_dir_all(tree.join(&path).join("ctr")).expect("a container cgroup");
    }
    Cgroup::new(
        hierarchy.clone(),
        format!("skiff-test-{}", std::process::id()),
    )
    .remove()
    .expect("removing it");
    let gone = match &hierarchy {
        Hierarchy::Unified(root) => vec![root.join(&path)],
        Hierarchy::PerController { mounts, .. } => mounts.iter().map(|m| m.join(&path)).collect(),
    };
    assert!(gone.iter().all(|p| !p.exists()), "{gone:?} left behind");
}

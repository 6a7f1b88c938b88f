//! [`PodNetwork`] against the real plugins of the containernetworking-plugins package (needs
//! root). Each test owns a bridge `sktest<tag><hex>`, a subnet of 10.250.0.0/16 no other test
//! uses, pod uids that name it, and a tempdir data dir, so the tests can run in parallel; a
//! [`Host`] guard tears its pods down and deletes its bridge even when an assertion fails.
//!
//! Left on the host by design: `net.ipv4.ip_forward = 1` (set by bridge, needed by the
//! product) and portmap's shared `CNI-HOSTPORT-*` chains in `table ip nat`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

struct Host {
    net: Arc<PodNetwork>,
    bridge: String,
    uids: Vec<String>,
    // Dropped after `drop` has torn the pods down.
    _dir: tempfile::TempDir,
}

impl Host {
    fn new(tag: char, subnet: &str) -> Host {
        Host::with_bin_dir(tag, subnet, None)
    }

    fn with_bin_dir(tag: char, subnet: &str, bin_dir: Option<PathBuf>) -> Host {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "pod network tests need root");
        assert!(
            Path::new("/usr/lib/cni/bridge").is_file(),
            "pod network tests need the containernetworking-plugins package"
        );
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        let bridge = format!("sktest{tag}{:04x}", h.finish() as u16);
        let dir = tempfile::tempdir().unwrap();
        let mut config = NetworkConfig::new(dir.path().join("network"), subnet);
        config.bridge = bridge.clone();
        config.network_name = "sktest".into();
        if let Some(bin_dir) = bin_dir {
            config.cni_bin_dir = bin_dir;
        }
        let net = Arc::new(PodNetwork::new(config).unwrap());
        Host {
            net,
            bridge,
            uids: Vec::new(),
            _dir: dir,
        }
    }

    fn pod(&mut self, name: &str, port_mappings: Vec<PortMapping>) -> PodNetworkRequest {
        let uid = format!("{}-{name}", self.bridge);
        self.uids.push(uid.clone());
        PodNetworkRequest {
            uid,
            namespace: "default".into(),
            name: name.into(),
            port_mappings,
        }
    }

    /// host-local's lease files (one per allocated IP).
    fn leases(&self) -> Vec<String> {
        let dir = self.net.config().ipam_dir().join("sktest");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
            .collect()
    }

    /// The host ends of the pods' veths.
    fn bridge_ports(&self) -> Vec<String> {
        let dir = format!("/sys/class/net/{}/brif", self.bridge);
        std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Everything the pod leaves behind is gone.
    fn assert_clean(&self, uid: &str) {
        let netns = self.net.netns_path(uid);
        assert!(!netns.exists(), "{} still exists", netns.display());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(uid), "{uid} still mounted");
        assert!(!self.net.state_dir(uid).exists(), "state of {uid} kept");
        assert!(
            !ruleset().contains(uid),
            "iptables nat rules still mention {uid}"
        );
        assert_eq!(self.net.status(uid), None);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let net = self.net.clone();
        let uids = std::mem::take(&mut self.uids);
        // Drop cannot await, and the test's runtime is busy unwinding: use a runtime of our own
        // on a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for uid in uids {
                if let Err(e) = rt.block_on(net.teardown(&uid)) {
                    eprintln!("cleanup: tearing down {uid}: {e}");
                }
            }
        })
        .join();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        super::masquerade::remove(&self.net.config().pod_cidr, &self.bridge);
    }
}

/// The nat table as iptables shows it: nft does not print the rules' comments, which carry the
/// pod uid (bridge's masquerade rule, portmap's `CNI-DN-*` chain).
fn ruleset() -> String {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .expect("these tests need iptables-save (the iptables package)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn only_ipv4(status: &PodNetworkStatus) -> Ipv4Addr {
    match status.ips.as_slice() {
        [IpAddr::V4(ip)] => *ip,
        other => panic!("expected one IPv4 address, got {other:?}"),
    }
}

/// Serves `line\n` → `reply\n` on every connection, from any thread.
fn serve(listener: TcpListener, reply: &'static str) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            let _ = writeln!(conn, "{reply} to {}", conn.peer_addr().unwrap().ip());
        }
    });
}

fn ask(mut stream: TcpStream) -> String {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    writeln!(stream, "hello").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test]
async fn pods_get_distinct_addresses_and_reach_each_other() {
    let mut host = Host::new('a', "10.250.1.0/24");
    let a = host.pod("a", vec![]);
    let b = host.pod("b", vec![]);
    let sa = host.net.setup(&a).await.unwrap();
    let sb = host.net.setup(&b).await.unwrap();
    let (ip_a, ip_b) = (only_ipv4(&sa), only_ipv4(&sb));
    assert_ne!(ip_a, ip_b);
    for ip in [ip_a, ip_b] {
        let [o1, o2, o3, o4] = ip.octets();
        assert!(
            (o1, o2, o3) == (10, 250, 1) && o4 > 1,
            "{ip} outside 10.250.1.0/24"
        );
    }
    assert_eq!(sa.netns, host.net.netns_path(&a.uid));
    assert_eq!(host.net.status(&a.uid), Some(sa.clone()));
    assert_eq!(host.leases().len(), 2);
    assert_eq!(host.bridge_ports().len(), 2);
    let masquerade = format!("skiff: pods on {} leaving 10.250.1.0/24", host.bridge);
    assert_eq!(
        ruleset().matches(&masquerade).count(),
        1,
        "one masquerade rule for the whole podCIDR, not one per pod"
    );

    // Idempotent: same answer, no second lease.
    assert_eq!(host.net.setup(&a).await.unwrap(), sa);
    assert_eq!(host.leases().len(), 2);

    // Pod to pod by IP: B listens on its own address, A connects from its namespace.
    let listener = netns::run_in(&sb.netns, || TcpListener::bind((ip_b, 0)))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    serve(listener, "pod-b");
    let stream =
        netns::tcp_connect_in(&sa.netns, SocketAddr::new(ip_b.into(), port), TIMEOUT).unwrap();
    assert_eq!(stream.local_addr().unwrap().ip(), IpAddr::from(ip_a));
    assert_eq!(ask(stream), format!("pod-b to {ip_a}\n"));

    // lo is up inside the pod (the loopback plugin ran).
    let local = netns::run_in(&sa.netns, || TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let local_addr = local.local_addr().unwrap();
    serve(local, "pod-a-lo");
    let stream = netns::tcp_connect_in(&sa.netns, local_addr, TIMEOUT).unwrap();
    assert_eq!(ask(stream), "pod-a-lo to 127.0.0.1\n");

    for pod in [&a, &b] {
        host.net.teardown(&pod.uid).await.unwrap();
        host.assert_clean(&pod.uid);
        // Again, with nothing left.
        host.net.teardown(&pod.uid).await.unwrap();
    }
    assert!(host.leases().is_empty(), "leases left: {:?}", host.leases());
    assert!(
        host.bridge_ports().is_empty(),
        "veths left: {:?}",
        host.bridge_ports()
    );
    assert!(
        std::fs::read_dir(host.net.config().data_dir.join("netns"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[tokio::test]
async fn host_port_reaches_the_pod() {
    let mut host = Host::new('p', "10.250.2.0/24");
    let host_port = {
        let probe = TcpListener::bind("0.0.0.0:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let a = host.pod(
        "a",
        vec![PortMapping {
            host_port,
            container_port: 8080,
            protocol: "TCP".into(),
            host_ip: None,
        }],
    );
    let sa = host.net.setup(&a).await.unwrap();
    let ip_a = only_ipv4(&sa);
    let listener = netns::run_in(&sa.netns, || TcpListener::bind("0.0.0.0:8080"))
        .unwrap()
        .unwrap();
    serve(listener, "pod-a");

    // From the host's own namespace: through the bridge's gateway address, and through
    // 127.0.0.1 (portmap sets route_localnet on the bridge and masquerades localhost).
    let gateway = SocketAddr::from(([10, 250, 2, 1], host_port));
    let answer = ask(TcpStream::connect_timeout(&gateway, TIMEOUT).unwrap());
    assert!(answer.starts_with("pod-a to "), "{answer}");
    let localhost = SocketAddr::from(([127, 0, 0, 1], host_port));
    let answer = ask(TcpStream::connect_timeout(&localhost, TIMEOUT).unwrap());
    assert!(answer.starts_with("pod-a to "), "{answer}");
    assert!(
        ruleset().contains(&format!("{ip_a}:8080")),
        "portmap's DNAT rule should name {ip_a}:8080"
    );
    assert!(ruleset().contains("CNI-DN-"), "portmap's per-pod chain");

    host.net.teardown(&a.uid).await.unwrap();
    host.assert_clean(&a.uid);
    assert!(host.leases().is_empty());
    assert!(
        TcpStream::connect_timeout(&localhost, Duration::from_millis(500)).is_err(),
        "the hostPort still answers after teardown"
    );
}

#[tokio::test]
async fn a_restarted_agent_adopts_and_tears_down() {
    let mut host = Host::new('r', "10.250.3.0/24");
    let a = host.pod("a", vec![]);
    let first = host.net.setup(&a).await.unwrap();

    // A new agent on the same data dir: same status without running ADD again.
    let restarted = PodNetwork::new(host.net.config().clone()).unwrap();
    assert_eq!(restarted.status(&a.uid), Some(first.clone()));
    assert_eq!(restarted.setup(&a).await.unwrap(), first);
    assert_eq!(host.leases().len(), 1);

    // A crash after ADD but before its result was saved: setup undoes it and starts over.
    let mut state = restarted.read_state(&a.uid).unwrap().unwrap();
    state.result = None;
    restarted.write_state(&a.uid, &state).unwrap();
    assert_eq!(restarted.status(&a.uid), None);
    let second = restarted.setup(&a).await.unwrap();
    assert_ne!(
        only_ipv4(&second),
        only_ipv4(&first),
        "host-local allocates round-robin"
    );
    assert_eq!(host.leases().len(), 1, "the first address was released");
    assert_eq!(host.bridge_ports().len(), 1);

    restarted.teardown(&a.uid).await.unwrap();
    host.assert_clean(&a.uid);
    assert!(host.leases().is_empty());
    assert!(host.bridge_ports().is_empty());
}

#[tokio::test]
async fn a_failed_setup_leaves_nothing() {
    // The real plugins, except a portmap that fails ADD (and accepts DEL).
    let bin = tempfile::tempdir().unwrap();
    for plugin in ["bridge", "host-local", "loopback"] {
        std::os::unix::fs::symlink(
            Path::new("/usr/lib/cni").join(plugin),
            bin.path().join(plugin),
        )
        .unwrap();
    }
    let portmap = bin.path().join("portmap");
    std::fs::write(
        &portmap,
        "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n\
         printf '{\"code\":7,\"msg\":\"no ports today\"}'\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&portmap, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut host = Host::with_bin_dir('f', "10.250.4.0/24", Some(bin.path().to_path_buf()));
    // portmap runs only for a pod with a hostPort.
    let hostport = PortMapping {
        host_port: 31999,
        container_port: 80,
        protocol: "TCP".into(),
        host_ip: None,
    };
    let a = host.pod("a", vec![hostport]);
    let err = host.net.setup(&a).await.unwrap_err();
    assert!(
        matches!(&err, NetworkError::Plugin { plugin, code: 7, .. } if plugin == "portmap"),
        "{err:?}"
    );
    host.assert_clean(&a.uid);
    assert!(host.leases().is_empty(), "leases left: {:?}", host.leases());
    assert!(
        host.bridge_ports().is_empty(),
        "veths left: {:?}",
        host.bridge_ports()
    );
}

#[test]
fn missing_plugins_are_named_with_their_package() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NetworkConfig::new(dir.path().join("network"), "10.250.9.0/24");
    config.cni_bin_dir = dir.path().join("bin");
    let err = PodNetwork::new(config).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "CNI plugin \"bridge\" not found in {}: install the containernetworking-plugins package",
            dir.path().join("bin").display()
        )
    );
    assert!(!dir.path().join("network").exists(), "nothing written");
}

#[tokio::test]
async fn unsafe_uids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = PodNetwork::new(NetworkConfig::new(dir.path(), "10.250.9.0/24")).unwrap();
    let conflist = std::fs::read_to_string(dir.path().join("net.d/10-skiff.conflist")).unwrap();
    assert!(conflist.contains("10.250.9.0/24"));
    for uid in ["", "../x", "a/b", ".hidden"] {
        let pod = PodNetworkRequest {
            uid: uid.into(),
            namespace: "default".into(),
            name: "x".into(),
            port_mappings: vec![],
        };
        let err = net.setup(&pod).await.unwrap_err();
        assert!(matches!(err, NetworkError::InvalidPodUid { .. }), "{uid}");
        assert!(net.teardown(uid).await.is_err());
        assert_eq!(net.status(uid), None);
    }
    super::masquerade::remove("10.250.9.0/24", &net.config().bridge);
}

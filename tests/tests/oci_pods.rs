//! Container (OCI) pods end to end: real `skiff up`, a real registry holding a busybox image
//! built on the spot, runc under skiff's shim, CNI pod networking, and the real kubectl.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use skiff_tests::{Cluster, LOCAL_NODE, Registry, eventually};

struct Env {
    cluster: Cluster,
    registry: Registry,
}

impl Env {
    fn start() -> Env {
        let (cluster, registry) = Cluster::start_with_registry();
        Env { cluster, registry }
    }

    /// Pushes the busybox image as an OCI manifest and returns its reference.
    fn busybox(&self) -> String {
        self.registry
            .push_busybox("test/busybox:v1")
            .expect("pushing busybox")
    }

    /// Creates pod `name` running `sh -c script` in `image`.
    fn run(&self, name: &str, image: &str, restart_policy: &str, script: &str) {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": restart_policy,
                "containers": [{
                    "name": "app",
                    "image": image,
                    "command": ["sh", "-c", script],
                }],
            },
        });
        self.cluster.apply(&pod.to_string());
    }

    fn logs(&self, pod: &str) -> String {
        self.cluster.kubectl_ok(&["logs", pod])
    }

    /// The local node's `spec.podCIDR`.
    fn pod_cidr(&self) -> String {
        self.cluster
            .kubectl_ok(&["get", "node", LOCAL_NODE, "-o", "jsonpath={.spec.podCIDR}"])
    }

    /// Asserts that `pod` has a `status.podIP` inside the node's podCIDR and returns it.
    fn pod_ip(&self, pod: &Value) -> Ipv4Addr {
        let cidr = self.pod_cidr();
        let ip: Ipv4Addr = pod["status"]["podIP"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| panic!("no IPv4 podIP in {}", pod["status"]));
        assert!(
            contains(&cidr, ip),
            "podIP {ip} is outside the node's podCIDR {cidr:?}"
        );
        ip
    }
}

/// The first container's `state.terminated`.
fn terminated(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]["state"]["terminated"]
}

/// Whether IPv4 network `cidr` (`10.50.0.0/24`) holds `ip`.
fn contains(cidr: &str, ip: Ipv4Addr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(net) & mask == u32::from(ip) & mask
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim_end).collect()
}

#[test]
fn a_busybox_pod_runs_to_completion_with_its_logs_and_exit_code() {
    let env = Env::start();
    let image = env.busybox();
    let v2s2 = env
        .registry
        .push_busybox_v2s2("test/busybox:v2s2")
        .expect("pushing busybox as Docker schema 2");
    env.run("fails", &image, "Never", "echo out; echo err >&2; exit 3");
    env.run("succeeds", &image, "Never", "echo fine; exit 0");
    env.run("docker", &v2s2, "Never", "echo from-a-docker-image");

    let pod = env.cluster.wait_pod_phase("fails", "Failed");
    let status = &pod["status"]["containerStatuses"][0];
    let state = terminated(&pod);
    assert_eq!(state["exitCode"], 3, "{status}");
    assert_eq!(state["reason"], "Error", "{status}");
    assert!(
        status["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("runc://")),
        "{status}"
    );
    let logs = env.logs("fails");
    let got = lines(&logs);
    assert!(got.contains(&"out") && got.contains(&"err"), "{logs}");
    env.pod_ip(&pod);

    let pod = env.cluster.wait_pod_phase("succeeds", "Succeeded");
    let state = terminated(&pod);
    assert_eq!(state["exitCode"], 0, "{}", pod["status"]);
    assert_eq!(state["reason"], "Completed", "{}", pod["status"]);
    assert_eq!(lines(&env.logs("succeeds")), ["fine"]);
    let table = env.cluster.kubectl_ok(&["get", "pod", "succeeds"]);
    assert!(table.contains("Completed"), "{table}");

    let pod = env.cluster.wait_pod_phase("docker", "Succeeded");
    assert_eq!(terminated(&pod)["exitCode"], 0, "{}", pod["status"]);
    assert_eq!(lines(&env.logs("docker")), ["from-a-docker-image"]);
}

#[test]
fn pods_on_a_node_reach_each_other_by_ip() {
    let env = Env::start();
    let image = env.busybox();
    env.run(
        "server",
        &image,
        "Always",
        "mkdir /www && echo hello-from-a > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    let server = env.cluster.wait_pod_phase("server", "Running");
    let server_ip = env.pod_ip(&server);

    // Running means started, not yet listening: the client retries for a while. (No `wget -T`:
    // it crashes this busybox.)
    env.run(
        "client",
        &image,
        "Never",
        &format!(
            "for i in $(seq 30); do wget -q -O- http://{server_ip}:8080/ && exit 0; sleep 1; done; exit 1"
        ),
    );
    let client = env.cluster.wait_pod_phase("client", "Succeeded");
    let client_ip = env.pod_ip(&client);
    assert_ne!(client_ip, server_ip);
    let logs = env.logs("client");
    assert!(lines(&logs).contains(&"hello-from-a"), "{logs}");

    // The kubelet's /etc/hosts names the pod's own address; its hostname is the pod's name.
    env.run("hosts", &image, "Never", "cat /etc/hosts; hostname");
    let pod = env.cluster.wait_pod_phase("hosts", "Succeeded");
    let ip = env.pod_ip(&pod).to_string();
    let logs = env.logs("hosts");
    let entry = logs.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some(ip.as_str())).then(|| fields.collect::<Vec<_>>())
    });
    assert!(
        entry.is_some_and(|names| names.contains(&"hosts")),
        "no `{ip} hosts` line in /etc/hosts:\n{logs}"
    );
    assert_eq!(lines(&logs).last(), Some(&"hosts"), "{logs}");
}

#[test]
fn deleting_pods_leaves_nothing_behind() {
    let env = Env::start();
    let image = env.busybox();
    env.run("sleeper", &image, "Always", "sleep 3600");
    env.run("finished", &image, "Never", "echo done");
    env.run("crasher", &image, "Always", "exit 1");
    env.cluster.wait_pod_phase("sleeper", "Running");
    env.cluster.wait_pod_phase("finished", "Succeeded");
    eventually("crasher restarted", || {
        let pod = env.cluster.get_json(&["pod", "crasher"]);
        let status = &pod["status"]["containerStatuses"][0];
        if status["restartCount"].as_u64().unwrap_or(0) >= 1 {
            Ok(())
        } else {
            Err(format!("{status}"))
        }
    });

    // The check sees a running pod's every trace (or it would pass for nothing). Pods without
    // hostPorts have no NAT rule of their own: the node masquerades its podCIDR with one.
    let before = env.cluster.leftovers().join("\n");
    for kind in [
        "mount ",
        "network namespace file ",
        "IP lease ",
        "runc container ",
        "shim process ",
        " on bridge ",
        "pod cgroup ",
    ] {
        assert!(
            before.contains(kind),
            "a running pod shows no `{kind}` leftover:\n{before}"
        );
    }

    env.cluster
        .kubectl_ok(&["delete", "pod", "--all", "--wait", "--timeout=90s"]);
    let pods = env.cluster.kubectl_ok(&["get", "pods", "-o", "name"]);
    assert_eq!(pods.trim(), "", "pods remain after delete --wait");
    env.cluster.wait_nothing_left();
}

/// Images with zstd layers, and images reached through an index listing several platforms (the
/// node picks its own), run like any other.
#[test]
fn zstd_layers_and_image_indexes_run() {
    let env = Env::start();
    let zstd = env
        .registry
        .push_busybox_zstd("test/busybox-zstd:v1")
        .expect("pushing busybox with a zstd layer");
    let index = env
        .registry
        .push_busybox_index("test/busybox-multi", "v1", "multi")
        .expect("pushing busybox behind an index");
    env.run("zstd", &zstd, "Never", "echo from-zstd");
    env.run("indexed", &index, "Never", "echo from-index");
    for (pod, line) in [("zstd", "from-zstd"), ("indexed", "from-index")] {
        env.cluster.wait_pod_phase(pod, "Succeeded");
        assert_eq!(env.logs(pod).trim(), line);
    }
    let indexed = env.cluster.get_json(&["pod", "indexed"]);
    let image_id = indexed["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        image_id.contains("test/busybox-multi@sha256:"),
        "the imageID names the platform's manifest: {image_id}"
    );
}

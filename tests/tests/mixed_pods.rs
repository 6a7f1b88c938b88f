//! Wasm and containers in one pod: a Wasm component serving HTTP on wasi:sockets beside a busybox
//! container, sharing the pod's network namespace (localhost and the pod IP), and reachable from
//! another pod; real `skiff up`, registry and kubectl.

use serde_json::json;
use skiff_tests::{Cluster, Registry, eventually};

struct Env {
    cluster: Cluster,
    registry: Registry,
}

impl Env {
    fn start() -> Env {
        let (cluster, registry) = Cluster::start_with_registry();
        Env { cluster, registry }
    }

    fn wasm(&self, name: &str) -> String {
        self.registry.push_sample(name).expect("pushing a sample")
    }

    fn busybox(&self) -> String {
        self.registry
            .push_busybox("test/busybox:v1")
            .expect("pushing busybox")
    }

    /// The log of `container` in `pod`, once it contains `needle`.
    fn log_with(&self, pod: &str, container: &str, needle: &str) -> String {
        eventually(
            &format!("{needle:?} in the log of {pod}/{container}"),
            || {
                let run = self.cluster.kubectl(&["logs", pod, "-c", container]);
                if run.success() && run.stdout.contains(needle) {
                    Ok(run.stdout)
                } else {
                    Err(run.to_string())
                }
            },
        )
    }
}

/// A shell loop fetching `url` until it answers (Running does not mean listening yet).
fn fetch(url: &str) -> String {
    format!("for i in $(seq 1 30); do wget -q -O- {url} && exit 0; sleep 1; done; exit 1")
}

#[test]
fn a_wasm_server_and_a_container_share_the_pods_network() {
    let env = Env::start();
    let server = env.wasm("http-hello");
    let busybox = env.busybox();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mixed"},
        "spec": {
            "containers": [
                {"name": "server", "image": server, "ports": [{"containerPort": 8080}]},
                {"name": "client", "image": busybox,
                 "command": ["sh", "-c", format!("{} && sleep 3600", fetch("http://127.0.0.1:8080/"))]},
            ],
        },
    });
    env.cluster.apply(&pod.to_string());
    let client_log = env.log_with("mixed", "client", "hello from wasm");
    assert!(client_log.contains("hello from wasm"), "{client_log}");
    let mixed = env.cluster.wait_pod_phase("mixed", "Running");
    let handlers: Vec<String> = mixed["status"]["containerStatuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| s["containerID"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        handlers.iter().any(|id| id.starts_with("wasm://"))
            && handlers.iter().any(|id| id.starts_with("runc://")),
        "one Wasm and one runc container: {handlers:?}"
    );
    let ip = mixed["status"]["podIP"]
        .as_str()
        .expect("the mixed pod has an IP")
        .to_string();

    // Another pod reaches the Wasm server at the pod's IP.
    let visitor = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "visitor"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "app", "image": busybox,
                "command": ["sh", "-c", fetch(&format!("http://{ip}:8080/"))]}],
        },
    });
    env.cluster.apply(&visitor.to_string());
    env.cluster.wait_pod_phase("visitor", "Succeeded");
    let visitor_log = env.cluster.kubectl_ok(&["logs", "visitor"]);
    assert!(visitor_log.contains("hello from wasm"), "{visitor_log}");
    let server_log = env.cluster.kubectl_ok(&["logs", "mixed", "-c", "server"]);
    assert!(
        !server_log.trim().is_empty(),
        "the server logs its requests: {server_log:?}"
    );

    env.cluster
        .kubectl_ok(&["delete", "pod", "--all", "--wait", "--grace-period=1"]);
    env.cluster.wait_nothing_left();
}

/// A pod of Wasm alone gets a network when its component opens sockets: a readiness probe
/// and `kubectl port-forward` reach it like any pod.
#[test]
fn port_forward_reaches_a_wasm_server() {
    use std::io::{Read, Write};
    let env = Env::start();
    let server = env.wasm("http-hello");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello"},
        "spec": {"containers": [{"name": "server", "image": server,
                                 "ports": [{"containerPort": 8080}],
                                 "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                                    "periodSeconds": 1}}]},
    });
    env.cluster.apply(&pod.to_string());
    // The node's httpGet probe reaches the Wasm server at the pod's IP.
    let running = eventually("the Wasm pod Ready through its httpGet probe", || {
        let pod = env.cluster.get_json(&["pod", "hello"]);
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready {
            Ok(pod)
        } else {
            Err(pod["status"].to_string())
        }
    });
    assert!(running["status"]["podIP"].is_string(), "{running}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut forward = env
        .cluster
        .cmd(&["port-forward", "pod/hello", &format!("{port}:8080")])
        .spawn();
    forward.expect_stdout("the forward", |l| {
        l.starts_with(&format!("Forwarding from 127.0.0.1:{port} -> 8080"))
    });
    let answer = eventually("an answer through the forward", || {
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: hello\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| e.to_string())?;
        if answer.contains("hello from wasm") {
            Ok(answer)
        } else {
            Err(answer)
        }
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(forward);
    env.cluster
        .kubectl_ok(&["delete", "pod", "--all", "--wait", "--grace-period=1"]);
    env.cluster.wait_nothing_left();
}

//! `kubectl logs`, `exec` and `attach` through the real API server (`skiff control`) to a node's
//! log server. The node server runs in this test process with a stand-in for the pod workers
//! (a fixed `ContainerLocator`) and a serving certificate issued from the cluster CA in the data
//! dir; the Node object points the API server at it.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_control::pki::{CertifiedKey, issue_node_serving};
use skiff_node::logs::{ContainerLocator, ContainerLogs, LocateError, NodeTls, serve};
use skiff_sandbox::cri_log::{LogFile, Stream};
use skiff_tests::Cluster;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `default/hello` runs a Wasm container `app` (which restarted once) and has a container
/// `waiting` that has not started.
struct Worker {
    dir: PathBuf,
    exited: watch::Receiver<bool>,
}

impl ContainerLocator for Worker {
    fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerLogs, LocateError> {
        match (namespace, pod, container) {
            ("default", "hello", "app") => Ok(ContainerLogs {
                current: self.dir.join("1.log"),
                previous: Some(self.dir.join("0.log")),
                exited: self.exited.clone(),
                runtime_handler: "wasmtime".into(),
            }),
            ("default", "hello", "waiting") => Err(LocateError::Waiting {
                pod: pod.into(),
                container: container.into(),
                reason: "ContainerCreating".into(),
            }),
            _ => Err(LocateError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            }),
        }
    }

    fn pod_runtime_handlers(&self, _: &str, _: &str) -> Result<Vec<String>, LocateError> {
        Ok(vec!["wasmtime".into()])
    }
}

/// The node server, running until dropped.
struct Node {
    port: u16,
    exit: watch::Sender<bool>,
    shutdown: CancellationToken,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start_node(data_dir: &Path, log_dir: &Path) -> Node {
    let read = |name: &str| {
        std::fs::read_to_string(data_dir.join("pki").join(name))
            .unwrap_or_else(|e| panic!("reading the cluster CA's {name}: {e}"))
    };
    let ca = CertifiedKey {
        cert_pem: read("ca.crt"),
        key_pem: read("ca.key"),
    };
    let serving = issue_node_serving(&ca, "node-1", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .expect("issuing the node's serving certificate");
    let tls = NodeTls {
        cert_pem: serving.cert_pem,
        key_pem: serving.key_pem,
        ca_pem: ca.cert_pem,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("binding the node server");
    let port = listener.local_addr().expect("local address").port();
    let (exit, exited) = watch::channel(false);
    let shutdown = CancellationToken::new();
    let worker = Arc::new(Worker {
        dir: log_dir.to_path_buf(),
        exited,
    });
    runtime.spawn(serve(listener, tls, worker, shutdown.clone()));
    Node {
        port,
        exit,
        shutdown,
        _runtime: runtime,
    }
}

/// Registers Node `name` reachable at 127.0.0.1:`port`.
fn register_node(cluster: &Cluster, name: &str, port: u16) {
    cluster.create(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"
    ));
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"{name}"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{port}}}}}}}}}"#
    );
    cluster.kubectl_ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
}

fn create_pod(cluster: &Cluster, name: &str, node: Option<&str>, containers: &[&str]) {
    let mut manifest = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n");
    if let Some(node) = node {
        manifest.push_str(&format!("  nodeName: {node}\n"));
    }
    manifest.push_str("  containers:\n");
    for c in containers {
        manifest.push_str(&format!(
            "  - name: {c}\n    image: registry.local/{c}:v1\n"
        ));
    }
    cluster.create(&manifest);
    // kubectl exec and attach refuse pods that are not running before asking the server.
    cluster.kubectl_ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
}

fn write_lines(path: &Path, lines: &[&str]) -> LogFile {
    let log = LogFile::open(path, 1 << 20).expect("opening a log file");
    let mut out = log.stream(Stream::Stdout);
    for l in lines {
        writeln!(out, "{l}").expect("writing a log line");
    }
    log
}

#[test]
fn kubectl_logs_reach_the_node_and_exec_is_refused_with_the_reason() {
    let cluster = Cluster::start_control_plane();
    let logs = tempfile::tempdir().expect("a log dir");
    let node = start_node(cluster.data_dir(), logs.path());
    register_node(&cluster, "node-1", node.port);
    create_pod(&cluster, "hello", Some("node-1"), &["app", "waiting"]);
    write_lines(&logs.path().join("0.log"), &["crashed once"]);
    let current = write_lines(&logs.path().join("1.log"), &["hello", "from", "wasm"]);

    assert_eq!(
        cluster.kubectl_ok(&["logs", "hello", "-c", "app"]),
        "hello\nfrom\nwasm\n"
    );
    assert_eq!(
        cluster.kubectl_ok(&["logs", "hello", "-c", "app", "--tail=2"]),
        "from\nwasm\n"
    );
    assert_eq!(
        cluster.kubectl_ok(&["logs", "hello", "-c", "app", "--previous"]),
        "crashed once\n"
    );
    let stamped = cluster.kubectl_ok(&["logs", "hello", "-c", "app", "--timestamps", "--tail=1"]);
    let (ts, line) = stamped.split_once(' ').expect("a timestamp prefix");
    assert!(ts.contains('T') && ts.ends_with('Z'), "{stamped}");
    assert_eq!(line, "wasm\n");
    assert_eq!(
        cluster.kubectl_ok(&["logs", "hello", "-c", "app", "--limit-bytes=8"]),
        "hello\nfr"
    );
    assert_eq!(
        cluster.kubectl_ok(&["logs", "hello", "-c", "app", "--since=1h"]),
        "hello\nfrom\nwasm\n"
    );

    let err = cluster.kubectl_err(&["logs", "hello", "-c", "waiting"]);
    assert!(
        err.contains(
            "Error from server (BadRequest): container \"waiting\" in pod \"hello\" is waiting to start: ContainerCreating"
        ),
        "{err}"
    );
    let err = cluster.kubectl_err(&["logs", "hello", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod hello"),
        "{err}"
    );

    // A follow streams what the run writes and ends when the run exits.
    let mut follow = cluster.cmd(&["logs", "-f", "hello", "-c", "app"]).spawn();
    follow.expect_stdout("the existing lines", |l| l == "wasm");
    let mut out = current.stream(Stream::Stdout);
    writeln!(out, "still running").expect("writing a log line");
    follow.expect_stdout("a line written while following", |l| l == "still running");
    writeln!(out, "bye").expect("writing a log line");
    drop(out);
    node.exit.send(true).expect("the node server is running");
    let run = follow.finish();
    assert!(run.success(), "{run}");
    assert!(run.stdout.ends_with("still running\nbye\n"), "{run}");

    for args in [
        &["exec", "hello", "-c", "app", "--", "ls"][..],
        &["exec", "-i", "hello", "-c", "app", "--", "sh"][..],
    ] {
        let err = cluster.kubectl_err(args);
        assert!(
            err.contains(
                "exec is not supported for container \"app\": it is a WebAssembly module run by wasmtime, which has no shell or processes to run commands in"
            ),
            "{args:?}: {err}"
        );
    }
    let err = cluster.kubectl_err(&["attach", "hello", "-c", "app"]);
    assert!(
        err.contains("attach is not supported for container \"app\""),
        "{err}"
    );
    let err = cluster.kubectl_err(&["port-forward", "pod/hello", "18080:80"]);
    assert!(
        err.contains("port forwarding is not supported for pod \"hello\""),
        "{err}"
    );
}

#[test]
fn logs_of_unbound_pods_are_empty_and_unreachable_nodes_say_why() {
    let cluster = Cluster::start_control_plane();
    create_pod(&cluster, "pending", None, &["app"]);
    assert_eq!(cluster.kubectl_ok(&["logs", "pending"]), "");
    let err = cluster.kubectl_err(&["exec", "pending", "--", "ls"]);
    assert!(
        err.contains("pod pending does not have a host assigned"),
        "{err}"
    );

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probing a free port")
        .port();
    register_node(&cluster, "gone", closed);
    create_pod(&cluster, "stranded", Some("gone"), &["app"]);
    let err = cluster.kubectl_err(&["logs", "stranded"]);
    assert!(
        err.contains(&format!(
            "Get \"https://127.0.0.1:{closed}/containerLogs/default/stranded/app\""
        )) && err.contains("refused"),
        "{err}"
    );
}

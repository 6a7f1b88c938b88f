//! Harness for end-to-end tests: [`Cluster`] runs the real `skiff up` on a temporary data dir and a
//! free port and drives it with the real kubectl ([`Kubectl`]); [`table`] reads kubectl's tabular
//! output the way a user does. Everything is killed and removed when the `Cluster` is dropped.
//!
//! Each cluster takes a [`Slot`] of the host, so concurrent tests never share a pod subnet, a
//! bridge or a cgroup tree; its `Drop` also removes what its nodes left on the host (containers,
//! shims, mounts, cgroups, the bridge), and [`Cluster::leftovers`] lists what skiff itself should
//! have removed. [`Registry::push_busybox`] (in `oci`) provides a container image.

mod host;
mod kubectl;
mod oci;
mod registry;
mod slot;

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub use kubectl::{Background, KUBECTL, Kubectl, Run};
pub use registry::Registry;
pub use slot::Slot;

use host::NodeFootprint;

/// How long [`eventually`], readiness and a graceful stop may take before the test fails. It bounds
/// a hang; nothing asserts that anything is fast.
const BOUND: Duration = Duration::from_secs(60);
const PAUSE: Duration = Duration::from_millis(100);

/// A running (or stopped) `skiff up` and the directories it owns.
pub struct Cluster {
    data: tempfile::TempDir,
    /// kubectl's discovery cache, skiff's logs and files the test writes.
    work: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// `up` (control plane and a local node) or `control` (control plane alone).
    command: &'static str,
    /// Extra environment for the skiff process.
    env: Vec<(String, String)>,
    /// The local node's server port (with `up`).
    kubelet_port: u16,
    /// This cluster's share of the host; joined nodes hold it too.
    slot: Arc<Slot>,
}

/// The name of the node `skiff up` runs in a test cluster.
pub const LOCAL_NODE: &str = "node-a";

impl Cluster {
    /// Starts a fresh `skiff up` (control plane and a local node) and waits until it answers
    /// `/readyz`.
    pub fn start() -> Cluster {
        Cluster::start_as("up", &[])
    }

    /// Starts the control plane alone (`skiff control`): tests that register Nodes of their own.
    pub fn start_control_plane() -> Cluster {
        Cluster::start_as("control", &[])
    }

    /// [`Cluster::start_control_plane`] with extra environment variables for skiff (settings
    /// tests shorten, such as `SKIFF_NODE_MONITOR_GRACE_PERIOD`).
    pub fn start_control_plane_with_env(env: &[(&str, &str)]) -> Cluster {
        Cluster::start_as("control", env)
    }

    /// [`Cluster::start`] with extra environment variables for skiff.
    pub fn start_with_env(env: &[(&str, &str)]) -> Cluster {
        Cluster::start_as("up", env)
    }

    fn start_as(command: &'static str, env: &[(&str, &str)]) -> Cluster {
        let data = tempfile::Builder::new()
            .prefix("skiff-e2e-data-")
            .tempdir()
            .expect("creating the data dir");
        let work = tempfile::Builder::new()
            .prefix("skiff-e2e-work-")
            .tempdir()
            .expect("creating the work dir");
        std::fs::create_dir(work.path().join("kubectl-cache")).expect("creating the cache dir");
        let slot = Arc::new(Slot::acquire());
        let mut cluster = Cluster {
            data,
            work,
            port: 0,
            child: None,
            command,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            kubelet_port: free_port(),
            slot,
        };
        // Another test may grab the port between our probe and skiff's bind: retry with a new one.
        let mut why = String::new();
        for _ in 0..3 {
            cluster.port = free_port();
            cluster.spawn();
            match cluster.wait_ready() {
                Ok(()) => return cluster,
                Err(e) => why = e,
            }
            if !cluster.server_log().contains("Address already in use") {
                break;
            }
        }
        panic!(
            "skiff did not become ready on port {}: {why}\n{}",
            cluster.port,
            cluster.server_log()
        )
    }

    /// A fresh `skiff up` whose local node is Ready, and a fresh registry beside it.
    pub fn start_with_registry() -> (Cluster, Registry) {
        let registry = Registry::start().expect("starting the registry");
        let cluster = Cluster::start();
        cluster.wait_node_ready(LOCAL_NODE, || cluster.server_log());
        (cluster, registry)
    }

    /// Waits until [`Cluster::leftovers`] is empty (skiff removes a pod's host state after the
    /// pod is gone from the API), failing with what is left and the server's log.
    pub fn wait_nothing_left(&self) {
        eventually("every pod's host state removed", || {
            let left = self.leftovers();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "left behind:\n{}\n{}",
                    left.join("\n"),
                    self.server_log_tail()
                ))
            }
        });
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The admin kubeconfig `skiff up` wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data.path().join("kubeconfig")
    }

    /// `https://127.0.0.1:PORT`
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The skiff process (to read its CPU time and memory).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("skiff is running").id()
    }

    /// An object as JSON (`kubectl get ARGS -o json`), asserted to exist.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl_ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl printed no JSON ({e}): {out}"))
    }

    /// Waits until pod `name` (namespace `default`) reaches `phase`; returns the pod as JSON.
    pub fn wait_pod_phase(&self, name: &str, phase: &str) -> serde_json::Value {
        eventually(&format!("pod {name} {phase}"), || {
            let run = self.kubectl(&["get", "pod", name, "-o", "json"]);
            if !run.success() {
                return Err(run.to_string());
            }
            let pod: serde_json::Value =
                serde_json::from_str(&run.stdout).map_err(|e| e.to_string())?;
            if pod["status"]["phase"] == phase {
                Ok(pod)
            } else {
                Err(format!(
                    "status: {}\n{}",
                    pod["status"],
                    self.server_log_tail()
                ))
            }
        })
    }

    /// The last lines skiff logged, for failure messages.
    pub fn server_log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.work.path().join("skiff.stderr")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A directory for the test's own files; removed with the cluster.
    pub fn scratch(&self) -> &Path {
        self.work.path()
    }

    /// Writes `contents` to `name` in [`Cluster::scratch`] and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
        path
    }

    /// A kubectl invocation against this cluster, to be finished by the caller.
    pub fn cmd(&self, args: &[&str]) -> Kubectl {
        Kubectl::new(
            args,
            self.kubeconfig(),
            self.work.path().join("kubectl-cache"),
        )
    }

    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.cmd(args).run()
    }

    /// Asserts success (the full output is in the panic message) and returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.cmd(args).ok()
    }

    /// Asserts failure and returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        self.cmd(args).err()
    }

    /// `kubectl apply -f -` with `manifest`, asserted to succeed; returns stdout.
    pub fn apply(&self, manifest: &str) -> String {
        self.cmd(&["apply", "-f", "-"]).stdin(manifest).ok()
    }

    /// `kubectl create -f -` with `manifest`, asserted to succeed; returns stdout.
    pub fn create(&self, manifest: &str) -> String {
        self.cmd(&["create", "-f", "-"]).stdin(manifest).ok()
    }

    /// Creates ConfigMap `namespace/name` with `data` through `kubectl create -f -` (a JSON body),
    /// asserted to succeed; returns kubectl's output (`configmap/NAME created`).
    ///
    /// Tests use this for setup rather than `kubectl create configmap`, whose typed client sends
    /// protobuf: that path has its own test, so its failure does not hide every other one.
    pub fn create_configmap(&self, namespace: &str, name: &str, data: &[(&str, &str)]) -> String {
        let data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        });
        self.create(&manifest.to_string())
    }

    /// Everything skiff printed (stdout then stderr) across all its starts.
    pub fn server_log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.work.path().join(name)).unwrap_or_default();
        format!(
            "--- skiff stdout ---\n{}\n--- skiff stderr ---\n{}",
            read("skiff.stdout"),
            read("skiff.stderr")
        )
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then a bounded wait for the process to exit, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(PAUSE);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("skiff ignored SIGTERM\n{}", self.server_log());
    }

    /// Starts skiff again on the same data dir and port after [`Cluster::kill`] or [`Cluster::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "skiff is still running");
        self.spawn();
        if let Err(why) = self.wait_ready() {
            panic!(
                "skiff did not become ready after a restart: {why}\n{}",
                self.server_log()
            );
        }
    }

    /// A graceful stop followed by a start on the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn spawn(&mut self) {
        let log = |name: &str| -> File {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.work.path().join(name))
                .expect("opening a log file")
        };
        let bin = skiff_bin();
        let mut command = Command::new(&bin);
        command
            .arg(self.command)
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--cluster-cidr")
            .arg(self.slot.cluster_cidr());
        if self.command == "up" {
            command
                .args(node_args(LOCAL_NODE, self.kubelet_port))
                .args(host_args(&self.slot, None));
        }
        let child = command
            .env_remove("KUBECONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log("skiff.stdout"))
            .stderr(log("skiff.stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
        self.child = Some(child);
    }

    /// Polls `/readyz` through kubectl; on failure, says why (skiff exited, or never answered).
    fn wait_ready(&mut self) -> Result<(), String> {
        let mut last = String::from("no kubeconfig was written");
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            let Some(child) = self.child.as_mut() else {
                return Err("skiff is not running".to_string());
            };
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("skiff exited with {status}"));
            }
            if self.kubeconfig().exists() {
                let run = self.kubectl(&["get", "--raw", "/readyz", "--request-timeout=5s"]);
                if run.success() && run.stdout.trim() == "ok" {
                    return Ok(());
                }
                last = run.to_string();
            }
            thread::sleep(PAUSE);
        }
        self.kill();
        Err(format!("no ready answer within {BOUND:?}; last: {last}"))
    }
}

impl Drop for Cluster {
    /// Kills skiff, then removes what its local node left on the host; the slot (and with it
    /// the bridge) goes when the last joined node has gone too.
    fn drop(&mut self) {
        self.kill();
        for problem in self.local_node().clean() {
            eprintln!("test cleanup ({}): {problem}", self.data.path().display());
        }
    }
}

impl Cluster {
    /// This cluster's share of the host: its pod range, bridge and cgroup root names.
    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    /// The local node's data dir (`DATA/node`).
    pub fn node_dir(&self) -> PathBuf {
        self.data.path().join("node")
    }

    fn local_node(&self) -> NodeFootprint {
        NodeFootprint {
            scope: self.data.path().to_path_buf(),
            node_dir: self.node_dir(),
            cgroup_root: self.slot.cgroup_root(None),
        }
    }

    /// What skiff should have removed from the host once every pod is deleted, one line each
    /// (empty when nothing is left): for the local node, mounts under the data dir, pod network
    /// namespaces, network state and IP leases, pod directories, container bundles, runc
    /// containers and live shims; for the whole cluster, veths on its bridge, per-pod NAT rules
    /// naming its pod addresses and pod cgroups under any of its nodes' cgroup roots. A joined node's
    /// own files are in [`JoinedNode::leftovers`].
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = self.local_node().leftovers();
        for veth in host::links_on_bridge(&self.slot.bridge()) {
            found.push(format!("link {veth} on bridge {}", self.slot.bridge()));
        }
        // Each node's one masquerade rule for its whole podCIDR stays while the node runs.
        let node_wide = format!("skiff: pods on {} leaving", self.slot.bridge());
        for rule in host::nat_rules_mentioning(&self.slot.pod_address_prefix()) {
            if !rule.contains(&node_wide) {
                found.push(format!("NAT rule {rule}"));
            }
        }
        // Joined nodes' pod cgroups (the local node's are listed above).
        let own = self.slot.cgroup_root(None);
        for tree in self.slot.cgroup_trees() {
            if tree.file_name().is_some_and(|n| n != own.as_str()) {
                for dir in host::pod_cgroups(&tree) {
                    found.push(format!("pod cgroup {}", dir.display()));
                }
            }
        }
        found
    }
}

/// The flags that keep a node agent's host-wide state (bridge, cgroups) within the cluster's
/// slot: `joined_node` is `None` for the local node of `skiff up`.
fn host_args(slot: &Slot, joined_node: Option<&str>) -> Vec<String> {
    vec![
        "--bridge".into(),
        slot.bridge(),
        "--cgroup-root".into(),
        slot.cgroup_root(joined_node),
    ]
}

/// The flags that make a node agent's identity deterministic and its port private to the test.
fn node_args(name: &str, kubelet_port: u16) -> Vec<String> {
    vec![
        "--node-name".into(),
        name.into(),
        "--node-ip".into(),
        "127.0.0.1".into(),
        "--kubelet-port".into(),
        kubelet_port.to_string(),
    ]
}

/// A second node agent (`skiff node`) joined to a [`Cluster`]: its own process, data dir and
/// name on the same host. Killed and removed on drop.
pub struct JoinedNode {
    pub name: String,
    data: tempfile::TempDir,
    child: Option<Child>,
    /// The cluster's slot, held until this node's host state is gone.
    slot: Arc<Slot>,
}

impl JoinedNode {
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Everything the agent printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("skiff-node.log")).unwrap_or_default()
    }

    /// `kill -9`, as a crashed or disconnected machine.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The agent's `--data-dir`.
    pub fn node_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    fn footprint(&self) -> NodeFootprint {
        NodeFootprint {
            scope: self.data.path().to_path_buf(),
            node_dir: self.node_dir(),
            cgroup_root: self.slot.cgroup_root(Some(&self.name)),
        }
    }

    /// [`Cluster::leftovers`] for this node's own state: mounts, network namespaces and state,
    /// pod directories, bundles, runc containers, shims and pod cgroups.
    pub fn leftovers(&self) -> Vec<String> {
        self.footprint().leftovers()
    }
}

impl Drop for JoinedNode {
    fn drop(&mut self) {
        self.kill();
        for problem in self.footprint().clean() {
            eprintln!("test cleanup ({}): {problem}", self.data.path().display());
        }
    }
}

impl Cluster {
    /// The join token `skiff up` created.
    pub fn join_token(&self) -> String {
        std::fs::read_to_string(self.data.path().join("token"))
            .expect("reading the join token")
            .trim()
            .to_string()
    }

    /// Starts `skiff node` joining this cluster as `name` and waits until its Node is Ready.
    pub fn join_node(&self, name: &str) -> JoinedNode {
        let data = tempfile::Builder::new()
            .prefix("skiff-e2e-node-")
            .tempdir()
            .expect("creating the node's data dir");
        let log = File::create(data.path().join("skiff-node.log")).expect("creating the node log");
        let child = Command::new(skiff_bin())
            .arg("node")
            .arg("--server")
            .arg(self.server())
            .arg("--token")
            .arg(self.join_token())
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .args(node_args(name, free_port()))
            .args(host_args(&self.slot, Some(name)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("starting skiff node");
        let node = JoinedNode {
            name: name.to_string(),
            data,
            child: Some(child),
            slot: Arc::clone(&self.slot),
        };
        self.wait_node_ready(name, || node.log());
        node
    }

    /// Waits until Node `name` reports Ready.
    pub fn wait_node_ready(&self, name: &str, log: impl Fn() -> String) {
        eventually(&format!("node {name} Ready"), || {
            let run = self.kubectl(&[
                "get",
                "node",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            if run.success() && run.stdout.trim() == "True" {
                Ok(())
            } else {
                Err(format!("{run}\n--- node log ---\n{}", log()))
            }
        });
    }
}

/// The skiff binary: `SKIFF_BIN`, else `skiff` beside the test binary's `deps/` directory.
pub fn skiff_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SKIFF_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("locating the test binary");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("skiff"))
        .unwrap_or_else(|| panic!("no target dir above {exe:?}"));
    assert!(
        bin.exists(),
        "skiff binary not found at {bin:?}: build it first (`cargo build -p skiff`, which scripts/test.sh does) or set SKIFF_BIN"
    );
    bin
}

/// `samples/` at the repository root.
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join("samples")
}

/// A built sample module, `samples/wasm/out/NAME.wasm` (the test command builds them with
/// `samples/wasm/build.sh`).
pub fn sample_module(name: &str) -> PathBuf {
    let path = samples_dir().join("wasm/out").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the samples with samples/wasm/build.sh",
        path.display()
    );
    path
}

/// A file shipped beside the tests (`tests/python/...`).
pub fn test_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Asserts that `tool` is on `PATH` and returns its path, naming it when it is missing.
pub fn require_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{tool}` is not installed: scripts/test.sh installs it"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

/// Retries `probe` (bounded) until it returns `Ok`; panics with `what` and the last error.
pub fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        match probe() {
            Ok(value) => return value,
            Err(e) => last = e,
        }
        thread::sleep(PAUSE);
    }
    panic!("{what} never happened; last attempt: {last}")
}

/// kubectl's tabular output as rows of cells, header first. Columns are separated by at least
/// two spaces (kubectl pads with three), so headers like `NOMINATED NODE` stay one cell.
pub fn table(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The row of `table` whose first cell (or second, with `-A`) is `name`; panics with the table.
pub fn row<'a>(table: &'a [Vec<String>], name: &str) -> &'a [String] {
    table
        .iter()
        .find(|r| r.first().is_some_and(|c| c == name) || (r.get(1).is_some_and(|c| c == name)))
        .unwrap_or_else(|| panic!("no row {name:?} in {table:#?}"))
}

/// The value on the first line of `text` that starts (after indentation) with `key`, as
/// `kubectl describe` prints `Key:   value`; `None` if no line does.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix(key))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keeps_multi_word_headers_whole() {
        let out = "NAME    READY   STATUS    RESTARTS   AGE   IP       NODE     NOMINATED NODE   READINESS GATES\n\
                   web-1   0/1     Pending   0          3s    <none>   <none>   <none>           <none>\n";
        let t = table(out);
        assert_eq!(
            t[0],
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(row(&t, "web-1")[2], "Pending");
        assert_eq!(row(&t, "web-1").len(), 9);
    }

    #[test]
    fn field_reads_describe_lines_whatever_the_alignment() {
        let out = "Name:         web\nSelector:     app=web\n  Containers:\n   web:\n    Image:   nginx\n";
        assert_eq!(field(out, "Selector:"), Some("app=web"));
        assert_eq!(field(out, "Image:"), Some("nginx"));
        assert_eq!(field(out, "Replicas:"), None);
    }
}

//! Wasm pods end to end: real `skiff up` (control plane and a local node), a real registry, the
//! sample modules from `samples/wasm`, and the real kubectl.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::Registry;
use skiff_tests::{Cluster, LOCAL_NODE, eventually};

struct Env {
    cluster: Cluster,
    registry: Registry,
}

impl Env {
    fn start() -> Env {
        let (cluster, registry) = Cluster::start_with_registry();
        Env { cluster, registry }
    }

    /// Pushes sample `name` and returns its image reference.
    fn image(&self, name: &str) -> String {
        self.registry.push_sample(name).expect("pushing a sample")
    }

    fn pod(&self, name: &str) -> Value {
        self.cluster.get_json(&["pod", name])
    }

    fn logs(&self, args: &[&str]) -> String {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        self.cluster.kubectl_ok(&all)
    }
}

fn simple_pod(name: &str, image: &str, restart: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  containers:\n  - name: app\n    image: {image}\n{extra}"
    )
}

fn events_of(env: &Env, pod: &str) -> String {
    env.cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ])
}

/// CPU time (user + system) of a process, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc stat");
    let after = stat.rsplit_once(')').expect("stat has a comm field").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux we run on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The share of one core `pid` used over `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_time(pid);
    let start = Instant::now();
    thread::sleep(window);
    (cpu_time(pid) - before).as_secs_f64() / start.elapsed().as_secs_f64()
}

#[test]
fn a_module_runs_to_completion_logs_and_reports_as_the_kubelet_does() {
    let env = Env::start();
    let image = env.image("hello");
    // No runtimeClassName: the image is a Wasm artifact, so it runs in wasmtime.
    env.cluster.apply(&simple_pod(
        "hello",
        &image,
        "Never",
        "    args: [\"--from\", \"skiff\"]\n",
    ));
    let pod = env.cluster.wait_pod_phase("hello", "Succeeded");
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        status["state"]["terminated"]["reason"], "Completed",
        "{status}"
    );
    assert_eq!(status["state"]["terminated"]["exitCode"], 0);
    assert!(
        status["containerID"]
            .as_str()
            .unwrap()
            .starts_with("wasm://"),
        "{status}"
    );
    assert!(
        status["imageID"].as_str().unwrap().contains("@sha256:"),
        "{status}"
    );
    assert_eq!(pod["spec"]["nodeName"], LOCAL_NODE);
    let logs = env.logs(&["hello"]);
    assert!(logs.contains("Hello from Skiff!"), "{logs}");
    assert!(logs.contains("--from") && logs.contains("skiff"), "{logs}");
    let events = events_of(&env, "hello");
    for reason in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "no {reason} event:\n{events}");
    }
    assert!(events.contains("Successfully pulled image"), "{events}");
    // `kubectl get pods` shows what a user expects.
    let table = env.cluster.kubectl_ok(&["get", "pod", "hello"]);
    assert!(table.contains("Completed"), "{table}");
}

#[test]
fn a_preview2_component_runs() {
    let env = Env::start();
    let image = env.image("hello-component");
    env.cluster
        .apply(&simple_pod("component", &image, "Never", ""));
    env.cluster.wait_pod_phase("component", "Succeeded");
    let logs = env.logs(&["component"]);
    assert!(logs.contains("Hello from a Skiff component!"), "{logs}");
}

#[test]
fn env_and_configmap_volumes_reach_the_module() {
    let env = Env::start();
    let hello = env.image("hello");
    let reader = env.image("config-reader");
    env.cluster
        .create_configmap("default", "settings", &[("colour", "blue"), ("size", "xl")]);
    env.cluster.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  token: s3cret
---
apiVersion: v1
kind: Pod
metadata:
  name: env
  labels: {{app: env}}
spec:
  runtimeClassName: wasmtime
  restartPolicy: Never
  containers:
  - name: app
    image: {hello}
    resources:
      limits: {{memory: 32Mi}}
    envFrom:
    - configMapRef: {{name: settings}}
      prefix: GREETING_
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: POD_NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: POD_MEMORY, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: POD_TOKEN, valueFrom: {{secretKeyRef: {{name: creds, key: token}}}}}}
    - {{name: POD_GREETING, value: "hi $(POD_NAME)"}}
---
apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  containers:
  - name: app
    image: {reader}
    volumeMounts:
    - {{name: config, mountPath: /config}}
  volumes:
  - name: config
    configMap: {{name: settings}}
"#
    ));
    env.cluster.wait_pod_phase("env", "Succeeded");
    let logs = env.logs(&["env"]);
    for line in [
        "GREETING_colour=blue",
        "GREETING_size=xl",
        "POD_NAME=env",
        "POD_NAMESPACE=default",
        &format!("POD_NODE={LOCAL_NODE}"),
        "POD_MEMORY=32",
        "POD_TOKEN=s3cret",
        "POD_GREETING=hi env",
    ] {
        assert!(
            logs.lines().any(|l| l.trim() == line),
            "no {line:?} in:\n{logs}"
        );
    }
    env.cluster.wait_pod_phase("reader", "Running");
    let logs = eventually("the reader prints its config", || {
        let logs = env.logs(&["reader"]);
        if logs.contains("colour=blue") && logs.contains("size=xl") {
            Ok(logs)
        } else {
            Err(logs)
        }
    });
    assert!(
        !logs.contains("..data"),
        "the atomic-writer internals are hidden: {logs}"
    );
}

#[test]
fn nothing_of_the_host_is_reachable() {
    let env = Env::start();
    let passwd = env.image("passwd-reader");
    let net = env.image("net-probe");
    env.cluster
        .apply(&simple_pod("passwd", &passwd, "Never", ""));
    env.cluster.apply(&simple_pod("net", &net, "Never", ""));
    let pod = env.cluster.wait_pod_phase("passwd", "Failed");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        1
    );
    let logs = env.logs(&["passwd"]);
    assert!(logs.contains("cannot read /etc/passwd"), "{logs}");
    assert!(!logs.contains("root:"), "{logs}");
    // A component importing sockets gets the pod's own network namespace: its localhost is
    // the pod's, not the node's.
    let net = env.cluster.wait_pod_phase("net", "Failed");
    assert!(net["status"]["podIP"].is_string(), "{net}");
    let logs = env.logs(&["net"]);
    assert!(
        logs.contains("cannot connect to 127.0.0.1:80") && logs.contains("refused"),
        "{logs}"
    );
}

#[test]
fn a_crashing_module_backs_off_and_keeps_its_previous_logs() {
    let env = Env::start();
    let image = env.image("exit-code");
    env.cluster.apply(&simple_pod(
        "crash",
        &image,
        "Always",
        "    args: [\"3\"]\n",
    ));
    let status = eventually("two restarts and CrashLoopBackOff", || {
        let pod = env.pod("crash");
        let s = pod["status"]["containerStatuses"][0].clone();
        let restarts = s["restartCount"].as_i64().unwrap_or(0);
        if restarts >= 2 && s["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3, "{status}");
    assert_eq!(
        status["lastState"]["terminated"]["reason"], "Error",
        "{status}"
    );
    let message = status["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("back-off ") && message.contains("restarting failed container=app"),
        "{message}"
    );
    assert_eq!(env.pod("crash")["status"]["phase"], "Running");
    let previous = env.logs(&["crash", "--previous"]);
    assert!(previous.contains("exiting with 3"), "{previous}");
    let events = events_of(&env, "crash");
    assert!(events.contains("BackOff"), "{events}");
    let table = env.cluster.kubectl_ok(&["get", "pod", "crash"]);
    assert!(
        table.contains("CrashLoopBackOff") || table.contains("Error"),
        "{table}"
    );
}

#[test]
fn exceeding_the_memory_limit_is_oom_killed() {
    let env = Env::start();
    let image = env.image("memory-hog");
    env.cluster.apply(&simple_pod(
        "hog",
        &image,
        "Never",
        "    resources:\n      limits: {memory: 16Mi}\n",
    ));
    let pod = env.cluster.wait_pod_phase("hog", "Failed");
    let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    let logs = env.logs(&["hog"]);
    let most: u64 = logs
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("allocated ")?
                .strip_suffix(" MiB")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(most > 0 && most < 16, "allocated up to {most} MiB:\n{logs}");
}

#[test]
fn the_cpu_limit_holds_a_busy_loop_and_deletion_stops_it_at_once() {
    let env = Env::start();
    let image = env.image("cpu-spinner");
    let pid = env.cluster.pid();
    let idle = cpu_share(pid, Duration::from_secs(2));
    env.cluster.apply(&simple_pod(
        "spin",
        &image,
        "Always",
        "    resources:\n      limits: {cpu: 100m}\n",
    ));
    env.cluster.wait_pod_phase("spin", "Running");
    thread::sleep(Duration::from_secs(1));
    let busy = cpu_share(pid, Duration::from_secs(4)) - idle;
    assert!(
        (0.05..=0.18).contains(&busy),
        "a 100m busy loop used {:.1}% of a core (idle {:.1}%)",
        busy * 100.0,
        idle * 100.0
    );
    env.cluster
        .kubectl_ok(&["delete", "pod", "spin", "--wait=true"]);
    let after = cpu_share(pid, Duration::from_secs(2)) - idle;
    assert!(
        after < 0.04,
        "after deletion the process still uses {:.1}% of a core",
        after * 100.0
    );
}

#[test]
fn logs_follow_tail_timestamps_and_containers() {
    let env = Env::start();
    let reader = env.image("config-reader");
    let sleeper = env.image("sleeper");
    env.cluster
        .create_configmap("default", "settings", &[("a", "1"), ("b", "2")]);
    env.cluster.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  containers:
  - name: reader
    image: {reader}
    volumeMounts: [{{name: config, mountPath: /config}}]
  - name: sleeper
    image: {sleeper}
  volumes:
  - name: config
    configMap: {{name: settings}}
"#
    ));
    env.cluster.wait_pod_phase("two", "Running");
    eventually("both containers logged", || {
        let r = env.cluster.kubectl(&["logs", "two", "-c", "reader"]);
        let s = env.cluster.kubectl(&["logs", "two", "-c", "sleeper"]);
        if r.stdout.contains("b=2") && s.stdout.contains("sleeping") {
            Ok(())
        } else {
            Err(format!("{r}\n{s}"))
        }
    });
    // kubectl picks the first container itself and says so; the API names the choice.
    let run = env.cluster.kubectl(&["logs", "two"]);
    assert!(
        run.stderr.contains("Defaulted container \"reader\""),
        "{run}"
    );
    let err = env
        .cluster
        .kubectl_err(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"]);
    assert!(
        err.contains("a container name must be specified for pod two"),
        "{err}"
    );
    let tail = env.logs(&["two", "-c", "reader", "--tail=1"]);
    assert_eq!(tail.trim(), "b=2");
    let stamped = env.logs(&["two", "-c", "reader", "--timestamps"]);
    let first = stamped.lines().next().unwrap();
    assert!(
        first.starts_with("20") && first.contains('T') && first.ends_with("a=1"),
        "{stamped}"
    );
    let since = env.logs(&["two", "-c", "reader", "--since=1h"]);
    assert!(since.contains("a=1"), "{since}");
    let mut follow = env
        .cluster
        .cmd(&["logs", "-f", "two", "-c", "reader"])
        .spawn();
    follow.expect_stdout("followed logs", |out| out.contains("b=2"));
    env.cluster
        .kubectl_ok(&["delete", "pod", "two", "--wait=false"]);
    let done = follow.finish();
    assert!(done.stdout.contains("a=1"), "{done}");
}

#[test]
fn exec_into_a_wasm_container_says_why_not() {
    let env = Env::start();
    let image = env.image("sleeper");
    env.cluster
        .apply(&simple_pod("sleepy", &image, "Always", ""));
    env.cluster.wait_pod_phase("sleepy", "Running");
    let err = env.cluster.kubectl_err(&["exec", "sleepy", "--", "ls"]);
    assert!(err.contains("WebAssembly"), "{err}");
    let err = env.cluster.kubectl_err(&["attach", "sleepy"]);
    assert!(err.contains("WebAssembly"), "{err}");
}

#[test]
fn init_containers_run_first() {
    let env = Env::start();
    let hello = env.image("hello");
    let sleeper = env.image("sleeper");
    env.cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: init\nspec:\n  initContainers:\n  - name: setup\n    image: {hello}\n  containers:\n  - name: app\n    image: {sleeper}\n"
    ));
    let pod = env.cluster.wait_pod_phase("init", "Running");
    let init = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    let conditions = pod["status"]["conditions"].as_array().unwrap();
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        let c = conditions
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"));
        assert_eq!(c["status"], "True", "{kind}: {c}");
    }
    let logs = env.logs(&["init", "-c", "setup"]);
    assert!(logs.contains("Hello from Skiff!"), "{logs}");
}

#[test]
fn a_missing_image_backs_off_with_the_registry_reason() {
    let env = Env::start();
    let image = format!("{}/samples/nothing:v9", env.registry.addr());
    env.cluster
        .apply(&simple_pod("missing", &image, "Always", ""));
    let status = eventually("ImagePullBackOff", || {
        let s = env.pod("missing")["status"]["containerStatuses"][0].clone();
        if s["state"]["waiting"]["reason"] == "ImagePullBackOff" {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    assert!(
        status["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains(&image),
        "{status}"
    );
    let events = events_of(&env, "missing");
    assert!(events.contains("Failed to pull image"), "{events}");
    assert!(events.contains("ErrImagePull"), "{events}");
    assert_eq!(env.pod("missing")["status"]["phase"], "Pending");
}

#[test]
fn deleting_a_pod_removes_it_and_its_files() {
    let env = Env::start();
    let image = env.image("sleeper");
    env.cluster.apply(&simple_pod("gone", &image, "Always", ""));
    let pod = env.cluster.wait_pod_phase("gone", "Running");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let pod_dir = env.cluster.data_dir().join("node/pods").join(&uid);
    assert!(pod_dir.exists(), "{pod_dir:?}");
    env.cluster.kubectl_ok(&["delete", "pod", "gone"]);
    let run = env.cluster.kubectl(&["get", "pod", "gone"]);
    assert!(!run.success() && run.stderr.contains("NotFound"), "{run}");
    assert!(!pod_dir.exists(), "{pod_dir:?} is left behind");
}

//! Container (OCI) pods as their workload and their user see them: resource limits (memory, CPU,
//! pids), probes, lifecycle hooks and graceful termination, termination messages, a node agent
//! restarted under running containers, volumes, security contexts, hostPorts and QoS classes.
//! Real `skiff up`, a busybox image from a test registry, runc under skiff's shim, and the real
//! kubectl; each test ends by deleting its pods and checking that nothing is left on the host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff_tests::{Background, Cluster, LOCAL_NODE, Registry, eventually, field, row, table};

struct Env {
    cluster: Cluster,
    /// Serves the image for as long as pods may pull it.
    _registry: Registry,
    image: String,
}

impl Env {
    fn start() -> Env {
        let (cluster, registry) = Cluster::start_with_registry();
        let image = registry
            .push_busybox("test/busybox:v1")
            .expect("pushing busybox");
        Env {
            cluster,
            _registry: registry,
            image,
        }
    }

    /// A container `name` running `sh -c script` in busybox.
    fn container(&self, name: &str, script: &str) -> Value {
        json!({"name": name, "image": self.image, "command": ["sh", "-c", script]})
    }

    /// Applies pod `name` with `spec`.
    fn run_pod(&self, name: &str, spec: Value) {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": spec,
        });
        self.cluster.apply(&pod.to_string());
    }

    /// Pod `name` with one container `app` running `script`, and `restartPolicy`.
    fn run_script(&self, name: &str, restart_policy: &str, script: &str) {
        self.run_pod(
            name,
            json!({"restartPolicy": restart_policy, "containers": [self.container("app", script)]}),
        );
    }

    fn pod(&self, name: &str) -> Value {
        self.cluster.get_json(&["pod", name])
    }

    /// Waits until `pred` holds for pod `name`; returns the pod.
    fn wait_pod(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("pod {name}: {what}"), || {
            let run = self.cluster.kubectl(&["get", "pod", name, "-o", "json"]);
            if !run.success() {
                return Err(run.to_string());
            }
            let pod: Value = serde_json::from_str(&run.stdout).map_err(|e| e.to_string())?;
            if pred(&pod) {
                Ok(pod)
            } else {
                Err(format!(
                    "status: {}\n{}",
                    pod["status"],
                    self.cluster.server_log_tail()
                ))
            }
        })
    }

    /// `kubectl logs ARGS`, asserted to succeed.
    fn logs(&self, args: &[&str]) -> String {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        self.cluster.kubectl_ok(&all)
    }

    /// Waits until `kubectl logs ARGS` satisfies `pred`; returns the logs.
    fn wait_logs(&self, args: &[&str], what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        eventually(
            &format!("`kubectl logs {}`: {what}", args.join(" ")),
            || {
                let run = self.cluster.kubectl(&all);
                if run.success() && pred(&run.stdout) {
                    Ok(run.stdout)
                } else {
                    let pod = self.cluster.kubectl(&["get", "pod", args[0], "-o", "json"]);
                    Err(format!(
                        "{run}\n--- pod ---\n{}\n--- skiff ---\n{}",
                        pod.stdout,
                        self.cluster.server_log_tail()
                    ))
                }
            },
        )
    }

    /// `kubectl logs -f POD`, already showing `first` (so it is attached).
    fn follow(&self, pod: &str, first: &str) -> Background {
        let mut follow = self.cluster.cmd(&["logs", "-f", pod]).spawn();
        follow.expect_stdout(first, |line| line == first);
        follow
    }

    /// The pod's events as `REASON MESSAGE` lines.
    fn events(&self, pod: &str) -> Vec<(String, String)> {
        let out = self.cluster.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
            "--no-headers",
        ]);
        out.lines()
            .filter_map(|line| {
                let (reason, message) = line.trim().split_once(' ')?;
                Some((reason.to_string(), message.trim().to_string()))
            })
            .collect()
    }

    /// Waits for an event of pod `pod` with `reason` whose message contains `text`.
    fn wait_event(&self, pod: &str, reason: &str, text: &str) -> String {
        eventually(&format!("event {reason} {text:?} for pod {pod}"), || {
            let events = self.events(pod);
            events
                .iter()
                .find(|(r, m)| r == reason && m.contains(text))
                .map(|(_, m)| m.clone())
                .ok_or_else(|| format!("{events:#?}"))
        })
    }

    /// `kubectl get pod NAME`'s row as a user reads it (`NAME READY STATUS RESTARTS AGE`).
    fn row(&self, name: &str) -> Vec<String> {
        let out = self.cluster.kubectl_ok(&["get", "pod", name]);
        let t = table(&out);
        row(&t, name).to_vec()
    }

    /// Deletes every pod (waiting for them to go) and asserts that skiff left nothing behind.
    fn finish(&self) {
        self.cluster
            .kubectl_ok(&["delete", "pod", "--all", "--wait", "--timeout=90s"]);
        let pods = self.cluster.kubectl_ok(&["get", "pods", "-o", "name"]);
        assert_eq!(pods.trim(), "", "pods remain after delete --wait");
        self.cluster.wait_nothing_left();
    }
}

/// The status of container `name` of `pod` (app or init).
fn status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .chain(pod["status"]["initContainerStatuses"].as_array())
        .flatten()
        .find(|s| s["name"] == name)
        .unwrap_or(&Value::Null)
}

/// The status (`True`/`False`) of the pod's condition `kind`, `""` without one.
fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn restarts(pod: &Value, container: &str) -> u64 {
    status(pod, container)["restartCount"].as_u64().unwrap_or(0)
}

/// The value of the first `key=value` in `logs` (the rest of the line).
fn value<'a>(logs: &'a str, key: &str) -> Option<&'a str> {
    logs.lines()
        .find_map(|line| line.trim_end().strip_prefix(&format!("{key}=")))
}

/// The number after `key=` in `logs`; panics with the logs.
fn number(logs: &str, key: &str) -> u64 {
    value(logs, key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no number `{key}=` in the logs:\n{logs}"))
}

/// A shell snippet printing centiseconds since boot, from /proc/uptime (busybox's `date` has no
/// `%N`).
const UPTIME_CS: &str = r#"read up rest < /proc/uptime; echo "${up%.*}${up#*.}""#;

// ---------------------------------------------------------------------------------------------
// Resources

/// A container that outgrows `limits.memory` is OOM-killed: `OOMKilled`, exit code 137, as
/// `kubectl get pod` and the status show.
#[test]
fn exceeding_the_memory_limit_is_oom_killed() {
    let env = Env::start();
    let mut app = env.container("app", "echo filling; tail /dev/zero");
    app["resources"] = json!({"limits": {"memory": "32Mi"}});
    env.run_pod(
        "hog",
        json!({"restartPolicy": "Never", "containers": [app]}),
    );

    let pod = env.cluster.wait_pod_phase("hog", "Failed");
    let app = status(&pod, "app");
    let terminated = &app["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{app}");
    assert_eq!(terminated["exitCode"], 137, "{app}");
    let r = env.row("hog");
    assert_eq!(r[2], "OOMKilled", "{r:?}");
    env.finish();
}

/// `limits.cpu` is a CFS quota the container can see and feels: the quota files say
/// 10000/100000 µs under 100m and 100000/100000 µs under 1 CPU, `cpu.shares` follows the request
/// (defaulted from the limit), the 100m container gets no more than ~10% of a CPU (its own
/// cpuacct usage over wall time) and is throttled, and the same busy loop takes several times
/// longer under 100m than under 1 CPU.
#[test]
fn the_cpu_limit_is_a_quota_that_slows_a_busy_loop() {
    let env = Env::start();
    // Each round prints `round WALL_CS CPU_CS`: wall time and the container's CPU time.
    let script = |rounds: u32| {
        format!(
            r#"read q < /sys/fs/cgroup/cpu/cpu.cfs_quota_us
read p < /sys/fs/cgroup/cpu/cpu.cfs_period_us
read s < /sys/fs/cgroup/cpu/cpu.shares
echo "quota=$q"; echo "period=$p"; echo "shares=$s"
for r in $(seq {rounds}); do
  read u0 < /sys/fs/cgroup/cpuacct/cpuacct.usage
  start=$({UPTIME_CS})
  i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done
  end=$({UPTIME_CS})
  read u1 < /sys/fs/cgroup/cpuacct/cpuacct.usage
  echo "round $((end - start)) $(( (u1 - u0) / 10000000 ))"
done
while read -r key value; do [ "$key" = nr_throttled ] && echo "throttled=$value"; done < /sys/fs/cgroup/cpu/cpu.stat
exit 0"#
        )
    };
    let run = |name: &str, cpu: &str, rounds: u32| {
        let mut app = env.container("app", &script(rounds));
        app["resources"] = json!({"limits": {"cpu": cpu}});
        env.run_pod(name, json!({"restartPolicy": "Never", "containers": [app]}));
        env.cluster.wait_pod_phase(name, "Succeeded");
        env.logs(&[name])
    };
    // One after the other, so the two never compete; the fast loop runs three times and
    // its best time counts (other tests share the host's CPUs).
    let fast = run("one-cpu", "1", 3);
    let slow = run("tenth-cpu", "100m", 1);

    assert_eq!(number(&fast, "quota"), 100_000, "{fast}");
    assert_eq!(number(&fast, "period"), 100_000, "{fast}");
    assert_eq!(number(&fast, "shares"), 1024, "{fast}");
    assert_eq!(number(&slow, "quota"), 10_000, "{slow}");
    assert_eq!(number(&slow, "period"), 100_000, "{slow}");
    assert_eq!(number(&slow, "shares"), 102, "{slow}");
    let requested = env.cluster.kubectl_ok(&[
        "get",
        "pod",
        "tenth-cpu",
        "-o",
        "jsonpath={.spec.containers[0].resources.requests.cpu}",
    ]);
    assert_eq!(requested, "100m", "the request defaults to the limit");

    let rounds = |logs: &str| -> Vec<(u64, u64)> {
        logs.lines()
            .filter_map(|l| {
                let mut f = l.strip_prefix("round ")?.split_whitespace();
                Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            })
            .collect()
    };
    let (fast_rounds, slow_rounds) = (rounds(&fast), rounds(&slow));
    assert_eq!(fast_rounds.len(), 3, "{fast}");
    assert_eq!(slow_rounds.len(), 1, "{slow}");
    let fast_cs = fast_rounds.iter().map(|r| r.0).min().unwrap_or(0);
    let (slow_cs, slow_cpu_cs) = slow_rounds[0];
    eprintln!(
        "busy loop: {fast_rounds:?} (wall cs, cpu cs) under 1 CPU, {slow_rounds:?} under 100m"
    );
    assert!(
        slow_cpu_cs * 100 <= 15 * slow_cs,
        "under 100m the container used {slow_cpu_cs} cs of CPU in {slow_cs} cs: more than 15% of a CPU\n{slow}"
    );
    assert!(
        number(&slow, "throttled") > 0,
        "never throttled under 100m:\n{slow}"
    );
    assert!(
        slow_cs >= 3 * fast_cs.max(1),
        "under 100m the loop took {slow_cs} cs, under 1 CPU {fast_cs} cs at best: expected at least 3x\n--- 1 CPU ---\n{fast}\n--- 100m ---\n{slow}"
    );
    env.finish();
}

/// The node's per-pod pids limit (`--pod-max-pids`, 4096 by default) stops a pod that forks
/// without end: forks fail near 4096 processes (the pod runs with 1Gi, enough for them all, so
/// memory is not what stops it), the pod itself ends normally, and the node still starts pods.
#[test]
fn the_pod_pids_limit_stops_a_fork_loop_and_the_node_stays_healthy() {
    let env = Env::start();
    // Builtins only once the loop has ended: no fork can succeed any more.
    let script = r#"n=0
(while true; do sleep 1000 & n=$((n+1)); echo $n > /tmp/n; [ $n -ge 10000 ] && exit 0; done) 2> /tmp/err
read n < /tmp/n
echo "started=$n"
while read -r line; do echo "error: $line"; done < /tmp/err
exit 0"#;
    let mut app = env.container("app", script);
    app["resources"] = json!({"limits": {"memory": "1Gi"}});
    env.run_pod(
        "forker",
        json!({"restartPolicy": "Never", "containers": [app]}),
    );
    let pod = env.cluster.wait_pod_phase("forker", "Succeeded");
    let logs = env.logs(&["forker"]);
    let started = number(&logs, "started");
    eprintln!("the fork loop started {started} processes");
    assert!(
        (3900..4096).contains(&started),
        "the fork loop started {started} processes: expected it to stop just below the pod's 4096 pids\n{logs}"
    );
    assert!(
        logs.contains("can't fork") || logs.contains("Resource temporarily unavailable"),
        "no fork failure in the logs:\n{logs}"
    );
    assert_eq!(
        status(&pod, "app")["state"]["terminated"]["reason"],
        "Completed",
        "{}",
        pod["status"]
    );

    // The node is fine: Ready, and a new pod runs.
    env.cluster
        .wait_node_ready(LOCAL_NODE, || env.cluster.server_log());
    env.run_script("after", "Never", "echo still-fine");
    env.cluster.wait_pod_phase("after", "Succeeded");
    assert_eq!(env.logs(&["after"]).trim(), "still-fine");
    env.finish();
}

/// `status.qosClass` from requests and limits, shown by `kubectl describe`; each class's pod
/// cgroup gives the container its CPU shares (and the Guaranteed one its memory limit).
#[test]
fn qos_classes_follow_requests_and_limits() {
    let env = Env::start();
    let script = r#"read s < /sys/fs/cgroup/cpu/cpu.shares; echo "shares=$s"
read m < /sys/fs/cgroup/memory/memory.limit_in_bytes; echo "memory=$m""#;
    let mut guaranteed = env.container("app", script);
    guaranteed["resources"] = json!({"limits": {"cpu": "100m", "memory": "64Mi"}});
    let mut burstable = env.container("app", script);
    burstable["resources"] = json!({"requests": {"cpu": "50m"}});
    let best_effort = env.container("app", script);
    for (name, container) in [
        ("guaranteed", guaranteed),
        ("burstable", burstable),
        ("besteffort", best_effort),
    ] {
        env.run_pod(
            name,
            json!({"restartPolicy": "Never", "containers": [container]}),
        );
    }
    for (name, class, shares) in [
        ("guaranteed", "Guaranteed", 102),
        ("burstable", "Burstable", 51),
        ("besteffort", "BestEffort", 2),
    ] {
        let pod = env.cluster.wait_pod_phase(name, "Succeeded");
        assert_eq!(pod["status"]["qosClass"], class, "{}", pod["status"]);
        let describe = env.cluster.kubectl_ok(&["describe", "pod", name]);
        assert_eq!(field(&describe, "QoS Class:"), Some(class), "{describe}");
        let logs = env.logs(&[name]);
        assert_eq!(number(&logs, "shares"), shares, "{name}: {logs}");
    }
    let logs = env.logs(&["guaranteed"]);
    assert_eq!(number(&logs, "memory"), 64 << 20, "{logs}");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Probes

/// A readiness probe (httpGet) makes the pod Ready while it answers and not Ready once it
/// fails, without a restart: `kubectl get pod` shows 1/1 then 0/1, Running.
#[test]
fn a_failing_readiness_probe_makes_the_pod_unready_but_running() {
    let env = Env::start();
    let mut app = env.container(
        "app",
        "mkdir -p /www && echo ok > /www/ready && httpd -f -p 8080 -h /www & sleep 15; rm /www/ready; echo removed; wait",
    );
    app["readinessProbe"] = json!({
        "httpGet": {"path": "/ready", "port": 8080},
        "periodSeconds": 1,
        "failureThreshold": 1,
    });
    env.run_pod(
        "web",
        json!({"terminationGracePeriodSeconds": 2, "containers": [app]}),
    );

    let pod = env.wait_pod("web", "Ready", |p| condition(p, "Ready") == "True");
    assert!(status(&pod, "app")["ready"] == true, "{}", pod["status"]);
    let r = env.row("web");
    assert_eq!((r[1].as_str(), r[2].as_str()), ("1/1", "Running"), "{r:?}");

    let pod = env.wait_pod("web", "not Ready", |p| condition(p, "Ready") == "False");
    assert_eq!(pod["status"]["phase"], "Running", "{}", pod["status"]);
    assert_eq!(condition(&pod, "ContainersReady"), "False");
    assert_eq!(status(&pod, "app")["ready"], false);
    assert_eq!(restarts(&pod, "app"), 0, "readiness never restarts");
    let r = env.row("web");
    assert_eq!((r[1].as_str(), r[2].as_str()), ("0/1", "Running"), "{r:?}");
    env.wait_event("web", "Unhealthy", "Readiness probe failed");
    env.finish();
}

/// A tcpSocket liveness probe that starts failing (the server stops listening) gets the
/// container killed and restarted, with the kubelet's events.
#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let env = Env::start();
    let mut app = env.container(
        "app",
        "trap 'exit 0' TERM; mkdir -p /www; httpd -f -p 8080 -h /www & sleep 4; kill $!; echo stopped listening; while true; do sleep 1; done",
    );
    app["livenessProbe"] = json!({
        "tcpSocket": {"port": 8080},
        "periodSeconds": 1,
        "failureThreshold": 2,
    });
    env.run_pod("live", json!({"containers": [app]}));

    let pod = env.wait_pod("live", "restarted", |p| restarts(p, "app") >= 1);
    assert!(
        status(&pod, "app")["lastState"]["terminated"].is_object(),
        "{}",
        pod["status"]
    );
    env.wait_event("live", "Unhealthy", "Liveness probe failed");
    env.wait_event(
        "live",
        "Killing",
        "Container app failed liveness probe, will be restarted",
    );
    env.finish();
}

/// A startup probe holds liveness back: a server that listens only after 5 s, with a startup
/// probe allowing 10 s and a liveness probe that would kill it after one failure, is never
/// restarted; the same container without the startup probe is.
#[test]
fn a_startup_probe_holds_liveness_back_until_it_succeeds() {
    let env = Env::start();
    let script = "trap 'exit 0' TERM; sleep 5; mkdir -p /www; exec httpd -f -p 8080 -h /www";
    let liveness = json!({"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 1});
    let mut gated = env.container("app", script);
    gated["livenessProbe"] = liveness.clone();
    gated["startupProbe"] =
        json!({"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 10});
    let mut ungated = env.container("app", script);
    ungated["livenessProbe"] = liveness;
    env.run_pod(
        "slow-start",
        json!({"terminationGracePeriodSeconds": 2, "containers": [gated]}),
    );
    env.run_pod(
        "no-startup-probe",
        json!({"terminationGracePeriodSeconds": 2, "containers": [ungated]}),
    );

    // Without a startup probe, liveness kills the container before it listens.
    env.wait_pod("no-startup-probe", "restarted", |p| restarts(p, "app") >= 1);

    let pod = env.wait_pod("slow-start", "Ready", |p| condition(p, "Ready") == "True");
    assert_eq!(status(&pod, "app")["started"], true, "{}", pod["status"]);
    // Liveness now runs and succeeds: still no restart a while later.
    thread::sleep(Duration::from_secs(5));
    let pod = env.pod("slow-start");
    assert_eq!(restarts(&pod, "app"), 0, "{}", pod["status"]);
    let events = env.events("slow-start");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Startup probe failed")),
        "the startup probe failed while the server slept: {events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|(r, m)| r == "Killing" || m.starts_with("Liveness probe failed")),
        "liveness acted before the startup probe succeeded: {events:#?}"
    );
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and termination

/// A `preStop` sleep runs before SIGTERM: the container's TERM trap prints at least 3 s after
/// the delete. A failing `postStart` httpGet hook gets `FailedPostStartHook` and a restart.
#[test]
fn lifecycle_hooks_run_around_the_container() {
    let env = Env::start();
    let mut app = env.container(
        "app",
        "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 1; done",
    );
    app["lifecycle"] = json!({"preStop": {"sleep": {"seconds": 3}}});
    env.run_pod(
        "prestop",
        json!({"terminationGracePeriodSeconds": 30, "containers": [app]}),
    );
    let mut hooked = env.container("app", "trap 'exit 0' TERM; while true; do sleep 1; done");
    hooked["lifecycle"] = json!({"postStart": {"httpGet": {"path": "/hook", "port": 8080}}});
    env.run_pod(
        "poststart",
        json!({"terminationGracePeriodSeconds": 5, "containers": [hooked]}),
    );

    env.cluster.wait_pod_phase("prestop", "Running");
    let mut follow = env.follow("prestop", "started");
    let deleted = Instant::now();
    env.cluster
        .kubectl_ok(&["delete", "pod", "prestop", "--wait=false"]);
    follow.expect_stdout("got TERM", |line| line == "got TERM");
    let term_after = deleted.elapsed();
    assert!(
        term_after >= Duration::from_secs(3),
        "SIGTERM came {term_after:?} after the delete: the 3 s preStop sleep did not run first"
    );
    assert!(
        term_after < Duration::from_secs(20),
        "SIGTERM came {term_after:?} after the delete (preStop sleeps 3 s)"
    );
    eventually("pod prestop gone", || {
        let run = env.cluster.kubectl(&["get", "pod", "prestop"]);
        if run.success() {
            Err(run.stdout)
        } else {
            Ok(())
        }
    });
    assert!(
        deleted.elapsed() < Duration::from_secs(30),
        "the deletion waited out the grace period though the container exited on TERM"
    );

    env.wait_event(
        "poststart",
        "FailedPostStartHook",
        "Http lifecycle hook (/hook)",
    );
    env.wait_pod(
        "poststart",
        "restarted after its postStart hook failed",
        |p| restarts(p, "app") >= 1,
    );
    env.finish();
}

/// Deleting a pod sends SIGTERM first; a container that exits on it goes at once, one that
/// stays is SIGKILLed when `terminationGracePeriodSeconds` ends.
#[test]
fn deletion_sends_sigterm_then_sigkill_after_the_grace_period() {
    let env = Env::start();
    let polite = env.container(
        "app",
        "trap 'echo got TERM; exit 0' TERM; echo started; while true; do sleep 1; done",
    );
    env.run_pod("polite", json!({"containers": [polite]}));
    let stubborn = env.container(
        "app",
        "trap 'echo got TERM, staying' TERM; echo started; while true; do sleep 1; done",
    );
    env.run_pod(
        "stubborn",
        json!({"terminationGracePeriodSeconds": 2, "containers": [stubborn]}),
    );
    env.cluster.wait_pod_phase("polite", "Running");
    env.cluster.wait_pod_phase("stubborn", "Running");

    let mut follow = env.follow("polite", "started");
    let began = Instant::now();
    env.cluster
        .kubectl_ok(&["delete", "pod", "polite", "--wait", "--timeout=60s"]);
    let took = began.elapsed();
    follow.expect_stdout("got TERM", |line| line == "got TERM");
    assert!(
        took < Duration::from_secs(15),
        "deleting a pod that exits on SIGTERM took {took:?} (its grace period is 30 s)"
    );

    let mut follow = env.follow("stubborn", "started");
    let began = Instant::now();
    env.cluster
        .kubectl_ok(&["delete", "pod", "stubborn", "--wait", "--timeout=60s"]);
    let took = began.elapsed();
    follow.expect_stdout("got TERM, staying", |line| line == "got TERM, staying");
    assert!(
        took >= Duration::from_secs(2),
        "a container ignoring SIGTERM was gone after {took:?}, before its 2 s grace period"
    );
    assert!(
        took < Duration::from_secs(10),
        "a container ignoring SIGTERM with a 2 s grace period took {took:?} to go"
    );
    env.finish();
}

/// `terminationMessagePath` (default and custom) becomes `state.terminated.message`; with
/// `FallbackToLogsOnError` and no message file, a failed container's last log lines do, while
/// a written file still wins and a success gets none.
#[test]
fn termination_messages_come_from_the_file_or_the_log_tail() {
    let env = Env::start();
    let mut custom = env.container("app", "echo -n 'custom path' > /tmp/reason; exit 1");
    custom["terminationMessagePath"] = json!("/tmp/reason");
    // stdout and stderr are two pipes read apart (as under containerd): lines written close
    // together on both may reach the log in either order, so the second waits a moment.
    let mut fallback = env.container("app", "echo line one; sleep 1; echo line two >&2; exit 3");
    fallback["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    let mut file_wins = env.container(
        "app",
        "echo some log; echo -n 'from the file' > /dev/termination-log; exit 4",
    );
    file_wins["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    let mut success = env.container("app", "echo all good; exit 0");
    success["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    let default = env.container(
        "app",
        "echo -n 'wrote a message' > /dev/termination-log; exit 2",
    );
    let pods = [
        ("default-path", default),
        ("custom-path", custom),
        ("fallback", fallback),
        ("file-wins", file_wins),
        ("success", success),
    ];
    for (name, container) in pods {
        env.run_pod(
            name,
            json!({"restartPolicy": "Never", "containers": [container]}),
        );
    }
    let terminated = |name: &str, phase: &str| {
        let pod = env.cluster.wait_pod_phase(name, phase);
        status(&pod, "app")["state"]["terminated"].clone()
    };
    let t = terminated("default-path", "Failed");
    assert_eq!(
        (t["exitCode"].clone(), t["message"].clone()),
        (json!(2), json!("wrote a message")),
        "{t}"
    );
    let t = terminated("custom-path", "Failed");
    assert_eq!(t["message"], "custom path", "{t}");
    let t = terminated("fallback", "Failed");
    assert_eq!(t["exitCode"], 3, "{t}");
    assert_eq!(
        t["message"].as_str().map(str::trim_end),
        Some("line one\nline two"),
        "{t}"
    );
    let t = terminated("file-wins", "Failed");
    assert_eq!(t["message"], "from the file", "{t}");
    let t = terminated("success", "Succeeded");
    assert!(t["message"].is_null(), "a success gets no message: {t}");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// The node agent

/// Killing skiff (`kill -9`) and starting it again leaves running containers alone: the same
/// containerID, no restart, and a counter that kept counting while no agent ran.
#[test]
fn running_containers_survive_an_agent_restart() {
    let mut env = Env::start();
    env.run_script(
        "counter",
        "Always",
        "trap 'exit 0' TERM; i=0; while true; do echo count=$i; i=$((i+1)); sleep 1; done",
    );
    let pod = env.cluster.wait_pod_phase("counter", "Running");
    let before = status(&pod, "app").clone();
    let id = before["containerID"]
        .as_str()
        .expect("a containerID")
        .to_string();
    let uid = pod["metadata"]["uid"].as_str().expect("a uid").to_string();
    env.wait_logs(&["counter"], "a few counts", |l| l.contains("count=2"));

    let log_file = env
        .cluster
        .node_dir()
        .join("logs")
        .join(format!("default_counter_{uid}"))
        .join("app")
        .join("0.log");
    let counted = |what: &str| {
        let text = std::fs::read_to_string(&log_file)
            .unwrap_or_else(|e| panic!("reading {} ({what}): {e}", log_file.display()));
        text.lines().filter(|l| l.contains("count=")).count()
    };
    env.cluster.kill();
    let while_down = counted("with skiff killed");
    thread::sleep(Duration::from_secs(3));
    let later = counted("with skiff killed, 3 s later");
    assert!(
        later > while_down,
        "the container stopped counting with skiff killed ({while_down} then {later} lines in {})",
        log_file.display()
    );
    env.cluster.start_again();
    env.cluster
        .wait_node_ready(LOCAL_NODE, || env.cluster.server_log());

    let logs = env.wait_logs(&["counter"], "the count going on past the restart", |l| {
        l.lines().filter(|x| x.starts_with("count=")).count() > later + 1
    });
    let counts: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("count="))
        .map(|n| n.trim().parse().expect("a count"))
        .collect();
    let expected: Vec<u64> = (0..counts.len() as u64).collect();
    assert_eq!(
        counts, expected,
        "the counter restarted or skipped:\n{logs}"
    );
    let pod = env.wait_pod("counter", "Running with its container adopted", |p| {
        p["status"]["phase"] == "Running" && status(p, "app")["state"]["running"].is_object()
    });
    let after = status(&pod, "app");
    assert_eq!(after["containerID"], id.as_str(), "{after}");
    assert_eq!(after["restartCount"], 0, "{after}");
    assert_eq!(
        after["state"]["running"]["startedAt"], before["state"]["running"]["startedAt"],
        "{after}"
    );
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Volumes

/// An emptyDir is shared by a pod's containers; `medium: Memory` with `sizeLimit` is a tmpfs
/// that refuses to grow past it.
#[test]
fn empty_dirs_are_shared_and_memory_ones_are_bounded_tmpfs() {
    let env = Env::start();
    let mut writer = env.container(
        "writer",
        "i=0; while true; do echo note-$i > /data/f.tmp; mv /data/f.tmp /data/note; i=$((i+1)); sleep 1; done",
    );
    writer["volumeMounts"] = json!([{"name": "shared", "mountPath": "/data"}]);
    let mut reader = env.container(
        "reader",
        "while true; do cat /data/note 2>/dev/null; sleep 1; done",
    );
    reader["volumeMounts"] = json!([{"name": "shared", "mountPath": "/data"}]);
    env.run_pod(
        "pair",
        json!({
            "terminationGracePeriodSeconds": 2,
            "containers": [writer, reader],
            "volumes": [{"name": "shared", "emptyDir": {}}],
        }),
    );

    let mut tmpfs = env.container(
        "app",
        "grep ' /data ' /proc/mounts; dd if=/dev/zero of=/data/big bs=1M count=32 2>&1; echo dd-exit=$?",
    );
    tmpfs["volumeMounts"] = json!([{"name": "mem", "mountPath": "/data"}]);
    env.run_pod(
        "tmpfs",
        json!({
            "restartPolicy": "Never",
            "containers": [tmpfs],
            "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
        }),
    );

    env.wait_logs(&["pair", "-c", "reader"], "the writer's notes", |l| {
        l.lines().any(|x| x == "note-3")
    });

    env.cluster.wait_pod_phase("tmpfs", "Succeeded");
    let logs = env.logs(&["tmpfs"]);
    let mount = logs
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/data"))
        .unwrap_or_else(|| panic!("/data is not a mount:\n{logs}"));
    assert_eq!(mount.split_whitespace().nth(2), Some("tmpfs"), "{logs}");
    assert!(logs.contains("No space left on device"), "{logs}");
    assert_ne!(value(&logs, "dd-exit"), Some("0"), "{logs}");
    env.finish();
}

/// A configMap volume follows `kubectl apply` of a new ConfigMap within ~30 s in a running
/// container; a projected volume combines configMap, secret and downwardAPI sources.
#[test]
fn config_map_volumes_follow_updates_and_projected_volumes_combine_sources() {
    let env = Env::start();
    env.cluster
        .create_configmap("default", "cfg", &[("key", "one")]);
    let mut app = env.container(
        "app",
        "while true; do echo \"key=$(cat /cfg/key)\"; sleep 1; done",
    );
    app["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/cfg"}]);
    env.run_pod(
        "watcher",
        json!({
            "terminationGracePeriodSeconds": 2,
            "containers": [app],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
        }),
    );

    env.cluster
        .create_configmap("default", "greeting", &[("hello", "world")]);
    env.cluster.create(
        &json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"password": "czNjcmV0"},
        })
        .to_string(),
    );
    let mut proj = env.container(
        "app",
        "for f in hello pw name labels mem; do echo \"$f=$(cat /proj/$f)\"; done",
    );
    proj["resources"] = json!({"limits": {"memory": "64Mi"}});
    proj["volumeMounts"] = json!([{"name": "proj", "mountPath": "/proj"}]);
    env.run_pod(
        "projected",
        json!({
            "restartPolicy": "Never",
            "containers": [proj],
            "volumes": [{"name": "proj", "projected": {"sources": [
                {"configMap": {"name": "greeting", "items": [{"key": "hello", "path": "hello"}]}},
                {"secret": {"name": "creds", "items": [{"key": "password", "path": "pw"}]}},
                {"downwardAPI": {"items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}},
                ]}},
            ]}}],
        }),
    );

    env.wait_logs(&["watcher"], "key=one", |l| {
        l.lines().any(|x| x == "key=one")
    });
    let manifest = env.cluster.kubectl_ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=key=two",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let updated = Instant::now();
    env.cluster.apply(&manifest);
    env.wait_logs(&["watcher", "--tail=1"], "key=two", |l| {
        l.trim() == "key=two"
    });
    let took = updated.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the running container saw the new ConfigMap after {took:?}"
    );
    let pod = env.pod("watcher");
    assert_eq!(restarts(&pod, "app"), 0, "{}", pod["status"]);

    env.cluster.wait_pod_phase("projected", "Succeeded");
    let logs = env.logs(&["projected"]);
    assert_eq!(value(&logs, "hello"), Some("world"), "{logs}");
    assert_eq!(value(&logs, "pw"), Some("s3cret"), "{logs}");
    assert_eq!(value(&logs, "name"), Some("projected"), "{logs}");
    assert_eq!(value(&logs, "labels"), Some("app=\"projected\""), "{logs}");
    assert_eq!(value(&logs, "mem"), Some("64"), "{logs}");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Security context

/// The logs of pod `name` once it has run to completion, or what it shows instead (a
/// container that could not start) after a while; for tests that check several pods and
/// report every one that is wrong.
fn completed_logs(env: &Env, name: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let pod = env.pod(name);
        let phase = pod["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if phase == "Succeeded" || phase == "Failed" {
            return Ok(env.logs(&[name]));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "pod {name} never completed: phase {phase:?}, container {}",
                status(&pod, "app")["state"]
            ));
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Records a problem unless `ok`.
fn check(problems: &mut Vec<String>, name: &str, ok: bool, what: &str, logs: &str) {
    if !ok {
        problems.push(format!("{name}: {what}\n{logs}"));
    }
}

/// runAsUser/runAsGroup set the process's ids (and a non-root process holds no capabilities);
/// runAsNonRoot refuses the image's root user with the kubelet's message; dropping every
/// capability takes `chown` from root; a read-only root filesystem refuses writes; only a
/// privileged container may create network links. Every pod is checked; the failures are
/// reported together.
#[test]
fn security_contexts_constrain_the_container() {
    let env = Env::start();
    let ids = env.container("app", "id; grep -E '^Cap(Eff|Amb):' /proc/self/status");
    env.run_pod(
        "ids",
        json!({
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true},
            "containers": [ids],
        }),
    );
    env.run_pod(
        "nonroot",
        json!({"securityContext": {"runAsNonRoot": true}, "containers": [env.container("app", "id")]}),
    );
    let link = "ip link add v0 type veth peer name v1 2>&1 && echo ip-ok || echo ip-failed";
    env.run_script(
        "plain",
        "Never",
        &format!("chown 1000 /tmp 2>&1 && echo chown-ok; touch /x 2>&1 && echo touch-ok; {link}"),
    );
    let mut nocaps = env.container("app", "id -u; chown 1000 /tmp 2>&1 || echo chown-failed");
    nocaps["securityContext"] = json!({"capabilities": {"drop": ["ALL"]}});
    let mut rofs = env.container("app", "touch /x 2>&1 || echo touch-failed");
    rofs["securityContext"] = json!({"readOnlyRootFilesystem": true});
    let mut privileged = env.container("app", link);
    privileged["securityContext"] = json!({"privileged": true});
    for (name, container) in [
        ("nocaps", nocaps),
        ("rofs", rofs),
        ("privileged", privileged),
    ] {
        env.run_pod(
            name,
            json!({"restartPolicy": "Never", "containers": [container]}),
        );
    }

    let mut problems: Vec<String> = Vec::new();

    match completed_logs(&env, "ids") {
        Ok(logs) => {
            check(
                &mut problems,
                "ids",
                logs.starts_with("uid=1000 gid=3000"),
                "ids",
                &logs,
            );
            // As with containerd: no ambient capabilities, so none once not root.
            for set in ["CapEff", "CapAmb"] {
                let held = logs
                    .lines()
                    .find(|l| l.starts_with(&format!("{set}:")))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .is_some_and(|v| v != "0000000000000000");
                check(
                    &mut problems,
                    "ids",
                    !held,
                    &format!("uid 1000 holds capabilities ({set})"),
                    &logs,
                );
            }
        }
        Err(e) => problems.push(e),
    }

    let pod = env.wait_pod("nonroot", "CreateContainerConfigError", |p| {
        status(p, "app")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let message = status(&pod, "app")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    check(
        &mut problems,
        "nonroot",
        message.contains("container has runAsNonRoot and image will run as root"),
        "the kubelet's message",
        &message,
    );
    let r = env.row("nonroot");
    check(
        &mut problems,
        "nonroot",
        (r[1].as_str(), r[2].as_str()) == ("0/1", "CreateContainerConfigError"),
        "kubectl get pod",
        &format!("{r:?}"),
    );

    match completed_logs(&env, "plain") {
        Ok(logs) => {
            for expected in ["chown-ok", "touch-ok", "ip-failed"] {
                check(
                    &mut problems,
                    "plain",
                    logs.lines().any(|l| l == expected),
                    expected,
                    &logs,
                );
            }
            check(
                &mut problems,
                "plain",
                logs.contains("Operation not permitted"),
                "ip refused",
                &logs,
            );
        }
        Err(e) => problems.push(e),
    }

    match completed_logs(&env, "nocaps") {
        Ok(logs) => {
            check(
                &mut problems,
                "nocaps",
                logs.starts_with("0\n"),
                "still root",
                &logs,
            );
            check(
                &mut problems,
                "nocaps",
                logs.contains("Operation not permitted") && logs.contains("chown-failed"),
                "chown refused",
                &logs,
            );
        }
        Err(e) => problems.push(e),
    }

    match completed_logs(&env, "rofs") {
        Ok(logs) => check(
            &mut problems,
            "rofs",
            logs.contains("Read-only file system") && logs.contains("touch-failed"),
            "touch refused",
            &logs,
        ),
        Err(e) => problems.push(e),
    }

    match completed_logs(&env, "privileged") {
        Ok(logs) => check(
            &mut problems,
            "privileged",
            logs.lines().any(|l| l == "ip-ok"),
            "ip link add allowed",
            &logs,
        ),
        Err(e) => problems.push(e),
    }

    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// Networking

/// `GET /` over a fresh connection to 127.0.0.1:`port`: the whole answer.
fn http_get(port: u16) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    Ok(answer)
}

/// A container's `hostPort` answers on the node (127.0.0.1), and stops answering once the pod
/// is deleted.
#[test]
fn a_host_port_reaches_the_container_from_the_node() {
    let env = Env::start();
    // Below the ephemeral range, one per slot: no other test's socket uses it.
    let port = 31_000 + env.cluster.slot().number();
    let mut web = env.container(
        "app",
        "mkdir -p /www && echo hello-through-the-host-port > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    web["ports"] = json!([{"containerPort": 8080, "hostPort": port}]);
    env.run_pod(
        "web",
        json!({"terminationGracePeriodSeconds": 2, "containers": [web]}),
    );
    env.cluster.wait_pod_phase("web", "Running");

    let answer = eventually(&format!("an answer on 127.0.0.1:{port}"), || {
        let answer = http_get(port)?;
        if answer.contains("hello-through-the-host-port") {
            Ok(answer)
        } else {
            Err(answer)
        }
    });
    assert!(answer.starts_with("HTTP/1."), "{answer}");

    env.finish();
    assert!(
        http_get(port).is_err(),
        "127.0.0.1:{port} still answers after the pod was deleted"
    );
}

/// Exec probes and exec hooks run in the container: postStart writes the file the exec
/// readiness probe looks for (so the pod turns Ready only after it), and preStop writes to the
/// container's own output before SIGTERM arrives.
#[test]
fn exec_probes_and_exec_hooks_run_in_the_container() {
    let env = Env::start();
    let mut app = env.container(
        "app",
        "trap 'echo got TERM; exit 0' TERM; while true; do sleep 1; done",
    );
    app["readinessProbe"] = json!({"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1});
    app["lifecycle"] = json!({
        "postStart": {"exec": {"command": ["sh", "-c", "sleep 2; echo started > /tmp/ready"]}},
        "preStop": {"exec": {"command": ["sh", "-c", "echo prestop-ran > /proc/1/fd/1"]}},
    });
    env.run_pod("execs", json!({"containers": [app]}));
    let ready = env.wait_pod("execs", "Ready", |p| condition(p, "Ready") == "True");
    let uid = ready["metadata"]["uid"].as_str().expect("uid").to_string();
    env.cluster
        .kubectl_ok(&["delete", "pod", "execs", "--wait=true", "--timeout=60s"]);
    let file = env
        .cluster
        .node_dir()
        .join("logs")
        .join(format!("default_execs_{uid}"))
        .join("app/0.log");
    let text = eventually("the container's log file", || {
        std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))
    });
    let prestop = text
        .find("prestop-ran")
        .expect("the preStop hook wrote its line");
    let term = text.find("got TERM").expect("SIGTERM was trapped");
    assert!(prestop < term, "preStop ran before SIGTERM:\n{text}");
    env.finish();
}

/// `seccompProfile: RuntimeDefault` keeps a syscall from a container that the capability alone
/// would allow; `hostNetwork: true` runs in the node's own network namespace with its IP.
#[test]
fn runtime_default_seccomp_filters_and_host_network_pods_use_the_nodes_network() {
    let env = Env::start();
    let script = "swapoff /nonexistent 2>&1; echo done";
    for (name, seccomp) in [("unconfined", "Unconfined"), ("filtered", "RuntimeDefault")] {
        let mut c = env.container("app", script);
        c["securityContext"] = json!({
            "capabilities": {"add": ["SYS_ADMIN"]},
            "seccompProfile": {"type": seccomp},
        });
        env.run_pod(name, json!({"restartPolicy": "Never", "containers": [c]}));
    }
    let unconfined = env.wait_logs(&["unconfined"], "done", |l| l.contains("done"));
    assert!(
        unconfined.contains("No such file or directory"),
        "without a filter the kernel looks for the file: {unconfined}"
    );
    let filtered = env.wait_logs(&["filtered"], "done", |l| l.contains("done"));
    assert!(
        filtered.contains("Operation not permitted"),
        "RuntimeDefault refuses swapoff: {filtered}"
    );

    let bridge = env.cluster.slot().bridge();
    env.run_pod(
        "hostnet",
        json!({"hostNetwork": true, "restartPolicy": "Never",
               "containers": [env.container("app", "ip -o link; echo done")]}),
    );
    let links = env.wait_logs(&["hostnet"], "done", |l| l.contains("done"));
    assert!(
        links.contains(&bridge),
        "the node's own links, its pod bridge {bridge} among them: {links}"
    );
    let pod = env.pod("hostnet");
    assert_eq!(
        pod["status"]["podIP"], pod["status"]["hostIP"],
        "a hostNetwork pod's IP is the node's"
    );
    env.finish();
}

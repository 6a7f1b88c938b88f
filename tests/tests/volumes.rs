//! Persistent volumes end to end: the default `local-path` StorageClass, a claim that binds when
//! its first pod is scheduled, data written by a busybox container and read back by a Wasm
//! module after the writer is gone, the volume and its directory removed with the claim; a
//! statically created volume binding a matching claim, retained after it; claims protected
//! while a pod uses them; and the scheduler's verdicts on pods whose claims cannot bind. Real
//! `skiff up`, registry and kubectl.

use std::path::PathBuf;

use serde_json::{Value, json};
use skiff_tests::{Cluster, LOCAL_NODE, Registry, eventually, row, table};

struct Env {
    cluster: Cluster,
    registry: Registry,
}

impl Env {
    fn start() -> Env {
        let (cluster, registry) = Cluster::start_with_registry();
        Env { cluster, registry }
    }

    fn busybox(&self) -> String {
        self.registry
            .push_busybox("test/busybox:v1")
            .expect("pushing busybox")
    }

    fn claim(&self, name: &str, class: Option<&str>, size: &str) {
        let mut claim = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        });
        if let Some(class) = class {
            claim["spec"]["storageClassName"] = json!(class);
        }
        self.cluster.create(&claim.to_string());
    }

    /// Creates a pod whose one container (`image` with `command` or `args` from `run`) mounts
    /// claim `claim` at `mount`; `extra` adds to its spec.
    fn pod(&self, name: &str, image: &str, run: Value, claim: &str, mount: &str, extra: Value) {
        let mut container = json!({"name": "app", "image": image,
            "volumeMounts": [{"name": "data", "mountPath": mount}]});
        if let (Some(c), Some(run)) = (container.as_object_mut(), run.as_object()) {
            c.extend(run.clone());
        }
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [container],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            },
        });
        if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        self.cluster.create(&pod.to_string());
    }

    /// `kubectl get KIND NAME` as a table row.
    fn row(&self, kind: &str, name: &str) -> Vec<String> {
        let out = self.cluster.kubectl_ok(&["get", kind, name]);
        row(&table(&out), name).to_vec()
    }

    fn wait_row(&self, kind: &str, name: &str, column: usize, want: &str) -> Vec<String> {
        eventually(&format!("{kind} {name} column {column} = {want}"), || {
            let run = self.cluster.kubectl(&["get", kind, name]);
            let cells = table(&run.stdout)
                .into_iter()
                .find(|r| r.first().is_some_and(|c| c == name));
            match cells {
                Some(cells) if cells.get(column).is_some_and(|c| c == want) => Ok(cells),
                other => Err(format!(
                    "{other:?} {run}\n{}",
                    self.cluster.server_log_tail()
                )),
            }
        })
    }

    fn wait_gone(&self, kind: &str, name: &str) {
        eventually(&format!("{kind} {name} gone"), || {
            let run = self.cluster.kubectl(&["get", kind, name]);
            if !run.success() && run.stderr.contains("NotFound") {
                Ok(())
            } else {
                Err(format!("{run}\n{}", self.cluster.server_log_tail()))
            }
        })
    }

    /// The reasons of the events about `name`.
    fn event_reasons(&self, name: &str) -> Vec<String> {
        let selector = format!("involvedObject.name={name}");
        let events = self
            .cluster
            .get_json(&["events", "--field-selector", &selector]);
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    }
}

#[test]
fn a_default_class_claim_binds_for_its_first_pod_and_keeps_data_across_pods_and_runtimes() {
    let env = Env::start();
    let busybox = env.busybox();
    let reader = env
        .registry
        .push_sample("config-reader")
        .expect("pushing config-reader");

    let classes = table(&env.cluster.kubectl_ok(&["get", "sc"]));
    assert_eq!(
        classes[0],
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    assert_eq!(
        row(&classes, "local-path (default)")[..5],
        [
            "local-path (default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ]
    );

    // No class named: the default one; no pod yet: nothing to bind.
    env.claim("data", None, "64Mi");
    let claim = env.cluster.get_json(&["pvc", "data"]);
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(claim["status"]["phase"], "Pending");
    assert_eq!(
        claim["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    eventually("the claim waits for its first consumer", || {
        let reasons = env.event_reasons("data");
        if reasons.iter().any(|r| r == "WaitForFirstConsumer") {
            Ok(())
        } else {
            Err(format!("{reasons:?}"))
        }
    });

    env.pod(
        "writer",
        &busybox,
        json!({"command": ["sh", "-c", "echo hello > /data/greeting"]}),
        "data",
        "/data",
        json!({}),
    );
    env.cluster.wait_pod_phase("writer", "Succeeded");
    let claim = env.cluster.get_json(&["pvc", "data"]);
    let uid = claim["metadata"]["uid"].as_str().expect("uid");
    let volume = format!("pvc-{uid}");
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        LOCAL_NODE
    );
    assert_eq!(
        claim["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    let pvc_row = env.row("pvc", "data");
    assert_eq!(
        pvc_row[..6],
        [
            "data",
            "Bound",
            volume.as_str(),
            "64Mi",
            "RWO",
            "local-path"
        ]
    );
    let pv_row = env.row("pv", &volume);
    assert_eq!(
        pv_row[..7],
        [
            volume.as_str(),
            "64Mi",
            "RWO",
            "Delete",
            "Bound",
            "default/data",
            "local-path"
        ]
    );
    let pv = env.cluster.get_json(&["pv", &volume]);
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rancher.io/local-path"
    );
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({"key": "kubernetes.io/hostname", "operator": "In", "values": [LOCAL_NODE]})
    );
    let dir = PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().expect("hostPath"));
    let storage = env
        .cluster
        .node_dir()
        .join("storage")
        .canonicalize()
        .expect("storage dir");
    assert_eq!(dir, storage.join(format!("{volume}_default_data")));
    assert_eq!(
        std::fs::read_to_string(dir.join("greeting")).expect("the data is on the node"),
        "hello\n"
    );

    // The writer is gone; a Wasm module mounting the same claim read-only (it prints every file
    // of /config) finds the file.
    env.cluster
        .kubectl_ok(&["delete", "pod", "writer", "--wait"]);
    env.pod(
        "reader",
        &reader,
        json!({"args": ["--once"]}),
        "data",
        "/config",
        json!({"runtimeClassName": "wasmtime",
               "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}}]}),
    );
    env.cluster.wait_pod_phase("reader", "Succeeded");
    let log = env.cluster.kubectl_ok(&["logs", "reader"]);
    assert!(log.contains("greeting=hello"), "{log}");

    // Deleting the claim releases the volume; its node removes the data, then the volume.
    env.cluster
        .kubectl_ok(&["delete", "pod", "reader", "--wait"]);
    env.cluster.kubectl_ok(&["delete", "pvc", "data", "--wait"]);
    env.wait_gone("pv", &volume);
    assert!(!dir.exists(), "{} was not removed", dir.display());
    env.cluster.wait_nothing_left();
}

#[test]
fn a_static_volume_binds_a_matching_claim_protects_it_in_use_and_is_retained() {
    let env = Env::start();
    let busybox = env.busybox();
    let host_dir = env.cluster.scratch().join("static");
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "static"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "manual",
                 "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}},
    });
    env.cluster.create(&pv.to_string());
    let pv_row = env.wait_row("pv", "static", 4, "Available");
    assert_eq!(pv_row[..4], ["static", "1Gi", "RWO", "Retain"]);

    // Too big for the volume: stays Pending. A fitting one binds at once (no such class, so
    // nothing waits for a consumer).
    env.claim("big", Some("manual"), "5Gi");
    env.claim("small", Some("manual"), "500Mi");
    env.wait_row("pvc", "small", 1, "Bound");
    let pv_row = env.wait_row("pv", "static", 4, "Bound");
    assert_eq!(pv_row[5], "default/small");
    assert_eq!(env.row("pvc", "small")[2..5], ["static", "1Gi", "RWO"]);
    assert_eq!(env.row("pvc", "big")[1], "Pending");

    // The scheduler's verdicts on claims that cannot be used.
    let no_op = json!({"command": ["true"]});
    env.pod("stuck", &busybox, no_op.clone(), "big", "/data", json!({}));
    env.pod("lost", &busybox, no_op, "missing", "/data", json!({}));
    for (pod, why) in [
        ("stuck", "pod has unbound immediate PersistentVolumeClaims"),
        ("lost", "persistentvolumeclaim \"missing\" not found"),
    ] {
        eventually(&format!("{pod} unschedulable"), || {
            let p = env.cluster.get_json(&["pod", pod]);
            let message = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "PodScheduled")
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default()
                .to_string();
            let want = format!("0/1 nodes are available: {why}.");
            if message.starts_with(&want) {
                Ok(())
            } else {
                Err(message)
            }
        });
    }

    // In use, the claim survives its deletion until the pod is gone.
    env.pod(
        "user",
        &busybox,
        json!({"command": ["sh", "-c", "echo kept > /data/file && sleep 3600"]}),
        "small",
        "/data",
        json!({}),
    );
    env.cluster.wait_pod_phase("user", "Running");
    env.cluster
        .kubectl_ok(&["delete", "pvc", "small", "--wait=false"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(env.row("pvc", "small")[1], "Terminating");
    env.cluster
        .kubectl_ok(&["delete", "pod", "user", "stuck", "lost", "--wait"]);
    env.wait_gone("pvc", "small");
    let pv_row = env.wait_row("pv", "static", 4, "Released");
    assert_eq!(pv_row[3], "Retain");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("file")).expect("retained data"),
        "kept\n"
    );
    env.cluster.kubectl_ok(&["delete", "pvc", "big", "--wait"]);
    env.cluster
        .kubectl_ok(&["delete", "pv", "static", "--wait"]);
    env.cluster.wait_nothing_left();
}

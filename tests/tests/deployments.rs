//! Deployments, ReplicaSets and ReplicationControllers end to end: real `skiff up`, a real
//! registry, Wasm and busybox pods, and the real kubectl driving rollouts as a user does.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use skiff_tests::{Cluster, Registry, eventually, row, table};

struct Env {
    cluster: Cluster,
    registry: Registry,
}

impl Env {
    fn start() -> Env {
        let (cluster, registry) = Cluster::start_with_registry();
        Env { cluster, registry }
    }

    /// The sleeper module (ready at once, runs until stopped) under tag `tag`: each tag is a
    /// different image to roll out.
    fn sleeper(&self, tag: &str) -> String {
        self.registry
            .push_sample_tagged("sleeper", tag)
            .expect("pushing the sleeper module")
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.cluster.kubectl_ok(args)
    }

    /// `kubectl rollout status`, failing with the workload's objects and the server's log.
    fn rollout_status(&self, what: &str) -> String {
        let run = self
            .cluster
            .kubectl(&["rollout", "status", what, "--timeout=90s"]);
        if !run.success() {
            let objects = self.cluster.kubectl(&[
                "get",
                "deployments,replicasets,pods",
                "-o",
                "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,STATUS:.status",
            ]);
            panic!(
                "{run}\n--- objects ---\n{}\n--- server log ---\n{}",
                objects.stdout,
                self.cluster.server_log_tail()
            );
        }
        run.stdout
    }

    /// The names of the ReplicaSets a Deployment owns, with their revisions.
    fn revisions(&self, deployment: &str) -> BTreeMap<String, String> {
        let sets = self.cluster.get_json(&["replicasets"]);
        sets["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|rs| rs["metadata"]["ownerReferences"][0]["name"] == deployment)
            .map(|rs| {
                let revision = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or_default();
                (
                    revision.to_string(),
                    rs["metadata"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Images of the pods selected by `selector` that are not being deleted.
    fn live_pod_images(&self, selector: &str) -> Vec<String> {
        let pods = self.cluster.get_json(&["pods", "-l", selector]);
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn events_of(&self, name: &str) -> String {
        self.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ])
    }
}

fn deployment(name: &str, replicas: u32, image: &str, strategy: Value) -> String {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "runtimeClassName": "wasmtime",
                    "containers": [{"name": "app", "image": image}],
                },
            },
        },
    })
    .to_string()
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// Ready pods that are not being deleted, from a `kubectl get pods -w --output-watch-events`
/// line stream: `EVENT NAME READY DELETING IMAGE`.
#[derive(Default)]
struct ReadyWatch {
    ready: BTreeMap<String, String>,
    lowest: Option<usize>,
}

impl ReadyWatch {
    fn see(&mut self, line: &str) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let [event, name, ready, deleting, image] = cells[..] else {
            return;
        };
        if event == "EVENT" {
            return;
        }
        if event == "DELETED" || ready != "True" || deleting != "<none>" {
            self.ready.remove(name);
        } else {
            self.ready.insert(name.to_string(), image.to_string());
        }
    }

    fn count_ready(&self) -> usize {
        self.ready.len()
    }

    fn all_on(&self, image: &str, replicas: usize) -> bool {
        self.ready.len() == replicas && self.ready.values().all(|i| i == image)
    }
}

#[test]
fn a_deployment_scales_rolls_out_pauses_resumes_and_rolls_back() {
    let env = Env::start();
    let (v1, v2) = (env.sleeper("v1"), env.sleeper("v2"));
    env.cluster
        .apply(&deployment("web", 3, &v1, rolling(json!(1), json!(1))));
    env.kubectl(&[
        "annotate",
        "deployment",
        "web",
        "kubernetes.io/change-cause=first",
    ]);
    let out = env.rollout_status("deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let deployments = table(&env.kubectl(&["get", "deployment", "web"]));
    assert_eq!(
        &row(&deployments, "web")[1..4],
        ["3/3", "3", "3"],
        "READY UP-TO-DATE AVAILABLE"
    );

    // Scaled 3 → 10 → 4.
    env.kubectl(&["scale", "deployment/web", "--replicas=10"]);
    env.rollout_status("deployment/web");
    assert_eq!(env.live_pod_images("app=web").len(), 10);
    env.kubectl(&["scale", "deployment/web", "--replicas=4"]);
    eventually("four pods left", || {
        let n = env.live_pod_images("app=web").len();
        if n == 4 {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    });
    let first = env.revisions("web")["1"].clone();
    let events = env.events_of("web");
    for wanted in [
        format!("Scaled up replica set {first} from 0 to 3"),
        format!("Scaled up replica set {first} from 3 to 10"),
        format!("Scaled down replica set {first} from 10 to 4"),
    ] {
        assert!(events.contains(&wanted), "no {wanted:?} in\n{events}");
    }
    let rs_events = env.events_of(&first);
    assert!(
        rs_events.contains(&format!("Created pod: {first}-")),
        "{rs_events}"
    );

    // A rolling update, watched all the way: never fewer than replicas - maxUnavailable ready.
    let mut watch = env
        .cluster
        .cmd(&[
            "get", "pods", "-l", "app=web", "-w", "--output-watch-events", "-o",
            r#"custom-columns=EVENT:.type,NAME:.object.metadata.name,READY:.object.status.conditions[?(@.type=="Ready")].status,DELETING:.object.metadata.deletionTimestamp,IMAGE:.object.spec.containers[0].image"#,
        ])
        .spawn();
    let state = RefCell::new(ReadyWatch::default());
    watch.expect_stdout("four ready pods", |line| {
        state.borrow_mut().see(line);
        state.borrow().all_on(&v1, 4)
    });
    state.borrow_mut().lowest = Some(4);
    env.kubectl(&["set", "image", "deployment/web", &format!("app={v2}")]);
    env.kubectl(&[
        "annotate",
        "deployment",
        "web",
        "kubernetes.io/change-cause=second",
        "--overwrite",
    ]);
    watch.expect_stdout("four ready pods of the new image", |line| {
        let mut s = state.borrow_mut();
        s.see(line);
        let now = s.count_ready();
        s.lowest = s.lowest.map(|l| l.min(now));
        s.all_on(&v2, 4)
    });
    drop(watch);
    let lowest = state.borrow().lowest.unwrap();
    assert!(
        lowest >= 3,
        "ready pods fell to {lowest} during the rollout (maxUnavailable 1 of 4)"
    );
    env.rollout_status("deployment/web");

    // History, with change causes.
    let history = env.kubectl(&["rollout", "history", "deployment/web"]);
    let rows = table(&history);
    assert_eq!(row(&rows, "1")[1], "first", "{history}");
    assert_eq!(row(&rows, "2")[1], "second", "{history}");
    let one = env.kubectl(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(one.contains(&v1) && !one.contains(&v2), "{one}");

    // Paused: template changes make no new ReplicaSet until resumed.
    env.kubectl(&["rollout", "pause", "deployment/web"]);
    env.kubectl(&["set", "env", "deployment/web", "MODE=paused-edit"]);
    env.kubectl(&["set", "resources", "deployment/web", "--limits=memory=16Mi"]);
    eventually("the Deployment reports it is paused", || {
        let reason = env.kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Progressing")].reason}"#,
        ]);
        if reason == "DeploymentPaused" {
            Ok(())
        } else {
            Err(reason)
        }
    });
    assert_eq!(env.revisions("web").len(), 2, "no rollout while paused");
    env.kubectl(&["rollout", "resume", "deployment/web"]);
    env.rollout_status("deployment/web");
    let revisions = env.revisions("web");
    assert_eq!(revisions.keys().collect::<Vec<_>>(), ["1", "2", "3"]);
    let env_var = env.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].env[0].value}",
    ]);
    assert!(
        env_var.split_whitespace().all(|v| v == "paused-edit"),
        "{env_var}"
    );

    // Undo to revision 1: its ReplicaSet comes back as revision 4.
    env.kubectl(&["rollout", "undo", "deployment/web", "--to-revision=1"]);
    env.rollout_status("deployment/web");
    eventually("only the first image runs", || {
        let images = env.live_pod_images("app=web");
        if images.len() == 4 && images.iter().all(|i| *i == v1) {
            Ok(())
        } else {
            Err(format!("{images:?}"))
        }
    });
    let revisions = env.revisions("web");
    assert_eq!(revisions.get("4"), Some(&first), "{revisions:?}");
    let annotations = env.kubectl(&[
        "get",
        "rs",
        &first,
        "-o",
        r#"jsonpath={.metadata.annotations.deployment\.kubernetes\.io/revision-history}"#,
    ]);
    assert_eq!(annotations, "1");

    // Restart: a new ReplicaSet with the same template plus the restart annotation.
    env.kubectl(&["rollout", "restart", "deployment/web"]);
    env.rollout_status("deployment/web");
    assert!(env.revisions("web").contains_key("5"));

    // autoscale makes the HorizontalPodAutoscaler object.
    env.kubectl(&[
        "autoscale",
        "deployment",
        "web",
        "--min=2",
        "--max=6",
        "--cpu-percent=80",
    ]);
    let hpa = env.cluster.get_json(&["hpa", "web"]);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["maxReplicas"], 6);

    let described = env.kubectl(&["describe", "deployment", "web"]);
    assert!(described.contains("NewReplicaSetAvailable"), "{described}");
    env.kubectl(&["delete", "deployment", "web"]);
    eventually(
        "the Deployment's ReplicaSets and pods are collected",
        || {
            let left = env.kubectl(&["get", "rs,pods", "-l", "app=web", "-o", "name"]);
            if left.trim().is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        },
    );
    env.cluster.wait_nothing_left();
}

#[test]
fn a_rollout_to_a_missing_image_stalls_past_its_deadline_while_old_pods_serve() {
    let env = Env::start();
    let v1 = env.sleeper("v1");
    let mut manifest: Value =
        serde_json::from_str(&deployment("stuck", 2, &v1, rolling(json!(1), json!(0)))).unwrap();
    manifest["spec"]["progressDeadlineSeconds"] = json!(6);
    env.cluster.apply(&manifest.to_string());
    env.rollout_status("deployment/stuck");
    let missing = format!("{}/samples/does-not-exist:v1", env.registry.addr());
    env.kubectl(&[
        "set",
        "image",
        "deployment/stuck",
        &format!("app={missing}"),
    ]);
    let status = env
        .cluster
        .kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    assert!(!status.success(), "the rollout cannot succeed");
    assert!(
        status.stderr.contains("exceeded its progress deadline"),
        "{}",
        status.stderr
    );
    let condition = env.cluster.get_json(&["deployment", "stuck"])["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "ProgressDeadlineExceeded");
    // maxUnavailable 0: both old pods still serve.
    let images = env.live_pod_images("app=stuck");
    assert_eq!(images.iter().filter(|i| **i == v1).count(), 2, "{images:?}");
    let ready = env.kubectl(&[
        "get",
        "deployment",
        "stuck",
        "-o",
        "jsonpath={.status.availableReplicas}",
    ]);
    assert_eq!(ready, "2");
}

#[test]
fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let env = Env::start();
    let (v1, v2) = (env.sleeper("v1"), env.sleeper("v2"));
    env.cluster
        .apply(&deployment("batch", 3, &v1, json!({"type": "Recreate"})));
    env.rollout_status("deployment/batch");
    let mut watch = env
        .cluster
        .cmd(&["get", "pods", "-l", "app=batch", "-w", "--output-watch-events", "-o",
            "custom-columns=EVENT:.type,NAME:.object.metadata.name,IMAGE:.object.spec.containers[0].image"])
        .spawn();
    let live: RefCell<BTreeMap<String, String>> = RefCell::default();
    let overlap = RefCell::new(false);
    watch.expect_stdout("the three old pods", |line| {
        if let [event, name, image] = line.split_whitespace().collect::<Vec<_>>()[..]
            && event != "EVENT"
        {
            live.borrow_mut().insert(name.into(), image.into());
        }
        live.borrow().len() == 3
    });
    env.kubectl(&["set", "image", "deployment/batch", &format!("app={v2}")]);
    watch.expect_stdout("three new pods", |line| {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let [event, name, image] = cells[..] else {
            return false;
        };
        if event == "EVENT" {
            return false;
        }
        let mut live = live.borrow_mut();
        if event == "DELETED" {
            live.remove(name);
        } else {
            live.insert(name.into(), image.into());
        }
        let images: BTreeSet<&String> = live.values().collect();
        if images.len() > 1 {
            *overlap.borrow_mut() = true;
        }
        live.len() == 3 && images.len() == 1 && images.contains(&v2)
    });
    assert!(
        !*overlap.borrow(),
        "old and new pods existed at once under Recreate"
    );
    env.rollout_status("deployment/batch");
}

#[test]
fn a_replication_controller_keeps_its_pods_and_a_replica_set_adopts_and_releases() {
    let env = Env::start();
    let busybox = env
        .registry
        .push_busybox("test/busybox:v1")
        .expect("pushing busybox");
    // The seeds' own example (Kubernetes' replication.yaml), with busybox for nginx.
    let rc = format!(
        "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: nginx\nspec:\n  replicas: 3\n  selector:\n    app: nginx\n  template:\n    metadata:\n      name: nginx\n      labels:\n        app: nginx\n    spec:\n      containers:\n      - name: nginx\n        image: {busybox}\n        command: [\"sh\", \"-c\", \"sleep 3600\"]\n        ports:\n        - containerPort: 80\n"
    );
    env.cluster.apply(&rc);
    eventually("three ready replicas", || {
        let rcs = table(&env.kubectl(&["get", "rc", "nginx"]));
        let r = row(&rcs, "nginx");
        if r[1..4] == ["3", "3", "3"] {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    let described = env.kubectl(&["describe", "rc", "nginx"]);
    assert!(
        described.contains("3 Running / 0 Waiting / 0 Succeeded / 0 Failed"),
        "{described}"
    );
    // A deleted pod is replaced.
    let pods = env.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=nginx",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    env.kubectl(&["delete", "pod", &pods, "--wait=false"]);
    eventually("the deleted pod replaced", || {
        let names = env.kubectl(&["get", "pods", "-l", "app=nginx", "-o", "name"]);
        let n = names.lines().filter(|l| !l.contains(&pods)).count();
        if n == 3 { Ok(()) } else { Err(names) }
    });
    env.kubectl(&["scale", "rc", "nginx", "--replicas=1"]);
    eventually("one replica", || {
        let n = env.live_pod_images("app=nginx").len();
        if n == 1 { Ok(()) } else { Err(format!("{n}")) }
    });
    let events = env.events_of("nginx");
    assert!(
        events.contains("SuccessfulDelete") && events.contains("Created pod: nginx-"),
        "{events}"
    );

    // A ReplicaSet adopts a matching orphan and releases a pod relabelled away from it.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"tier": "cache"}},
        "spec": {"runtimeClassName": "wasmtime",
                 "containers": [{"name": "app", "image": env.sleeper("v1")}]}});
    env.cluster.apply(&orphan.to_string());
    let mut rs: Value =
        serde_json::from_str(&deployment("cache", 2, &env.sleeper("v1"), json!(null))).unwrap();
    rs["kind"] = json!("ReplicaSet");
    rs["spec"]["selector"] = json!({"matchLabels": {"tier": "cache"}});
    rs["spec"]["template"]["metadata"]["labels"] = json!({"tier": "cache"});
    rs["spec"].as_object_mut().unwrap().remove("strategy");
    env.cluster.apply(&rs.to_string());
    eventually("the orphan adopted and one pod added", || {
        let owner = env.kubectl(&[
            "get",
            "pod",
            "orphan",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].name}",
        ]);
        let n = env.live_pod_images("tier=cache").len();
        if owner == "cache" && n == 2 {
            Ok(())
        } else {
            Err(format!("owner {owner:?}, {n} pods"))
        }
    });
    env.kubectl(&["label", "pod", "orphan", "tier=retired", "--overwrite"]);
    eventually("the relabelled pod released and replaced", || {
        let owner = env.kubectl(&[
            "get",
            "pod",
            "orphan",
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ]);
        let n = env.live_pod_images("tier=cache").len();
        if owner.is_empty() && n == 2 {
            Ok(())
        } else {
            Err(format!("owner {owner:?}, {n} pods"))
        }
    });
    eventually(
        "the ReplicaSet reports two labelled, available replicas",
        || {
            let status = env.cluster.get_json(&["rs", "cache"])["status"].clone();
            if status["fullyLabeledReplicas"] == 2 && status["availableReplicas"] == 2 {
                Ok(())
            } else {
                Err(status.to_string())
            }
        },
    );
}

#[test]
fn a_rollout_survives_a_control_plane_restart_without_duplicate_pods() {
    let mut env = Env::start();
    let (v1, v2) = (env.sleeper("v1"), env.sleeper("v2"));
    let mut manifest: Value =
        serde_json::from_str(&deployment("steady", 6, &v1, rolling(json!(1), json!(0)))).unwrap();
    // Each new pod must stay ready for a second: the rollout takes several seconds.
    manifest["spec"]["minReadySeconds"] = json!(1);
    env.cluster.apply(&manifest.to_string());
    env.rollout_status("deployment/steady");
    env.kubectl(&["set", "image", "deployment/steady", &format!("app={v2}")]);
    eventually("the rollout under way", || {
        let n = env
            .live_pod_images("app=steady")
            .iter()
            .filter(|i| **i == v2)
            .count();
        if (1..6).contains(&n) {
            Ok(())
        } else {
            Err(format!("{n} new pods"))
        }
    });
    env.cluster.restart();
    env.rollout_status("deployment/steady");
    let images = env.live_pod_images("app=steady");
    assert_eq!(images.len(), 6, "{images:?}");
    assert!(images.iter().all(|i| *i == v2), "{images:?}");
    assert_eq!(
        env.revisions("steady").len(),
        2,
        "one ReplicaSet per template"
    );
    let sets = env.cluster.get_json(&["rs", "-l", "app=steady"]);
    let sizes: Vec<i64> = sets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| rs["status"]["replicas"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(sizes.iter().sum::<i64>(), 6, "{sizes:?}");
}

#[test]
fn a_replica_set_whose_pods_are_refused_reports_replica_failure_until_they_are_not() {
    let env = Env::start();
    let mut rs: Value =
        serde_json::from_str(&deployment("robots", 2, &env.sleeper("v1"), json!(null))).unwrap();
    rs["kind"] = json!("ReplicaSet");
    rs["spec"].as_object_mut().unwrap().remove("strategy");
    rs["spec"]["template"]["spec"]["serviceAccountName"] = json!("robot");
    env.cluster.apply(&rs.to_string());
    let failure = eventually("the ReplicaFailure condition", || {
        let status = env.cluster.get_json(&["rs", "robots"])["status"].clone();
        let condition = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "ReplicaFailure").cloned());
        condition.ok_or_else(|| status.to_string())
    });
    assert_eq!(failure["status"], "True");
    assert_eq!(failure["reason"], "FailedCreate");
    let wanted = "pods \"robots-\" is forbidden: error looking up service account default/robot: \
                  serviceaccount \"robot\" not found";
    assert_eq!(failure["message"], wanted);
    let events = env.events_of("robots");
    assert!(
        events.contains(&format!("Error creating: {wanted}")),
        "{events}"
    );
    let described = env.kubectl(&["describe", "rs", "robots"]);
    assert!(described.contains("ReplicaFailure"), "{described}");

    env.kubectl(&["create", "serviceaccount", "robot"]);
    eventually("two pods and the condition cleared", || {
        let status = env.cluster.get_json(&["rs", "robots"])["status"].clone();
        if status["readyReplicas"] == 2 && status["conditions"].is_null() {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });
}

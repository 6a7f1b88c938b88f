//! StatefulSets end to end: real `skiff up`, a real registry, Wasm pods where order is what is
//! watched and busybox pods where a shell writes to the claim, and the real kubectl: ordered
//! start and scale-down, stable names and hostnames, rolling update and undo through
//! ControllerRevisions, and one claim per ordinal that keeps its data across scaling.

use serde_json::{Value, json};
use skiff_tests::{Background, Cluster, Registry, eventually, row, table};

/// The sleeper module (ready at once, runs until stopped) under `tag`.
fn sleeper(registry: &Registry, tag: &str) -> String {
    registry
        .push_sample_tagged("sleeper", tag)
        .expect("pushing the sleeper module")
}

/// A headless Service and a StatefulSet `name` of `replicas` whose pods run `pod` (a pod spec;
/// the grace period is made short); `extra` adds to the set's spec.
fn apply_set(cluster: &Cluster, name: &str, replicas: u32, mut pod: Value, extra: Value) {
    pod["terminationGracePeriodSeconds"] = json!(1);
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 80}]},
    });
    cluster.apply(&service.to_string());
    let mut set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": pod,
            },
        },
    });
    if let (Some(spec), Some(extra)) = (set["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    cluster.apply(&set.to_string());
}

/// The REVISION column of `kubectl rollout history sts/SET`.
fn history(cluster: &Cluster, set: &str) -> Vec<String> {
    let out = cluster.kubectl_ok(&["rollout", "history", &format!("sts/{set}")]);
    table(&out)
        .into_iter()
        .filter_map(|r| r.first().filter(|c| c.parse::<u32>().is_ok()).cloned())
        .collect()
}

fn rollout_status(cluster: &Cluster, set: &str) -> String {
    cluster.kubectl_ok(&["rollout", "status", &format!("sts/{set}"), "--timeout=120s"])
}

/// `kubectl get sts NAME`'s READY column.
fn ready(cluster: &Cluster, set: &str) -> String {
    let out = cluster.kubectl_ok(&["get", "sts", set]);
    row(&table(&out), set)[1].clone()
}

fn wait_ready(cluster: &Cluster, set: &str, want: &str) {
    eventually(&format!("sts/{set} READY {want}"), || {
        let got = ready(cluster, set);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got}\n{}", cluster.server_log_tail()))
        }
    });
}

/// The names of the set's live pods, sorted.
fn live_pods(cluster: &Cluster, set: &str) -> Vec<String> {
    let pods = cluster.get_json(&["pods", "-l", &format!("app={set}")]);
    let mut names: Vec<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// A pod watch printing `EVENT NAME READY DELETING IMAGE` lines.
fn watch_pods(cluster: &Cluster, set: &str) -> Background {
    cluster
        .cmd(&[
            "get", "pods", "-l", &format!("app={set}"), "-w", "--output-watch-events", "-o",
            r#"custom-columns=EVENT:.type,NAME:.object.metadata.name,READY:.object.status.conditions[?(@.type=="Ready")].status,DELETING:.object.metadata.deletionTimestamp,IMAGE:.object.spec.containers[0].image"#,
        ])
        .spawn()
}

/// One line of [`watch_pods`].
struct Seen {
    event: String,
    name: String,
    ready: bool,
    deleting: bool,
}

fn parse(line: &str) -> Option<Seen> {
    let cells: Vec<&str> = line.split_whitespace().collect();
    let [event, name, ready, deleting, _image] = cells[..] else {
        return None;
    };
    (event != "EVENT").then(|| Seen {
        event: event.into(),
        name: name.into(),
        ready: ready == "True",
        deleting: deleting != "<none>",
    })
}

/// Reads the watch until `done` holds for the lines seen so far; returns them.
fn watch_until(watch: &mut Background, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
    let seen = std::cell::RefCell::new(Vec::new());
    watch.expect_stdout(what, |line| {
        if let Some(s) = parse(line) {
            seen.borrow_mut().push(s);
        }
        done(&seen.borrow())
    });
    seen.into_inner()
}

/// The index of the first line of `seen` matching `pred`.
fn first(seen: &[Seen], what: &str, pred: impl Fn(&Seen) -> bool) -> usize {
    seen.iter()
        .position(pred)
        .unwrap_or_else(|| panic!("never saw {what}"))
}

fn transcript(seen: &[Seen]) -> String {
    seen.iter()
        .map(|s| {
            format!(
                "{} {} ready={} deleting={}",
                s.event, s.name, s.ready, s.deleting
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The images of the `app=web` pods, in the order kubectl lists them.
fn web_images(cluster: &Cluster) -> Vec<String> {
    let images = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    images.split_whitespace().map(str::to_string).collect()
}

#[test]
fn a_stateful_set_starts_in_order_scales_from_the_top_and_rolls_out() {
    let (cluster, registry) = Cluster::start_with_registry();
    let (v1, v2) = (sleeper(&registry, "v1"), sleeper(&registry, "v2"));
    let mut watch = watch_pods(&cluster, "web");
    let pod = json!({"runtimeClassName": "wasmtime", "containers": [{"name": "app", "image": v1}]});
    apply_set(&cluster, "web", 3, pod, json!({}));

    // OrderedReady: each pod is created only once the one before it is ready.
    let seen = watch_until(&mut watch, "web-2 ready", |seen| {
        seen.iter().any(|s| s.name == "web-2" && s.ready)
    });
    let log = transcript(&seen);
    for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready = first(&seen, &format!("{before} ready"), |s| {
            s.name == before && s.ready
        });
        let created = first(&seen, &format!("{after} added"), |s| s.name == after);
        assert!(
            ready < created,
            "{after} came before {before} was ready:\n{log}"
        );
    }
    let out = rollout_status(&cluster, "web");
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated..."),
        "{out}"
    );
    assert_eq!(ready(&cluster, "web"), "3/3");

    // Stable identity: name, hostname under the governing Service, identity labels.
    let pod = cluster.get_json(&["pod", "web-1"]);
    assert_eq!(pod["spec"]["hostname"], "web-1");
    assert_eq!(pod["spec"]["subdomain"], "web");
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    let set = cluster.get_json(&["sts", "web"]);
    let first_revision = set["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(labels["controller-revision-hash"], first_revision.as_str());
    assert_eq!(set["status"]["currentRevision"], first_revision.as_str());
    let described = cluster.kubectl_ok(&["describe", "sts", "web"]);
    for n in 0..3 {
        let event = format!("create Pod web-{n} in StatefulSet web successful");
        assert!(described.contains(&event), "no {event:?} in\n{described}");
    }

    // Scale-down goes from the highest ordinal, one pod at a time.
    cluster.kubectl_ok(&["scale", "sts", "web", "--replicas=1"]);
    let seen = watch_until(&mut watch, "web-1 deleted", |seen| {
        seen.iter()
            .any(|s| s.name == "web-1" && s.event == "DELETED")
    });
    let log = transcript(&seen);
    let web2_gone = first(&seen, "web-2 deleted", |s| {
        s.name == "web-2" && s.event == "DELETED"
    });
    let web1_going = first(&seen, "web-1 deleting", |s| s.name == "web-1" && s.deleting);
    assert!(
        web2_gone < web1_going,
        "web-1 went before web-2 was gone:\n{log}"
    );
    assert_eq!(live_pods(&cluster, "web"), ["web-0"]);
    cluster.kubectl_ok(&["scale", "sts", "web", "--replicas=3"]);
    wait_ready(&cluster, "web", "3/3");

    // A rolling update replaces pods from the highest ordinal down, each once the previous is
    // ready again.
    cluster.kubectl_ok(&["set", "image", "sts/web", &format!("app={v2}")]);
    let seen = watch_until(&mut watch, "web-0 replaced and ready", |seen| {
        let gone = seen
            .iter()
            .position(|s| s.name == "web-0" && s.event == "DELETED");
        gone.is_some_and(|g| seen[g..].iter().any(|s| s.name == "web-0" && s.ready))
    });
    let log = transcript(&seen);
    let deleted = |name: &str| {
        first(&seen, &format!("{name} deleted"), |s| {
            s.name == name && s.event == "DELETED"
        })
    };
    assert!(
        deleted("web-2") < deleted("web-1") && deleted("web-1") < deleted("web-0"),
        "{log}"
    );
    let out = rollout_status(&cluster, "web");
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    assert_eq!(web_images(&cluster), [v2.as_str(); 3]);
    let set = cluster.get_json(&["sts", "web"]);
    assert_eq!(
        set["status"]["currentRevision"],
        set["status"]["updateRevision"]
    );
    assert_ne!(set["status"]["updateRevision"], first_revision.as_str());
    assert_eq!(history(&cluster, "web"), ["1", "2"]);

    // Undo restores the first template from its ControllerRevision.
    let undo = cluster.kubectl_ok(&["rollout", "undo", "sts/web"]);
    assert!(undo.contains("statefulset.apps/web rolled back"), "{undo}");
    eventually("every pod back on v1", || {
        let set = cluster.get_json(&["sts", "web"]);
        let images = web_images(&cluster);
        let done = set["status"]["updateRevision"] == first_revision.as_str()
            && set["status"]["currentRevision"] == first_revision.as_str()
            && images == [v1.as_str(); 3];
        if done {
            Ok(())
        } else {
            Err(format!("{images:?}\n{}", set["status"]))
        }
    });
    assert_eq!(history(&cluster, "web"), ["2", "3"]);
}

#[test]
fn each_ordinal_keeps_its_claim_and_data_across_scaling() {
    let (cluster, registry) = Cluster::start_with_registry();
    let busybox = registry
        .push_busybox("test/busybox:v1")
        .expect("pushing busybox");
    // Each pod appends its hostname to its own volume, then stays.
    let container = json!({
        "name": "app", "image": busybox,
        "command": ["sh", "-c", "hostname >> /data/hosts; exec sleep 3600"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    });
    apply_set(
        &cluster,
        "db",
        3,
        json!({"containers": [container]}),
        json!({"volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
        }]}),
    );
    let out = rollout_status(&cluster, "db");
    assert!(
        out.contains("partitioned roll out complete: 3 new pods"),
        "{out}"
    );
    let claims = || {
        let out = cluster.kubectl_ok(&["get", "pvc"]);
        let rows = table(&out);
        let mut claims: Vec<(String, String)> = rows[1..]
            .iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        claims.sort();
        claims
    };
    let bound = |names: &[&str]| {
        names
            .iter()
            .map(|n| (n.to_string(), "Bound".to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(claims(), bound(&["data-db-0", "data-db-1", "data-db-2"]));
    let described = cluster.kubectl_ok(&["describe", "sts", "db"]);
    let event = "create Claim data-db-1 Pod db-1 in StatefulSet db success";
    assert!(described.contains(event), "no {event:?} in\n{described}");
    let hosts = |pod: &str| cluster.kubectl_ok(&["exec", pod, "--", "cat", "/data/hosts"]);
    assert_eq!(hosts("db-2"), "db-2\n");

    // Scaled down, the claims stay; scaled up again, each pod finds its own data.
    cluster.kubectl_ok(&["scale", "sts", "db", "--replicas=1"]);
    eventually("db-1 and db-2 gone", || {
        let pods = cluster.kubectl_ok(&["get", "pods", "-l", "app=db", "-o", "name"]);
        if pods.trim() == "pod/db-0" {
            Ok(())
        } else {
            Err(pods)
        }
    });
    assert_eq!(claims(), bound(&["data-db-0", "data-db-1", "data-db-2"]));
    cluster.kubectl_ok(&["scale", "sts", "db", "--replicas=3"]);
    rollout_status(&cluster, "db");
    assert_eq!(hosts("db-1"), "db-1\ndb-1\n");
    assert_eq!(hosts("db-2"), "db-2\ndb-2\n");
    assert_eq!(hosts("db-0"), "db-0\n");

    // A deleted pod comes back under its name, with its claim.
    cluster.kubectl_ok(&["delete", "pod", "db-0"]);
    wait_ready(&cluster, "db", "3/3");
    eventually("db-0 back", || {
        let run = cluster.kubectl(&["exec", "db-0", "--", "cat", "/data/hosts"]);
        if run.success() && run.stdout == "db-0\ndb-0\n" {
            Ok(())
        } else {
            Err(run.to_string())
        }
    });
}

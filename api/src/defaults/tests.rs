//! Each kind's minimal manifest, defaulted, against what `kubectl get -o yaml` shows for it on a
//! v1.33 cluster (server-set metadata and status aside).

use serde_json::{Value, json};

use crate::registry::find_kind;

fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
    let info = find_kind(group, kind).expect("registered kind");
    super::apply(info, &mut obj);
    let once = obj.clone();
    super::apply(info, &mut obj);
    assert_eq!(obj, once, "defaulting {kind} twice changed it");
    obj
}

/// The pod spec defaults every template gets, around the given containers.
fn template_spec(containers: Value) -> Value {
    json!({
        "containers": containers,
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
    })
}

fn nginx(image: &str, pull: &str) -> Value {
    json!({
        "name": "nginx",
        "image": image,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": pull,
        "resources": {},
    })
}

#[test]
fn pod_gets_spec_admission_and_status_defaults() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]}}),
    );
    let mut container = nginx("nginx", "Always");
    container["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
    let mut spec = template_spec(json!([container]));
    for (k, v) in [
        ("enableServiceLinks", json!(true)),
        ("serviceAccountName", json!("default")),
        ("serviceAccount", json!("default")),
        ("priority", json!(0)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        (
            "tolerations",
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ]),
        ),
    ] {
        spec[k] = v;
    }
    assert_eq!(pod["spec"], spec);
    assert_eq!(
        pod["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );
}

#[test]
fn pull_policy_follows_the_image_tag() {
    for (image, want) in [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("localhost:5000/app", "Always"),
        ("localhost:5000/app:v1", "IfNotPresent"),
        ("nginx@sha256:abcd", "IfNotPresent"),
    ] {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "image": image}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"], want,
            "{image}"
        );
    }
}

#[test]
fn pod_limits_become_requests_and_decide_qos() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {"containers": [{"name": "c", "image": "x:1",
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]}}),
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "128Mi"})
    );
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    let burstable = defaulted(
        "",
        "Pod",
        json!({"spec": {"containers": [{"name": "c", "image": "x:1", "resources": {"requests": {"cpu": "1"}}}]}}),
    );
    assert_eq!(burstable["status"]["qosClass"], "Burstable");
}

#[test]
fn pod_keeps_its_own_not_ready_toleration_and_probe_defaults_fill_in() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
            "containers": [{"name": "c", "image": "x:1", "livenessProbe": {"httpGet": {"port": 80}}}]}}),
    );
    let tols = pod["spec"]["tolerations"].as_array().expect("tolerations");
    assert_eq!(tols.len(), 2);
    assert_eq!(tols[1]["key"], "node.kubernetes.io/unreachable");
    assert_eq!(
        pod["spec"]["containers"][0]["livenessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
               "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(pod["spec"]["volumes"][0]["configMap"]["defaultMode"], 420);
}

#[test]
fn deployment_defaults() {
    let d = defaulted(
        "apps",
        "Deployment",
        json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}),
    );
    assert_eq!(
        d["spec"],
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": template_spec(json!([nginx("nginx", "Always")]))},
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        })
    );
    let recreate = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    );
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn replica_set_daemon_set_and_stateful_set_defaults() {
    let rs = defaulted("apps", "ReplicaSet", json!({"spec": {}}));
    assert_eq!(rs["spec"], json!({"replicas": 1}));
    let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
    assert_eq!(
        ds["spec"],
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
               "revisionHistoryLimit": 10})
    );
    let sts = defaulted(
        "apps",
        "StatefulSet",
        json!({"spec": {"serviceName": "db"}}),
    );
    assert_eq!(
        sts["spec"],
        json!({"serviceName": "db", "podManagementPolicy": "OrderedReady",
               "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
               "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
               "replicas": 1, "revisionHistoryLimit": 10})
    );
}

#[test]
fn replication_controller_selector_and_labels_come_from_the_template() {
    let rc = defaulted(
        "",
        "ReplicationController",
        json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "a"}}, "spec": {}}}}),
    );
    assert_eq!(rc["spec"]["selector"], json!({"app": "a"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "a"}));
    assert_eq!(rc["spec"]["replicas"], 1);
}

#[test]
fn job_gets_counts_and_a_generated_selector() {
    let job = defaulted(
        "batch",
        "Job",
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}}}}),
    );
    let labels = json!({"controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1",
                        "job-name": "pi", "batch.kubernetes.io/job-name": "pi"});
    assert_eq!(job["metadata"]["labels"], labels);
    assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    for (k, v) in [
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", json!(false)),
    ] {
        assert_eq!(job["spec"][k], v, "{k}");
    }
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
    assert!(parallel["spec"].get("completions").is_none());
}

#[test]
fn cron_job_defaults_reach_the_pod_template() {
    let cj = defaulted(
        "batch",
        "CronJob",
        json!({"spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}}}),
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    let pod_spec = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod_spec["schedulerName"], "default-scheduler");
    assert_eq!(pod_spec["restartPolicy"], "OnFailure");
    assert!(
        cj["spec"]["jobTemplate"]["spec"]
            .get("backoffLimit")
            .is_none()
    );
}

#[test]
fn service_defaults() {
    let svc = defaulted(
        "",
        "Service",
        json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    );
    assert_eq!(
        svc["spec"],
        json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
               "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster",
               "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
    );
    let np = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}]}}),
    );
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(np["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(np["spec"]["ports"][0]["targetPort"], "http");
    let headless = defaulted("", "Service", json!({"spec": {"clusterIP": "None"}}));
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    let ext = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
    );
    assert!(ext["spec"].get("ipFamilies").is_none());
    assert!(ext["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn namespace_secret_and_node_defaults() {
    let ns = defaulted("", "Namespace", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"kubernetes.io/metadata.name": "team-a"})
    );
    // The `kubernetes` finalizer is the create strategy's, not a default: an update that
    // finalized the namespace must not get it back.
    assert!(ns["spec"].get("finalizers").is_none());
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    let secret = defaulted(
        "",
        "Secret",
        json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}}),
    );
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"], json!({"user": "YWRtaW4="}));
    assert!(secret.get("stringData").is_none());
    let node = defaulted(
        "",
        "Node",
        json!({"spec": {"podCIDR": "10.244.0.0/24"}, "status": {"capacity": {"cpu": "2"}}}),
    );
    assert_eq!(node["spec"]["podCIDRs"], json!(["10.244.0.0/24"]));
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "2"}));
}

#[test]
fn storage_kinds() {
    let pv = defaulted(
        "",
        "PersistentVolume",
        json!({"spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/data"}}}),
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pv["status"]["phase"], "Pending");
    let pvc = defaulted("", "PersistentVolumeClaim", json!({"spec": {}}));
    assert_eq!(
        pvc,
        json!({"spec": {"volumeMode": "Filesystem"}, "status": {"phase": "Pending"}})
    );
    let sc = defaulted(
        "storage.k8s.io",
        "StorageClass",
        json!({"provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
    );
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
}

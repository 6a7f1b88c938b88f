//! Each rule through the public entry points, on defaulted objects as the server validates them,
//! asserting the `field: message` lines kubectl shows.

use serde_json::{Value, json};

use crate::registry::find_kind;

fn prepare(group: &str, kind: &str, mut obj: Value) -> (&'static crate::ResourceInfo, Value) {
    let info = find_kind(group, kind).expect("registered kind");
    crate::defaults::apply(info, &mut obj);
    (info, obj)
}

fn create(group: &str, kind: &str, obj: Value) -> Vec<String> {
    let (info, obj) = prepare(group, kind, obj);
    super::validate_create(info, &obj)
        .iter()
        .map(|e| e.display())
        .collect()
}

fn update(group: &str, kind: &str, new: Value, old: Value) -> Vec<String> {
    let (info, new) = prepare(group, kind, new);
    let (_, old) = prepare(group, kind, old);
    super::validate_update(info, &new, &old)
        .iter()
        .map(|e| e.display())
        .collect()
}

fn pod(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn c(name: &str) -> Value {
    json!({"name": name, "image": "nginx:1.27"})
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn valid_objects_have_no_errors() {
    assert_eq!(
        create("", "Pod", pod(json!({"containers": [c("nginx")]}))),
        Vec::<String>::new()
    );
    let deploy = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c("nginx")]}}}});
    assert_eq!(create("apps", "Deployment", deploy), Vec::<String>::new());
}

#[test]
fn metadata_names_per_kind() {
    let bad = json!({"metadata": {"name": "Foo_1", "namespace": "default"}, "spec": {"containers": [c("a")]}});
    assert_eq!(
        create("", "Pod", bad),
        vec![format!(
            "metadata.name: Invalid value: \"Foo_1\": {SUBDOMAIN_MSG}"
        )]
    );
    assert_eq!(
        create(
            "",
            "ConfigMap",
            json!({"metadata": {"namespace": "default"}})
        ),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
    assert_eq!(
        create("", "ConfigMap", json!({"metadata": {"name": "x"}})),
        vec!["metadata.namespace: Required value"]
    );
    assert_eq!(
        create("", "Namespace", json!({"metadata": {"name": "a.b"}})),
        vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]
    );
    assert_eq!(
        create(
            "",
            "Node",
            json!({"metadata": {"name": "n1", "namespace": "default"}})
        ),
        vec!["metadata.namespace: Forbidden: not allowed on this type"]
    );
    let svc = create(
        "",
        "Service",
        json!({"metadata": {"name": "1svc", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}),
    );
    assert_eq!(svc.len(), 1);
    assert!(
        svc[0].starts_with("metadata.name: Invalid value: \"1svc\": a DNS-1035 label must consist"),
        "{svc:?}"
    );
    let role = find_kind("rbac.authorization.k8s.io", "ClusterRole").expect("clusterroles");
    let errs = super::validate_create(role, &json!({"metadata": {"name": "system:a/b"}}));
    assert_eq!(
        errs[0].display(),
        "metadata.name: Invalid value: \"system:a/b\": may not contain '/'"
    );
}

#[test]
fn labels_annotations_owners_and_finalizers() {
    let cm = |meta: Value| {
        let mut m = meta;
        m["name"] = json!("cm");
        m["namespace"] = json!("default");
        create("", "ConfigMap", json!({"metadata": m}))
    };
    assert_eq!(
        cm(json!({"labels": {"app": "-bad"}})),
        vec![
            "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ]
    );
    assert_eq!(
        cm(json!({"annotations": {"big": "x".repeat(256 * 1024)}})),
        vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
    assert_eq!(
        cm(
            json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": ""}]})
        ),
        vec!["metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty"]
    );
    assert_eq!(
        cm(json!({"finalizers": ["custom"]})),
        vec![
            "metadata.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"
        ]
    );
    assert_eq!(
        cm(json!({"finalizers": ["example.com/x", "kubernetes"]})),
        Vec::<String>::new()
    );
}

#[test]
fn metadata_identity_is_immutable_and_deleting_objects_gain_no_finalizers() {
    let old = json!({"metadata": {"name": "cm", "namespace": "default", "uid": "1",
                                  "deletionTimestamp": "2025-01-01T00:00:00Z"}});
    let mut new = old.clone();
    new["metadata"]["uid"] = json!("2");
    new["metadata"]["finalizers"] = json!(["example.com/f"]);
    assert_eq!(
        update("", "ConfigMap", new, old),
        vec![
            "metadata.uid: Invalid value: \"2\": field is immutable",
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/f\"}",
        ]
    );
}

#[test]
fn pod_container_rules() {
    assert_eq!(
        create("", "Pod", pod(json!({"containers": []}))),
        vec!["spec.containers: Required value"]
    );
    assert_eq!(
        create("", "Pod", pod(json!({"containers": [{"name": "a"}]}))),
        vec!["spec.containers[0].image: Required value"]
    );
    assert_eq!(
        create(
            "",
            "Pod",
            pod(json!({"initContainers": [c("a")], "containers": [c("a")]}))
        ),
        vec!["spec.initContainers[0].name: Duplicate value: \"a\""]
    );
    let mut ports = c("a");
    ports["ports"] =
        json!([{"containerPort": 70000, "name": "http"}, {"containerPort": 81, "name": "http"}]);
    assert_eq!(
        create("", "Pod", pod(json!({"containers": [ports]}))),
        vec![
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
        ]
    );
    assert_eq!(
        create(
            "",
            "Pod",
            pod(json!({"restartPolicy": "Sometimes", "containers": [c("a")]}))
        ),
        vec![
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        ]
    );
}

#[test]
fn pod_resources_volumes_and_env() {
    let mut res = c("a");
    res["resources"] = json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1", "gpu": "1"}});
    assert_eq!(
        create("", "Pod", pod(json!({"containers": [res]}))),
        vec![
            "spec.containers[0].resources.limits[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
            // Pod defaulting copied the limit into requests, so Kubernetes reports both.
            "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        ]
    );
    let mut bad_q = c("a");
    bad_q["resources"] = json!({"limits": {"memory": "1Gb"}});
    assert_eq!(
        create("", "Pod", pod(json!({"containers": [bad_q]})))[0],
        "spec.containers[0].resources.limits[memory]: Invalid value: \"1Gb\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );
    let mut mounts = c("a");
    mounts["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/d"}, {"name": "cfg", "mountPath": "/d"}]);
    mounts["env"] = json!([{"name": "A=B", "value": "x"}]);
    assert_eq!(
        create(
            "",
            "Pod",
            pod(
                json!({"volumes": [{"name": "cfg", "emptyDir": {}}, {"name": "cfg"}], "containers": [mounts]})
            )
        ),
        vec![
            "spec.volumes[1]: Required value: must specify a volume type",
            "spec.volumes[1].name: Duplicate value: \"cfg\"",
            "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique",
        ]
    );
}

#[test]
fn pod_updates_are_limited() {
    let old = pod(json!({"containers": [c("a")]}));
    let mut image = old.clone();
    image["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert_eq!(update("", "Pod", image, old.clone()), Vec::<String>::new());
    let mut port = old.clone();
    port["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let errs = update("", "Pod", port, old.clone());
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{errs:?}");
    assert!(
        errs[0]
            .contains("+ spec.containers[0].ports: [{\"containerPort\":80,\"protocol\":\"TCP\"}]"),
        "{errs:?}"
    );
    let mut more = old.clone();
    more["spec"]["containers"] = json!([c("a"), c("b")]);
    assert_eq!(
        update("", "Pod", more, old),
        vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );
}

#[test]
fn pod_updates_may_add_tolerations_and_remove_scheduling_gates() {
    let tol = |key: &str| json!({"key": key, "operator": "Exists", "effect": "NoSchedule"});
    let gate = |name: &str| json!({"name": name});
    let old = pod(json!({"containers": [c("a")], "tolerations": [tol("x")],
                         "schedulingGates": [gate("g"), gate("h")]}));
    let mut allowed = old.clone();
    allowed["spec"]["tolerations"] = json!([tol("x"), tol("y")]);
    allowed["spec"]["schedulingGates"] = json!([gate("h")]);
    assert_eq!(
        update("", "Pod", allowed, old.clone()),
        Vec::<String>::new()
    );
    let mut fewer_tolerations = old.clone();
    fewer_tolerations["spec"]["tolerations"] = json!([]);
    let errs = update("", "Pod", fewer_tolerations, old.clone());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("spec: Forbidden: pod updates"),
        "{errs:?}"
    );
    let mut more_gates = old.clone();
    more_gates["spec"]["schedulingGates"] = json!([gate("g"), gate("h"), gate("i")]);
    let errs = update("", "Pod", more_gates, old);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("spec: Forbidden: pod updates"),
        "{errs:?}"
    );
}

fn deployment(selector: Value, labels: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
        "selector": selector,
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [c("nginx")]}}}})
}

#[test]
fn deployment_rules() {
    assert_eq!(
        create(
            "apps",
            "Deployment",
            deployment(
                json!({"matchLabels": {"app": "web"}}),
                json!({"app": "api"})
            )
        ),
        vec![
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"
        ]
    );
    assert_eq!(
        create(
            "apps",
            "Deployment",
            deployment(json!({}), json!({"app": "api"}))
        ),
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        ]
    );
    let mut d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        create("apps", "Deployment", d),
        vec![
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
        ]
    );
    let mut no_sel = deployment(json!(null), json!({"app": "web"}));
    no_sel["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("selector");
    assert_eq!(
        create("apps", "Deployment", no_sel),
        vec!["spec.selector: Required value"]
    );
}

#[test]
fn workload_selectors_are_immutable() {
    let old = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web", "v": "2"}),
    );
    let new = deployment(
        json!({"matchLabels": {"app": "web", "v": "2"}}),
        json!({"app": "web", "v": "2"}),
    );
    assert_eq!(
        update("apps", "Deployment", new, old),
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        ]
    );
}

#[test]
fn stateful_set_and_daemon_set_rules() {
    let sts = |service: &str| {
        json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {
            "serviceName": service, "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [c("db")]}}}})
    };
    assert_eq!(
        create("apps", "StatefulSet", sts("db")),
        Vec::<String>::new()
    );
    let mut scaled = sts("db");
    scaled["spec"]["replicas"] = json!(3);
    assert_eq!(
        update("apps", "StatefulSet", scaled, sts("db")),
        Vec::<String>::new()
    );
    assert_eq!(
        update("apps", "StatefulSet", sts("other"), sts("db")),
        vec![
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
    // Mounts may name the volumes the claim templates give each pod, and only those.
    let mut claimed = sts("db");
    claimed["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}}]);
    claimed["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/data"}]);
    assert_eq!(
        create("apps", "StatefulSet", claimed.clone()),
        Vec::<String>::new()
    );
    claimed["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] =
        json!("other");
    assert_eq!(
        create("apps", "StatefulSet", claimed),
        vec!["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"other\""]
    );
    let mut ds = sts("x");
    ds["spec"]["selector"] = json!({"matchLabels": {}});
    assert_eq!(
        create("apps", "DaemonSet", ds),
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"
        ]
    );
}

#[test]
fn replication_controller_rules() {
    let rc = json!({"metadata": {"name": "rc", "namespace": "default"}, "spec": {
        "selector": {"app": "x"},
        "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [c("a")]}}}});
    assert_eq!(
        create("", "ReplicationController", rc),
        vec![
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`"
        ]
    );
}

fn job(restart: &str) -> Value {
    json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": {"template": {"spec": {
        "restartPolicy": restart, "containers": [c("pi")]}}}})
}

#[test]
fn job_rules() {
    assert_eq!(create("batch", "Job", job("Never")), Vec::<String>::new());
    assert_eq!(
        create(
            "batch",
            "Job",
            json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"containers": [c("pi")]}}}})
        ),
        vec![
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        ]
    );
    let mut changed = job("Never");
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5");
    let errs = update("batch", "Job", changed, job("Never"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("spec.template: Invalid value: {"),
        "{errs:?}"
    );
    assert!(errs[0].ends_with("}: field is immutable"), "{errs:?}");
}

#[test]
fn cron_job_schedules() {
    let cj = |schedule: &str| {
        json!({"metadata": {"name": "tick", "namespace": "default"}, "spec": {"schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [c("a")]}}}}}})
    };
    assert_eq!(
        create("batch", "CronJob", cj("*/5 * * * 1-5")),
        Vec::<String>::new()
    );
    assert_eq!(
        create("batch", "CronJob", cj("@hourly")),
        Vec::<String>::new()
    );
    assert_eq!(
        create("batch", "CronJob", cj("bad")),
        vec!["spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"]
    );
    assert_eq!(
        create("batch", "CronJob", cj("61 * * * *")),
        vec![
            "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"
        ]
    );
    assert_eq!(
        create("batch", "CronJob", cj("* * * JAN-DEC sun")),
        Vec::<String>::new()
    );
    assert_eq!(
        create("batch", "CronJob", cj("x * * * *")),
        vec![
            "spec.schedule: Invalid value: \"x * * * *\": failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        ]
    );
    let mut long = cj("@daily");
    long["metadata"]["name"] = json!("a".repeat(53));
    assert_eq!(create("batch", "CronJob", long).len(), 1);
}

fn svc(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn service_rules() {
    assert_eq!(
        create("", "Service", svc(json!({"ports": [{"port": 80}]}))),
        Vec::<String>::new()
    );
    assert_eq!(
        create("", "Service", svc(json!({}))),
        vec!["spec.ports: Required value"]
    );
    assert_eq!(
        create(
            "",
            "Service",
            svc(
                json!({"type": "Magic", "ports": [{"port": 0, "name": "a"}, {"port": 0, "nodePort": 30000}]})
            )
        ),
        vec![
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].name: Required value",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:0, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
        ]
    );
    assert_eq!(
        create(
            "",
            "Service",
            svc(json!({"ports": [{"port": 80, "nodePort": 30080}]}))
        ),
        vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
    let old = svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
    let new = svc(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}));
    assert_eq!(
        update("", "Service", new, old),
        vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"
        ]
    );
}

fn cm(extra: Value) -> Value {
    let mut o = json!({"metadata": {"name": "cfg", "namespace": "default"}});
    for (k, v) in extra.as_object().expect("object") {
        o[k.as_str()] = v.clone();
    }
    o
}

#[test]
fn config_map_and_secret_rules() {
    assert_eq!(
        create("", "ConfigMap", cm(json!({"data": {"a b": "x"}}))),
        vec![
            "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        ]
    );
    assert_eq!(
        create(
            "",
            "ConfigMap",
            cm(json!({"data": {"big": "x".repeat(1024 * 1024 + 1)}}))
        ),
        vec![": Too long: may not be more than 1048576 bytes"]
    );
    let frozen = cm(json!({"immutable": true, "data": {"a": "1"}}));
    assert_eq!(
        update(
            "",
            "ConfigMap",
            cm(json!({"immutable": true, "data": {"a": "2"}})),
            frozen
        ),
        vec!["data: Forbidden: field is immutable when `immutable` is set"]
    );
    assert_eq!(
        create(
            "",
            "Secret",
            cm(json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}))
        ),
        vec!["data[tls.key]: Required value"]
    );
    assert_eq!(
        update(
            "",
            "Secret",
            cm(json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})),
            cm(json!({}))
        ),
        vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
    );
}

#[test]
fn namespace_and_node_rules() {
    assert_eq!(
        create(
            "",
            "Namespace",
            json!({"metadata": {"name": "ok"}, "spec": {"finalizers": ["bad"]}})
        ),
        vec![
            "spec.finalizers: Invalid value: \"bad\": name is neither a standard finalizer name nor is it fully qualified"
        ]
    );
    let node = |cidr: &str| json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": cidr, "taints": [{"key": "k", "effect": "Sometimes"}]}});
    assert_eq!(
        create("", "Node", node("10.0.0.0/33")),
        vec![
            "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            "spec.podCIDRs[0]: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ]
    );
    let ok = |cidr: &str| json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": cidr}});
    assert_eq!(
        update("", "Node", ok("10.0.1.0/24"), ok("10.0.0.0/24")),
        vec![
            "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
        ]
    );
}

//! Pod and pod-template defaults: `SetDefaults_PodSpec`, `SetDefaults_Container` and friends,
//! plus, for Pods only, `SetDefaults_Pod`, the ServiceAccount / Priority /
//! DefaultTolerationSeconds admission plugins and the initial status.

use serde_json::{Value, json};

use super::{child, default, each};

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

pub fn pod(obj: &mut Value) {
    let spec = child(obj, "spec");
    pod_spec(spec);
    for list in ["containers", "initContainers"] {
        for c in each(spec, list) {
            requests_from_limits(c);
        }
    }
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "serviceAccountName", json!("default"));
    let sa = spec["serviceAccountName"].clone();
    default(spec, "serviceAccount", sa);
    let priority = match spec.get("priorityClassName").and_then(Value::as_str) {
        Some("system-node-critical") => 2_000_001_000,
        Some("system-cluster-critical") => 2_000_000_000,
        _ => 0,
    };
    default(spec, "priority", json!(priority));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    default_tolerations(spec);
    let qos = qos_class(spec);
    let status = child(obj, "status");
    default(status, "phase", json!("Pending"));
    default(status, "qosClass", json!(qos));
}

/// The template of a workload: pod-spec defaults only (no admission plugins, no status).
pub fn template(template: &mut Value) {
    pod_spec(child(template, "spec"));
}

fn pod_spec(spec: &mut Value) {
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["containers", "initContainers"] {
        for c in each(spec, list) {
            container(c, host_network);
        }
    }
    for v in each(spec, "volumes") {
        volume(v);
    }
}

fn container(c: &mut Value, host_network: bool) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    let policy = if image_tag(image) == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    default(c, "imagePullPolicy", json!(policy));
    default(c, "resources", json!({}));
    for p in each(c, "ports") {
        default(p, "protocol", json!("TCP"));
        if host_network && p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
            let port = p.get("containerPort").cloned().unwrap_or(Value::Null);
            if let Some(m) = p.as_object_mut() {
                m.insert("hostPort".into(), port);
            }
        }
    }
    for e in each(c, "env") {
        if let Some(field_ref) = e.pointer_mut("/valueFrom/fieldRef") {
            default(field_ref, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            http_get(p);
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = c.pointer_mut(&format!("/lifecycle/{hook}")) {
            http_get(h);
        }
    }
}

fn http_get(handler: &mut Value) {
    if let Some(h) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        default(h, "path", json!("/"));
        default(h, "scheme", json!("HTTP"));
    }
}

/// The tag as Kubernetes' `parsers.ParseImageName` reads it: `latest` when neither a tag nor a
/// digest is given, none when only a digest is.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    match last_segment.rsplit_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest => None,
        None => Some("latest"),
    }
}

fn volume(v: &mut Value) {
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).filter(|s| s.is_object()) {
            default(s, "defaultMode", json!(420));
            for item in each(s, "items") {
                if let Some(f) = item.get_mut("fieldRef").filter(|f| f.is_object()) {
                    default(f, "apiVersion", json!("v1"));
                }
            }
        }
    }
    if let Some(h) = v.get_mut("hostPath").filter(|h| h.is_object()) {
        default(h, "type", json!(""));
    }
}

/// `SetDefaults_Pod`: a limit without a request requests as much as it limits.
fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let resources = child(c, "resources");
    let requests = child(resources, "requests");
    for (name, q) in limits {
        default(requests, &name, q);
    }
}

/// DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for 300 s, unless the pod
/// already says how.
fn default_tolerations(spec: &mut Value) {
    let tols = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        tols.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let e = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let mut add = Vec::new();
    for key in [NOT_READY, UNREACHABLE] {
        if !tolerates(key) {
            add.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if add.is_empty() {
        return;
    }
    if let Some(m) = spec.as_object_mut() {
        let mut all = tols;
        all.extend(add);
        m.insert("tolerations".into(), Value::Array(all));
    }
}

/// The pod's QoS class from its containers' cpu and memory requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for list in ["containers", "initContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let get = |kind: &str, res: &str| {
                c.pointer(&format!("/resources/{kind}/{res}"))
                    .and_then(|q| match q {
                        Value::String(s) => s.parse::<crate::quantity::Quantity>().ok(),
                        other => other.to_string().parse().ok(),
                    })
                    .filter(|q| !q.is_zero())
            };
            for res in ["cpu", "memory"] {
                let (req, lim) = (get("requests", res), get("limits", res));
                any |= req.is_some() || lim.is_some();
                if lim.is_none() || (req.is_some() && req != lim) {
                    guaranteed = false;
                }
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

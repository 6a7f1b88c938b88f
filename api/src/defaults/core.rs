//! Defaults of core kinds other than pods: Service (`SetDefaults_Service` plus the IP family
//! fields the Service registry fills on a single-stack IPv4 cluster), Secret (type, and
//! `stringData` folded into `data` as the v1 conversion does), Namespace and Node.

use base64::Engine;
use serde_json::{Value, json};

use super::{child, default, each};

pub fn service(obj: &mut Value) {
    default(child(obj, "status"), "loadBalancer", json!({}));
    let spec = child(obj, "spec");
    default(spec, "sessionAffinity", json!("None"));
    if spec["sessionAffinity"] == "ClientIP" {
        let timeout = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds");
        if timeout.is_none_or(Value::is_null) {
            spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
        }
    }
    default(spec, "type", json!("ClusterIP"));
    for p in each(spec, "ports") {
        default(p, "protocol", json!("TCP"));
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset {
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            p["targetPort"] = port;
        }
    }
    let svc_type = spec["type"].as_str().unwrap_or_default().to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible = svc_type == "NodePort"
        || svc_type == "LoadBalancer"
        || (svc_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ["ClusterIP", "NodePort", "LoadBalancer"].contains(&svc_type.as_str()) {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type == "ExternalName" {
        return;
    }
    if let Some(ip) = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
    {
        let ips = json!([ip]);
        default(spec, "clusterIPs", ips);
    }
    // A headless Service without a selector may front endpoints of either family.
    let headless = spec["clusterIP"] == "None";
    let selectorless = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty());
    let policy = if headless && selectorless {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    default(spec, "ipFamilyPolicy", json!(policy));
    if spec
        .get("ipFamilies")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
    {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
}

pub fn secret(obj: &mut Value) {
    default(obj, "type", json!("Opaque"));
    let Some(string_data) = obj
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
    else {
        return;
    };
    let data = child(obj, "data");
    for (k, v) in string_data {
        let text = v.as_str().unwrap_or_default();
        data[k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

pub fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let labels = child(child(obj, "metadata"), "labels");
    labels["kubernetes.io/metadata.name"] = name;
    default(child(obj, "status"), "phase", json!("Active"));
}

pub fn node(obj: &mut Value) {
    let spec = child(obj, "spec");
    if let Some(cidr) = spec
        .get("podCIDR")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        let cidrs = json!([cidr]);
        if spec
            .get("podCIDRs")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
        {
            spec["podCIDRs"] = cidrs;
        }
    }
    if let Some(capacity) = obj.pointer("/status/capacity").cloned() {
        default(child(obj, "status"), "allocatable", capacity);
    }
}

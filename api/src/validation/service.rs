//! Services (`ValidateService`, `ValidateServiceUpdate`): ports, type, session affinity,
//! ExternalName, cluster IPs and their immutability. The API server allocates clusterIP and
//! nodePort (and their ranges); this module only checks what the user wrote.

use std::net::IpAddr;

use serde_json::Value;

use super::container::{one_of, port_in_range, port_num_or_name, port_protocol};
use super::meta::validate_labels;
use super::{get_str, invalid_each, invalid_rendered, items, names, unique_name};
use crate::status::FieldError;

pub fn validate(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    let ports = items(spec, "ports");
    let svc_type = get_str(spec, "type").unwrap_or_default();
    let headless = get_str(spec, "clusterIP") == Some("None");
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(FieldError::required("spec.ports"));
    }
    if svc_type == "ExternalName" {
        for key in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let set = match spec.get(key) {
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Null) | None => false,
                Some(_) => true,
            };
            if set {
                errs.push(FieldError::forbidden(
                    format!("spec.{key}"),
                    "may not be set for ExternalName services",
                ));
            }
        }
        let cname = get_str(spec, "externalName").unwrap_or_default();
        let cname = cname.strip_suffix('.').unwrap_or(cname);
        if cname.is_empty() {
            errs.push(FieldError::required("spec.externalName"));
        } else {
            invalid_each(
                errs,
                "spec.externalName",
                cname,
                names::dns1123_subdomain(cname),
            );
        }
    }
    let mut port_names: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        match get_str(port, "name").unwrap_or_default() {
            "" if ports.len() > 1 => errs.push(FieldError::required(format!("{p}.name"))),
            "" => {}
            name => {
                invalid_each(errs, &format!("{p}.name"), name, names::dns1123_label(name));
                unique_name(errs, &p, name, &mut port_names);
            }
        }
        port_in_range(errs, &format!("{p}.port"), int(port, "port"));
        port_protocol(errs, port, &p);
        port_num_or_name(errs, &format!("{p}.targetPort"), port.get("targetPort"));
    }
    validate_labels(spec.get("selector"), "spec.selector", errs);
    one_of(
        errs,
        spec,
        "sessionAffinity",
        "spec.sessionAffinity",
        &["ClientIP", "None"],
        "",
    );
    one_of(
        errs,
        spec,
        "type",
        "spec.type",
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        "",
    );
    if svc_type == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int(port, "nodePort") != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports: Vec<(&str, i64)> = Vec::new();
    let mut seen: Vec<(&str, i64)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = get_str(port, "protocol").unwrap_or_default();
        let node_port = int(port, "nodePort");
        if node_port != 0 {
            if node_ports.contains(&(protocol, node_port)) {
                errs.push(FieldError::duplicate(
                    format!("spec.ports[{i}].nodePort"),
                    &Value::from(node_port),
                ));
            }
            node_ports.push((protocol, node_port));
        }
        let key = (protocol, int(port, "port"));
        if seen.contains(&key) {
            // Go prints the map key, a ServicePort holding only protocol and port.
            errs.push(FieldError::new(
                crate::status::CauseType::FieldValueDuplicate,
                format!("spec.ports[{i}]"),
                format!(
                    "Duplicate value: core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    key.1
                ),
            ));
        }
        seen.push(key);
    }
    validate_cluster_ips(spec, errs);
    for (key, values) in [
        ("externalTrafficPolicy", &["Cluster", "Local"][..]),
        ("internalTrafficPolicy", &["Cluster", "Local"][..]),
        (
            "ipFamilyPolicy",
            &["SingleStack", "PreferDualStack", "RequireDualStack"][..],
        ),
    ] {
        if spec.get(key).is_some_and(|v| !v.is_null()) {
            one_of(errs, spec, key, &format!("spec.{key}"), values, "");
        }
    }
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn validate_cluster_ips(spec: &Value, errs: &mut Vec<FieldError>) {
    let ips: Vec<&str> = items(spec, "clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let cluster_ip = get_str(spec, "clusterIP").unwrap_or_default();
    if !cluster_ip.is_empty() && !ips.is_empty() && ips[0] != cluster_ip {
        errs.push(invalid_rendered(
            "spec.clusterIPs",
            &go_strings(&ips),
            "first value must match `clusterIP`",
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        if *ip == "None" || ip.is_empty() {
            continue;
        }
        if ip.parse::<IpAddr>().is_err() {
            invalid_each(
                errs,
                &format!("spec.clusterIPs[{i}]"),
                ip,
                vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
            );
        }
    }
}

fn go_strings(v: &[&str]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", q.join(", "))
}

/// The primary cluster IP may not change once allocated, except to or from ExternalName.
pub fn validate_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let (ns, os) = (
        new.get("spec").unwrap_or(&empty),
        old.get("spec").unwrap_or(&empty),
    );
    if [ns, os]
        .iter()
        .any(|s| get_str(s, "type") == Some("ExternalName"))
    {
        return;
    }
    let old_ip = get_str(os, "clusterIP").unwrap_or_default();
    let new_ip = get_str(ns, "clusterIP").unwrap_or_default();
    if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
        let ips: Vec<&str> = items(ns, "clusterIPs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let ips = if ips.is_empty() { vec![new_ip] } else { ips };
        errs.push(invalid_rendered(
            "spec.clusterIPs[0]",
            &go_strings(&ips),
            "may not change once set",
        ));
    }
}

//! Containers of a pod spec (`validateContainers`, `validateInitContainers`): names, images,
//! ports, env, volume mounts, pull and termination-message policies, resources and probes.

use serde_json::Value;

use super::names;
use super::{
    dns_label_name, get_str, invalid_each, items, nonnegative, not_found, object, required,
    unique_name,
};
use crate::quantity::Quantity;
use crate::status::FieldError;

/// Regular containers then init containers; names are unique across both lists.
pub fn validate_all(spec: &Value, path: &str, volumes: &[&str], errs: &mut Vec<FieldError>) {
    let containers = items(spec, "containers");
    let mut seen: Vec<&str> = Vec::new();
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers")));
    }
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        validate_container(c, &p, volumes, errs);
        unique_name(errs, &p, get_str(c, "name").unwrap_or_default(), &mut seen);
        validate_probes(c, &p, errs);
    }
    for (i, c) in items(spec, "initContainers").iter().enumerate() {
        let p = format!("{path}.initContainers[{i}]");
        validate_container(c, &p, volumes, errs);
        unique_name(errs, &p, get_str(c, "name").unwrap_or_default(), &mut seen);
        let sidecar = get_str(c, "restartPolicy") == Some("Always");
        if let Some(policy) = get_str(c, "restartPolicy").filter(|p| *p != "Always") {
            errs.push(FieldError::not_supported(
                format!("{p}.restartPolicy"),
                &Value::String(policy.into()),
                &["Always"],
            ));
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if c.get(probe).is_some() && !sidecar {
                errs.push(FieldError::forbidden(
                    format!("{p}.{probe}"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
        if sidecar {
            validate_probes(c, &p, errs);
        }
    }
}

fn validate_container(c: &Value, path: &str, volumes: &[&str], errs: &mut Vec<FieldError>) {
    dns_label_name(errs, path, get_str(c, "name").unwrap_or_default());
    match get_str(c, "image").unwrap_or_default() {
        "" => errs.push(FieldError::required(format!("{path}.image"))),
        image if image.trim() != image => invalid_each(
            errs,
            &format!("{path}.image"),
            image,
            vec!["must not have leading or trailing whitespace".into()],
        ),
        _ => {}
    }
    validate_ports(items(c, "ports"), &format!("{path}.ports"), errs);
    validate_env(items(c, "env"), &format!("{path}.env"), errs);
    validate_mounts(
        items(c, "volumeMounts"),
        &format!("{path}.volumeMounts"),
        volumes,
        errs,
    );
    one_of(
        errs,
        c,
        "imagePullPolicy",
        &format!("{path}.imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
        "",
    );
    if let Some(res) = c.get("resources") {
        validate_resources(res, &format!("{path}.resources"), errs);
    }
    one_of(
        errs,
        c,
        "terminationMessagePolicy",
        &format!("{path}.terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        "must be 'File' or 'FallbackToLogsOnError'",
    );
}

/// A required enum: `Required value` when empty, `Unsupported value` when unknown.
pub fn one_of(
    errs: &mut Vec<FieldError>,
    v: &Value,
    key: &str,
    path: &str,
    supported: &[&str],
    required_detail: &str,
) {
    match get_str(v, key).unwrap_or_default() {
        "" => errs.push(required(path, required_detail)),
        s if supported.contains(&s) => {}
        s => errs.push(FieldError::not_supported(
            path,
            &Value::String(s.into()),
            supported,
        )),
    }
}

fn validate_ports(ports: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(name) = get_str(port, "name").filter(|n| !n.is_empty()) {
            let msgs = names::port_name(name);
            if !msgs.is_empty() {
                invalid_each(errs, &format!("{p}.name"), name, msgs);
            } else {
                unique_name(errs, &p, name, &mut seen);
            }
        }
        match port
            .get("containerPort")
            .and_then(Value::as_i64)
            .unwrap_or(0)
        {
            0 => errs.push(FieldError::required(format!("{p}.containerPort"))),
            n => port_in_range(errs, &format!("{p}.containerPort"), n),
        }
        if let Some(n) = port
            .get("hostPort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            port_in_range(errs, &format!("{p}.hostPort"), n);
        }
        port_protocol(errs, port, &p);
    }
}

/// A container or service port's `protocol` at `{path}.protocol`.
pub fn port_protocol(errs: &mut Vec<FieldError>, port: &Value, path: &str) {
    one_of(
        errs,
        port,
        "protocol",
        &format!("{path}.protocol"),
        &["SCTP", "TCP", "UDP"],
        "",
    );
}

pub fn port_in_range(errs: &mut Vec<FieldError>, path: &str, n: i64) {
    for m in names::port_num(n) {
        errs.push(FieldError::invalid(path, &Value::from(n), m));
    }
}

/// An int-or-string port: a number in range or a valid port name.
pub fn port_num_or_name(errs: &mut Vec<FieldError>, path: &str, port: Option<&Value>) {
    match port {
        Some(Value::Number(n)) => port_in_range(errs, path, n.as_i64().unwrap_or(0)),
        Some(Value::String(s)) => invalid_each(errs, path, s, names::port_name(s)),
        _ => {}
    }
}

fn validate_env(env: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    for (i, e) in env.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = get_str(e, "name").unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name")));
        }
        invalid_each(errs, &format!("{p}.name"), name, names::env_var_name(name));
        let Some(from) = e.get("valueFrom") else {
            continue;
        };
        let vp = format!("{p}.valueFrom");
        let sources = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
            "fileKeyRef",
        ]
        .iter()
        .filter(|k| from.get(**k).is_some())
        .count();
        let empty = Value::String(String::new());
        match sources {
            0 => errs.push(FieldError::invalid(
                &vp,
                &empty,
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )),
            1 => {}
            _ => errs.push(FieldError::invalid(
                &vp,
                &empty,
                "may not have more than one field specified at a time",
            )),
        }
        if sources != 0 && !get_str(e, "value").unwrap_or_default().is_empty() {
            errs.push(FieldError::invalid(
                &vp,
                &empty,
                "may not be specified when `value` is not empty",
            ));
        }
        for key_ref in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = from.get(key_ref)
                && get_str(r, "key").unwrap_or_default().is_empty()
            {
                errs.push(FieldError::required(format!("{vp}.{key_ref}.key")));
            }
        }
    }
}

fn validate_mounts(mounts: &[Value], path: &str, volumes: &[&str], errs: &mut Vec<FieldError>) {
    let mut points: Vec<&str> = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = get_str(m, "name").unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name")));
        }
        if !volumes.contains(&name) {
            errs.push(not_found(format!("{p}.name"), name));
        }
        let mount_path = get_str(m, "mountPath").unwrap_or_default();
        if mount_path.is_empty() {
            errs.push(FieldError::required(format!("{p}.mountPath")));
        }
        if points.contains(&mount_path) {
            invalid_each(
                errs,
                &format!("{p}.mountPath"),
                mount_path,
                vec!["must be unique".into()],
            );
        }
        points.push(mount_path);
    }
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Overcommit is allowed for native resources only; extended ones need requests == limits.
fn overcommit_allowed(name: &str) -> bool {
    !name.contains('/') || name.starts_with("kubernetes.io/") || name.contains(".kubernetes.io/")
}

fn validate_resources(res: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let limits = parse_list(object(res, "limits"), &format!("{path}.limits"), errs);
    let requests = parse_list(object(res, "requests"), &format!("{path}.requests"), errs);
    for (name, req) in &requests {
        let Some(lim) = limits.iter().find(|(n, _)| n == name).map(|(_, q)| q) else {
            if !overcommit_allowed(name) {
                errs.push(required(
                    format!("{path}.limits"),
                    "Limit must be set for non overcommitable resources",
                ));
            }
            continue;
        };
        let req_value = Value::String(req.to_string());
        if req != lim && !overcommit_allowed(name) {
            errs.push(FieldError::invalid(
                format!("{path}.requests"),
                &req_value,
                format!("must be equal to {name} limit of {lim}"),
            ));
        } else if req > lim {
            errs.push(FieldError::invalid(
                format!("{path}.requests"),
                &req_value,
                format!("must be less than or equal to {name} limit of {lim}"),
            ));
        }
    }
}

/// Checks names and values of a `ResourceList`, returning the valid entries.
fn parse_list<'a>(
    list: Option<&'a serde_json::Map<String, Value>>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<(&'a str, Quantity)> {
    let mut out = Vec::new();
    for (name, value) in list.into_iter().flatten() {
        let p = format!("{path}[{name}]");
        if !name.contains('/') {
            if !is_standard_container_resource(name) {
                invalid_each(
                    errs,
                    &p,
                    name,
                    vec!["must be a standard resource for containers".into()],
                );
                continue;
            }
        } else {
            invalid_each(errs, &p, name, names::qualified_name(name));
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match text.parse::<Quantity>() {
            Err(e) => invalid_each(errs, &p, &text, vec![e.to_string()]),
            Ok(q) if q.is_negative() => invalid_each(
                errs,
                &p,
                &q.to_string(),
                vec!["must be greater than or equal to 0".into()],
            ),
            Ok(q) => out.push((name.as_str(), q)),
        }
    }
    out
}

fn validate_probes(c: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = c.get(kind) else { continue };
        let p = format!("{path}.{kind}");
        validate_handler(probe, &p, errs);
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            nonnegative(errs, probe, field, &format!("{p}.{field}"));
        }
        if kind != "readinessProbe"
            && let Some(n) = probe.get("successThreshold").and_then(Value::as_i64)
            && n != 1
        {
            errs.push(FieldError::invalid(
                format!("{p}.successThreshold"),
                &Value::from(n),
                "must be 1",
            ));
        }
    }
}

/// A probe or lifecycle handler names exactly one action.
pub fn validate_handler(h: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let present: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc", "sleep"]
        .into_iter()
        .filter(|k| h.get(*k).is_some())
        .collect();
    match present.as_slice() {
        [] => errs.push(required(path, "must specify a handler type")),
        [_, rest @ ..] => {
            for extra in rest {
                errs.push(FieldError::forbidden(
                    format!("{path}.{extra}"),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    if let Some(http) = h.get("httpGet") {
        port_num_or_name(errs, &format!("{path}.httpGet.port"), http.get("port"));
        if get_str(http, "path").unwrap_or_default().is_empty() {
            errs.push(FieldError::required(format!("{path}.httpGet.path")));
        }
        if let Some(scheme) = get_str(http, "scheme").filter(|s| !["HTTP", "HTTPS"].contains(s)) {
            errs.push(FieldError::not_supported(
                format!("{path}.httpGet.scheme"),
                &Value::String(scheme.into()),
                &["HTTP", "HTTPS"],
            ));
        }
    }
    if let Some(tcp) = h.get("tcpSocket") {
        port_num_or_name(errs, &format!("{path}.tcpSocket.port"), tcp.get("port"));
    }
}

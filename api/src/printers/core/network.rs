//! The Service and Endpoints printers: TYPE, CLUSTER-IP, EXTERNAL-IP (`<none>`, `<pending>`,
//! load-balancer ingress points) and PORT(S) (`80/TCP`, `80:30080/TCP`), and up to three
//! endpoint addresses, after `printService` and `printEndpoints` in Kubernetes' `printers.go`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::super::format::{age, arr_at, format_labels, int_at, name, or_none, str_at};
use super::super::{AGE, Doc, NAME, Printer, col, wide};

pub(super) const SERVICE: Printer = Printer::new(
    &[
        NAME,
        col(
            "Type",
            "string",
            Doc::Field("io.k8s.api.core.v1.ServiceSpec", "type"),
        ),
        col(
            "Cluster-IP",
            "string",
            Doc::Field("io.k8s.api.core.v1.ServiceSpec", "clusterIP"),
        ),
        col(
            "External-IP",
            "string",
            Doc::Field("io.k8s.api.core.v1.ServiceSpec", "externalIPs"),
        ),
        col(
            "Port(s)",
            "string",
            Doc::Field("io.k8s.api.core.v1.ServiceSpec", "ports"),
        ),
        AGE,
        wide(
            "Selector",
            "string",
            Doc::Field("io.k8s.api.core.v1.ServiceSpec", "selector"),
        ),
    ],
    service_cells,
);

/// Load-balancer ingress points, IP else hostname, sorted and de-duplicated. Not clipped: the
/// server prints wide rows.
pub(in crate::printers) fn load_balancer_addresses(ingress: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = ingress
        .iter()
        .filter_map(|i| match (str_at(i, "/ip"), str_at(i, "/hostname")) {
            ("", "") => None,
            ("", host) => Some(host.to_string()),
            (ip, _) => Some(ip.to_string()),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = arr_at(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match str_at(svc, "/spec/type") {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let mut all = load_balancer_addresses(arr_at(svc, "/status/loadBalancer/ingress"));
            if all.is_empty() && external.is_empty() {
                return "<pending>".to_string();
            }
            all.extend(external.iter().map(|s| s.to_string()));
            all.join(",")
        }
        "ExternalName" => str_at(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = arr_at(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let (port, proto) = (int_at(p, "/port"), str_at(p, "/protocol"));
            match int_at(p, "/nodePort") {
                n if n > 0 => format!("{port}:{n}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    vec![
        name(svc),
        str_at(svc, "/spec/type").into(),
        or_none(str_at(svc, "/spec/clusterIPs/0")),
        service_external_ip(svc).into(),
        or_none(&ports.join(",")),
        age(svc, now),
        format_labels(svc.pointer("/spec/selector").unwrap_or(&Value::Null)).into(),
    ]
}

pub(super) const ENDPOINTS: Printer = Printer::new(
    &[
        NAME,
        col(
            "Endpoints",
            "string",
            Doc::Field("io.k8s.api.core.v1.Endpoints", "subsets"),
        ),
        AGE,
    ],
    |ep, now| vec![name(ep), format_endpoints(ep).into(), age(ep, now)],
);

/// `formatEndpoints`: up to three `ip:port` pairs, then ` + N more...`.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr_at(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addresses = arr_at(ss, "/addresses");
        let ports = arr_at(ss, "/ports");
        // Headless services may have no ports: list bare addresses.
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(int_at(p, "/port"))).collect()
        };
        for port in port_numbers {
            count += addresses.len();
            for a in addresses.iter().take(MAX.saturating_sub(list.len())) {
                let ip = str_at(a, "/ip");
                list.push(match port {
                    None => ip.to_string(),
                    Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                    Some(p) => format!("{ip}:{p}"),
                });
            }
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

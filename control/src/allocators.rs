//! Service address allocation: a ClusterIP from the service CIDR (10.96.0.0/12, the first address
//! kept for the `kubernetes` Service) and NodePorts from 30000-32767, each unique in the cluster.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{Value, json};
use skiff_api::{ApiError, FieldError, ResourceInfo, registry};

use crate::apiserver::ApiServer;
use crate::store::Store;

pub const SERVICE_CIDR_BASE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 0);
const SERVICE_CIDR_BITS: u32 = 12;
/// The `kubernetes` Service's address: the first of the range, as in Kubernetes.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

struct InUse {
    ips: HashSet<String>,
    node_ports: HashSet<u64>,
}

async fn in_use<S: Store>(api: &ApiServer<S>, services: &ResourceInfo) -> Result<InUse, ApiError> {
    let page = api
        .store
        .list(&services.key_prefix(), None, 0, None)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut used = InUse {
        ips: HashSet::new(),
        node_ports: HashSet::new(),
    };
    for kv in page.items {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        if let Some(ip) = svc["spec"]["clusterIP"].as_str() {
            used.ips.insert(ip.to_string());
        }
        for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = port["nodePort"].as_u64() {
                used.node_ports.insert(n);
            }
        }
    }
    Ok(used)
}

fn in_range(ip: &str) -> bool {
    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
        return false;
    };
    let mask = u32::MAX << (32 - SERVICE_CIDR_BITS);
    u32::from(ip) & mask == u32::from(SERVICE_CIDR_BASE)
}

/// Fills `spec.clusterIP(s)` and NodePorts of a new Service, checking requested ones are free.
pub async fn allocate_service<S: Store>(
    api: &ApiServer<S>,
    svc: &mut Value,
) -> Result<(), ApiError> {
    let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let services = registry::find("", "v1", "services")
        .ok_or_else(|| ApiError::internal("no services resource"))?;
    let r = services.object_ref(&name);
    let used = in_use(api, services).await?;
    let kind = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if kind != "ExternalName" {
        match svc["spec"]["clusterIP"].as_str().unwrap_or("") {
            "" => {
                let mut rng = rand::rng();
                let size = 1u32 << (32 - SERVICE_CIDR_BITS);
                let ip = loop {
                    // Offsets 0 and 1 are the network and the `kubernetes` Service; the last is broadcast.
                    let candidate = Ipv4Addr::from(
                        u32::from(SERVICE_CIDR_BASE) + rng.random_range(2..size - 1),
                    )
                    .to_string();
                    if !used.ips.contains(&candidate) {
                        break candidate;
                    }
                };
                svc["spec"]["clusterIP"] = json!(ip);
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
            "None" => {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
            requested => {
                if !in_range(requested) {
                    return Err(ApiError::invalid(
                        &r,
                        vec![FieldError::invalid(
                            "spec.clusterIPs",
                            &json!([requested]),
                            "failed to allocate IP: the provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12",
                        )],
                    ));
                }
                if used.ips.contains(requested) {
                    return Err(ApiError::invalid(
                        &r,
                        vec![FieldError::invalid(
                            "spec.clusterIPs",
                            &json!([requested]),
                            format!(
                                "failed to allocate IP {requested}: provided IP is already allocated"
                            ),
                        )],
                    ));
                }
                svc["spec"]["clusterIPs"] = json!([requested]);
            }
        }
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        let mut taken = used.node_ports;
        let mut rng = rand::rng();
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for (i, port) in ports.iter_mut().enumerate() {
                match port["nodePort"].as_u64() {
                    Some(n) if taken.contains(&n) => {
                        return Err(ApiError::invalid(
                            &r,
                            vec![FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                &json!(n),
                                "provided port is already allocated",
                            )],
                        ));
                    }
                    Some(n) => {
                        taken.insert(n);
                    }
                    None => {
                        if taken.len() >= NODE_PORTS.len() {
                            return Err(ApiError::internal(
                                "failed to allocate a nodePort: range is full",
                            ));
                        }
                        let n = loop {
                            let n = u64::from(rng.random_range(NODE_PORTS));
                            if !taken.contains(&n) {
                                break n;
                            }
                        };
                        taken.insert(n);
                        port["nodePort"] = json!(n);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_range_is_10_96_slash_12() {
        assert!(in_range("10.96.0.10"));
        assert!(in_range("10.111.255.254"));
        assert!(!in_range("10.112.0.1"));
        assert!(!in_range("192.168.0.1"));
    }
}

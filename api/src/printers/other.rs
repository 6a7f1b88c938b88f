//! Printers of the smaller groups: `coordination.k8s.io` leases, `discovery.k8s.io` endpoint
//! slices, `node.k8s.io` runtime classes, `networking.k8s.io` ingresses, ingress classes and
//! network policies, `rbac.authorization.k8s.io` role bindings and `storage.k8s.io` storage
//! classes. Roles, cluster roles and
//! CRDs have no printer in Kubernetes either: they fall back to the default convertor.

use serde_json::Value;

use super::core::load_balancer_addresses;
use super::format::{age, arr_at, format_label_selector, list_with_more, name, str_at};
use super::{AGE, Doc, NAME, Printer, col, wide};

pub(super) fn printer(group: &str, kind: &str) -> Option<&'static Printer> {
    Some(match (group, kind) {
        ("coordination.k8s.io", "Lease") => &LEASE,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        ("node.k8s.io", "RuntimeClass") => &RUNTIME_CLASS,
        ("networking.k8s.io", "Ingress") => &INGRESS,
        ("networking.k8s.io", "IngressClass") => &INGRESS_CLASS,
        ("networking.k8s.io", "NetworkPolicy") => &NETWORK_POLICY,
        ("rbac.authorization.k8s.io", "RoleBinding") => &ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &CLUSTER_ROLE_BINDING,
        ("storage.k8s.io", "StorageClass") => &STORAGE_CLASS,
        _ => return None,
    })
}

const LEASE: Printer = Printer::new(
    &[
        NAME,
        col(
            "Holder",
            "string",
            Doc::Field("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity"),
        ),
        AGE,
    ],
    |l, now| {
        vec![
            name(l),
            str_at(l, "/spec/holderIdentity").into(),
            age(l, now),
        ]
    },
);

const ENDPOINT_SLICE_DEF: &str = "io.k8s.api.discovery.v1.EndpointSlice";

const ENDPOINT_SLICE: Printer = Printer::new(
    &[
        NAME,
        col(
            "AddressType",
            "string",
            Doc::Field(ENDPOINT_SLICE_DEF, "addressType"),
        ),
        col("Ports", "string", Doc::Field(ENDPOINT_SLICE_DEF, "ports")),
        col(
            "Endpoints",
            "string",
            Doc::Field(ENDPOINT_SLICE_DEF, "endpoints"),
        ),
        AGE,
    ],
    |es, now| {
        const MAX: usize = 3;
        let ports = arr_at(es, "/ports");
        // A port without a number matches by name; with neither it is `*`.
        let port_list: Vec<String> = ports
            .iter()
            .take(MAX)
            .map(
                |p| match (p.get("port").and_then(Value::as_i64), str_at(p, "/name")) {
                    (Some(n), _) => n.to_string(),
                    (None, name) if p.get("name").is_some_and(Value::is_string) => name.to_string(),
                    (None, _) => "*".to_string(),
                },
            )
            .collect();
        let addresses: Vec<&str> = arr_at(es, "/endpoints")
            .iter()
            .flat_map(|e| arr_at(e, "/addresses"))
            .filter_map(Value::as_str)
            .collect();
        let address_list: Vec<String> = addresses.iter().take(MAX).map(|a| a.to_string()).collect();
        vec![
            name(es),
            str_at(es, "/addressType").into(),
            list_with_more(&port_list, ports.len(), MAX).into(),
            list_with_more(&address_list, addresses.len(), MAX).into(),
            age(es, now),
        ]
    },
);

const RUNTIME_CLASS: Printer = Printer::new(
    // Kubernetes quotes ObjectMeta's (nonexistent) `handler` doc here, so the description is empty.
    &[NAME, col("Handler", "string", Doc::Text("")), AGE],
    |rc, now| vec![name(rc), str_at(rc, "/handler").into(), age(rc, now)],
);

const INGRESS: Printer = Printer::new(
    &[
        NAME,
        col(
            "Class",
            "string",
            Doc::Text(
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
        ),
        col(
            "Hosts",
            "string",
            Doc::Text("Hosts that incoming requests are matched against before the ingress rule"),
        ),
        col(
            "Address",
            "string",
            Doc::Text("Address is a list containing ingress points for the load-balancer"),
        ),
        col(
            "Ports",
            "string",
            Doc::Text("Ports of TLS configurations that open"),
        ),
        AGE,
    ],
    |ing, now| {
        const MAX: usize = 3;
        let rules = arr_at(ing, "/spec/rules");
        // Up to three named hosts; any rule after the third host counts as "more".
        let (mut hosts, mut more) = (Vec::new(), false);
        for rule in rules {
            more |= hosts.len() == MAX;
            let host = str_at(rule, "/host");
            if !more && !host.is_empty() {
                hosts.push(host);
            }
        }
        let hosts = match (hosts.is_empty(), more) {
            (true, _) => "*".to_string(),
            (false, true) => format!("{} + {} more...", hosts.join(","), rules.len() - MAX),
            (false, false) => hosts.join(","),
        };
        let class = ing
            .pointer("/spec/ingressClassName")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        let ports = if arr_at(ing, "/spec/tls").is_empty() {
            "80"
        } else {
            "80, 443"
        };
        let address =
            load_balancer_addresses(arr_at(ing, "/status/loadBalancer/ingress")).join(",");
        vec![
            name(ing),
            class.into(),
            hosts.into(),
            address.into(),
            ports.into(),
            age(ing, now),
        ]
    },
);

const INGRESS_CLASS: Printer = Printer::new(
    &[
        NAME,
        col(
            "Controller",
            "string",
            Doc::Text("Controller that is responsible for handling this class"),
        ),
        col(
            "Parameters",
            "string",
            Doc::Text("A reference to a resource with additional parameters"),
        ),
        AGE,
    ],
    |ic, now| {
        let parameters = match ic.pointer("/spec/parameters").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let kind = match p.get("apiGroup").and_then(Value::as_str) {
                    Some(group) => format!("{}.{group}", str_at(p, "/kind")),
                    None => str_at(p, "/kind").to_string(),
                };
                format!("{kind}/{}", str_at(p, "/name"))
            }
        };
        vec![
            name(ic),
            str_at(ic, "/spec/controller").into(),
            parameters.into(),
            age(ic, now),
        ]
    },
);

const NETWORK_POLICY: Printer = Printer::new(
    &[
        NAME,
        col(
            "Pod-Selector",
            "string",
            Doc::Field("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector"),
        ),
        AGE,
    ],
    |np, now| {
        let selector = np.pointer("/spec/podSelector").unwrap_or(&Value::Null);
        vec![
            name(np),
            format_label_selector(selector).into(),
            age(np, now),
        ]
    },
);

const STORAGE_CLASS_DEF: &str = "io.k8s.api.storage.v1.StorageClass";

/// `printStorageClass`: the default class is marked after its name; unset policies print as
/// the API's defaults would have set them.
const STORAGE_CLASS: Printer = Printer::new(
    &[
        NAME,
        col(
            "Provisioner",
            "string",
            Doc::Field(STORAGE_CLASS_DEF, "provisioner"),
        ),
        col(
            "ReclaimPolicy",
            "string",
            Doc::Field(STORAGE_CLASS_DEF, "reclaimPolicy"),
        ),
        col(
            "VolumeBindingMode",
            "string",
            Doc::Field(STORAGE_CLASS_DEF, "volumeBindingMode"),
        ),
        col(
            "AllowVolumeExpansion",
            "string",
            Doc::Field(STORAGE_CLASS_DEF, "allowVolumeExpansion"),
        ),
        AGE,
    ],
    |sc, now| {
        let default = [
            "storageclass.kubernetes.io~1is-default-class",
            "storageclass.beta.kubernetes.io~1is-default-class",
        ]
        .iter()
        .any(|key| str_at(sc, &format!("/metadata/annotations/{key}")) == "true");
        let name = if default {
            format!("{} (default)", str_at(sc, "/metadata/name"))
        } else {
            str_at(sc, "/metadata/name").to_string()
        };
        let or = |pointer: &str, unset: &'static str| match str_at(sc, pointer) {
            "" => unset,
            set => set,
        };
        vec![
            name.into(),
            str_at(sc, "/provisioner").into(),
            or("/reclaimPolicy", "Delete").into(),
            or("/volumeBindingMode", "Immediate").into(),
            sc.get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            age(sc, now),
        ]
    },
);

/// Role bindings and cluster role bindings print alike; only the word in descriptions differs.
macro_rules! binding_printer {
    ($definition:literal, $noun:literal) => {
        Printer::new(
            &[
                NAME,
                col("Role", "string", Doc::Field($definition, "roleRef")),
                AGE,
                wide(
                    "Users",
                    "string",
                    Doc::Text(concat!("Users in the ", $noun)),
                ),
                wide(
                    "Groups",
                    "string",
                    Doc::Text(concat!("Groups in the ", $noun)),
                ),
                wide(
                    "ServiceAccounts",
                    "string",
                    Doc::Text(concat!("ServiceAccounts in the ", $noun)),
                ),
            ],
            binding_cells,
        )
    };
}

const ROLE_BINDING: Printer = binding_printer!("io.k8s.api.rbac.v1.RoleBinding", "roleBinding");
const CLUSTER_ROLE_BINDING: Printer = binding_printer!(
    "io.k8s.api.rbac.v1.ClusterRoleBinding",
    "clusterRoleBinding"
);

fn binding_cells(b: &Value, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for s in arr_at(b, "/subjects") {
        match str_at(s, "/kind") {
            "User" => users.push(str_at(s, "/name").to_string()),
            "Group" => groups.push(str_at(s, "/name").to_string()),
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{}",
                str_at(s, "/namespace"),
                str_at(s, "/name")
            )),
            _ => {}
        }
    }
    let role = format!(
        "{}/{}",
        str_at(b, "/roleRef/kind"),
        str_at(b, "/roleRef/name")
    );
    vec![
        name(b),
        role.into(),
        age(b, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        service_accounts.join(", ").into(),
    ]
}

#[cfg(test)]
mod tests;

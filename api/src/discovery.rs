//! Discovery documents, built from [`registry::all()`]: the legacy `/api`, `/apis`, `/apis/G` and
//! `/api/v1` / `/apis/G/V` lists, and the aggregated `APIGroupDiscoveryList` (apidiscovery.k8s.io
//! v2 and v2beta1) that kubectl asks for first. Subresources are listed with the kind and verbs
//! the Kubernetes API server gives them, because kubectl finds `deployments/scale` and friends
//! only there.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::registry::{self, ResourceInfo};

/// Which apidiscovery.k8s.io version an aggregated answer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregatedVersion {
    V2,
    V2Beta1,
}

impl AggregatedVersion {
    fn name(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V2Beta1 => "v2beta1",
        }
    }

    /// The Content-Type of the answer: clients decide by it whether discovery is aggregated.
    pub fn content_type(self) -> String {
        format!(
            "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
            self.name()
        )
    }
}

/// The subresource's response kind outside the parent's group-version, its kind, and its verbs.
struct Subresource {
    group_version: Option<(&'static str, &'static str)>,
    kind: Option<&'static str>,
    verbs: &'static [&'static str],
}

const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CREATE_GET: &[&str] = &["create", "get"];

/// How the Kubernetes API server lists each subresource; `kind: None` is the parent's kind.
fn subresource(name: &str) -> Option<Subresource> {
    let (group_version, kind, verbs): (_, _, &'static [&'static str]) = match name {
        "status" | "ephemeralcontainers" => (None, None, GET_PATCH_UPDATE),
        "scale" => (Some(("autoscaling", "v1")), Some("Scale"), GET_PATCH_UPDATE),
        "log" => (None, None, &["get"]),
        "finalize" => (None, None, &["update"]),
        "binding" => (None, Some("Binding"), &["create"]),
        "eviction" => (Some(("policy", "v1")), Some("Eviction"), &["create"]),
        "exec" => (None, Some("PodExecOptions"), CREATE_GET),
        "attach" => (None, Some("PodAttachOptions"), CREATE_GET),
        "portforward" => (None, Some("PodPortForwardOptions"), CREATE_GET),
        "proxy" => (
            None,
            Some("PodProxyOptions"),
            &["create", "delete", "get", "patch", "update"],
        ),
        "token" => (
            Some(("authentication.k8s.io", "v1")),
            Some("TokenRequest"),
            &["create"],
        ),
        _ => return None,
    };
    Some(Subresource {
        group_version,
        kind,
        verbs,
    })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn non_empty(items: &[&str]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| strings(items))
}

/// These k8s-openapi types hold only strings, lists and bools, so encoding cannot fail.
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("discovery types encode as JSON")
}

/// Every resource and subresource of one group-version, sorted by name as the Kubernetes
/// installer sorts its paths (`pods`, `pods/attach`, ..., `podtemplates`).
fn api_resources(group: &str, version: &str) -> Vec<APIResource> {
    let mut out = Vec::new();
    for r in served(group, version) {
        out.push(APIResource {
            name: r.plural.to_string(),
            singular_name: r.singular.to_string(),
            namespaced: r.namespaced,
            kind: r.kind.to_string(),
            verbs: strings(&r.verbs),
            short_names: non_empty(&r.short_names),
            categories: non_empty(&r.categories),
            ..Default::default()
        });
        for name in r.subresources.iter() {
            let Some(sub) = subresource(name) else {
                continue;
            };
            out.push(APIResource {
                name: format!("{}/{name}", r.plural),
                singular_name: String::new(),
                namespaced: r.namespaced,
                group: sub.group_version.map(|(g, _)| g.to_string()),
                version: sub.group_version.map(|(_, v)| v.to_string()),
                kind: sub.kind.unwrap_or(&r.kind).to_string(),
                verbs: strings(sub.verbs),
                ..Default::default()
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn served<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    registry::all()
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// The served versions of each non-core group, groups and versions in registry order.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (g, v) in registry::group_versions() {
        if g.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) => versions.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out
}

fn group_version(group: &str, version: &str) -> GroupVersionForDiscovery {
    GroupVersionForDiscovery {
        group_version: format!("{group}/{version}"),
        version: version.to_string(),
    }
}

fn api_group_of(name: &str, versions: &[&str]) -> APIGroup {
    APIGroup {
        name: name.to_string(),
        versions: versions.iter().map(|v| group_version(name, v)).collect(),
        preferred_version: versions.first().map(|v| group_version(name, v)),
        server_address_by_client_cidrs: None,
    }
}

/// `GET /api`: the core versions and the address clients should use for the server.
pub fn api_versions(server_address: &str) -> Value {
    to_json(&APIVersions {
        versions: vec!["v1".to_string()],
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".to_string(),
            server_address: server_address.to_string(),
        }],
    })
}

/// `GET /apis`: every non-core group with its versions and preferred version.
pub fn api_group_list() -> Value {
    to_json(&APIGroupList {
        groups: groups()
            .iter()
            .map(|(name, versions)| api_group_of(name, versions))
            .collect(),
    })
}

/// `GET /apis/G`; `None` for a group that is not served.
pub fn api_group(group: &str) -> Option<Value> {
    groups()
        .iter()
        .find(|(name, _)| *name == group)
        .map(|(name, versions)| to_json(&api_group_of(name, versions)))
}

/// `GET /api/v1` (group `""`) or `/apis/G/V`; `None` for a group-version that is not served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let resources = api_resources(group, version);
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(to_json(&APIResourceList {
        group_version,
        resources,
    }))
}

/// `{group, version, kind}` with empty group and version meaning the resource's own, as the
/// Kubernetes server converts an APIResource (all three keys are always present).
fn response_kind(r: &APIResource) -> Value {
    json!({
        "group": r.group.clone().unwrap_or_default(),
        "version": r.version.clone().unwrap_or_default(),
        "kind": r.kind,
    })
}

/// One version's `APIVersionDiscovery`: top-level resources with their subresources folded in.
fn version_discovery(group: &str, version: &str) -> Value {
    let list = api_resources(group, version);
    let mut resources: Vec<Value> = Vec::new();
    for r in list.iter().filter(|r| !r.name.contains('/')) {
        let mut entry = json!({
            "resource": r.name,
            "responseKind": response_kind(r),
            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": r.singular_name,
            "verbs": r.verbs,
        });
        if let Some(short) = &r.short_names {
            entry["shortNames"] = json!(short);
        }
        if let Some(categories) = &r.categories {
            entry["categories"] = json!(categories);
        }
        let prefix = format!("{}/", r.name);
        let subresources: Vec<Value> = list
            .iter()
            .filter_map(|s| {
                let sub = s.name.strip_prefix(&prefix)?;
                Some(
                    json!({"subresource": sub, "responseKind": response_kind(s), "verbs": s.verbs}),
                )
            })
            .collect();
        if !subresources.is_empty() {
            entry["subresources"] = Value::Array(subresources);
        }
        resources.push(entry);
    }
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// The `APIGroupDiscoveryList` for `/api` (`core`: the core group, whose name is empty) or for
/// `/apis` (every other group). Serve it with [`AggregatedVersion::content_type`].
pub fn aggregated(core: bool, version: AggregatedVersion) -> Value {
    let items: Vec<Value> = if core {
        vec![json!({"metadata": {}, "versions": [version_discovery("", "v1")]})]
    } else {
        groups()
            .iter()
            .map(|(name, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|v| version_discovery(name, v))
                    .collect();
                json!({"metadata": {"name": name}, "versions": versions})
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{}", version.name()),
        "metadata": {},
        "items": items,
    })
}

/// The aggregated discovery version an `Accept` header asks for, or `None` when the client
/// prefers (or only accepts) the legacy documents. Media ranges are taken by descending `q`,
/// ties in header order; protobuf ranges are skipped because Skiff serves discovery as JSON only.
pub fn parse_accept_for_aggregated(accept: &str) -> Option<AggregatedVersion> {
    let mut ranges: Vec<(f32, &str)> = accept
        .split(',')
        .map(|range| {
            let q = range
                .split(';')
                .skip(1)
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (q, range)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, range) in ranges {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let (mut g, mut v, mut kind) = (None, None, None);
        for p in parts {
            match p.split_once('=') {
                Some(("g", x)) => g = Some(x),
                Some(("v", x)) => v = Some(x),
                Some(("as", x)) => kind = Some(x),
                _ => {}
            }
        }
        if g.is_none() && v.is_none() && kind.is_none() {
            return None;
        }
        if g == Some("apidiscovery.k8s.io") && kind == Some("APIGroupDiscoveryList") {
            match v {
                Some("v2") => return Some(AggregatedVersion::V2),
                Some("v2beta1") => return Some(AggregatedVersion::V2Beta1),
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == name))
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn legacy_root_documents() {
        assert_eq!(
            api_versions("10.0.0.1:6443"),
            json!({"kind": "APIVersions", "apiVersion": "v1", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]})
        );
        let apps = json!({"apiVersion": "v1", "kind": "APIGroup", "name": "apps",
                          "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                          "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}});
        assert_eq!(api_group("apps"), Some(apps.clone()));
        assert_eq!(api_group(""), None);
        assert_eq!(api_group("nope.example.com"), None);

        let list = api_group_list();
        assert_eq!(list["kind"], "APIGroupList");
        let groups = list["groups"].as_array().expect("groups");
        assert!(groups.contains(&apps));
        let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
        for g in [
            "apps",
            "batch",
            "autoscaling",
            "coordination.k8s.io",
            "rbac.authorization.k8s.io",
            "apiextensions.k8s.io",
        ] {
            assert!(names.contains(&g), "{g}");
        }
        assert!(!names.contains(&""));
    }

    #[test]
    fn core_resource_list_has_subresources_as_kubernetes_lists_them() {
        let list = api_resource_list("", "v1").expect("core");
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["groupVersion"], "v1");
        assert_eq!(
            entry(&list, "pods"),
            &json!({"categories": ["all"], "kind": "Pod", "name": "pods", "namespaced": true,
                    "shortNames": ["po"], "singularName": "pod",
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]})
        );
        let sub = |name: &str| {
            let e = entry(&list, name);
            (
                e["kind"].clone(),
                e["group"].clone(),
                e["version"].clone(),
                e["verbs"].clone(),
                e["singularName"].clone(),
            )
        };
        assert_eq!(
            sub("pods/status"),
            (
                json!("Pod"),
                Value::Null,
                Value::Null,
                json!(["get", "patch", "update"]),
                json!("")
            )
        );
        assert_eq!(sub("pods/log").3, json!(["get"]));
        assert_eq!(
            sub("pods/exec"),
            (
                json!("PodExecOptions"),
                Value::Null,
                Value::Null,
                json!(["create", "get"]),
                json!("")
            )
        );
        assert_eq!(sub("pods/attach").0, json!("PodAttachOptions"));
        assert_eq!(sub("pods/portforward").0, json!("PodPortForwardOptions"));
        assert_eq!(
            sub("pods/binding"),
            (
                json!("Binding"),
                Value::Null,
                Value::Null,
                json!(["create"]),
                json!("")
            )
        );
        assert_eq!(
            sub("pods/eviction"),
            (
                json!("Eviction"),
                json!("policy"),
                json!("v1"),
                json!(["create"]),
                json!("")
            )
        );
        assert_eq!(sub("pods/ephemeralcontainers").0, json!("Pod"));
        assert_eq!(
            sub("namespaces/finalize"),
            (
                json!("Namespace"),
                Value::Null,
                Value::Null,
                json!(["update"]),
                json!("")
            )
        );
        assert_eq!(
            sub("serviceaccounts/token"),
            (
                json!("TokenRequest"),
                json!("authentication.k8s.io"),
                json!("v1"),
                json!(["create"]),
                json!("")
            )
        );
        assert_eq!(entry(&list, "namespaces")["namespaced"], false);
        assert_eq!(entry(&list, "bindings")["verbs"], json!(["create"]));

        let names: Vec<&str> = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        let pods = names.iter().position(|n| *n == "pods").expect("pods");
        assert_eq!(names[pods + 1], "pods/attach");
    }

    #[test]
    fn apps_resource_list_offers_scale() {
        let list = api_resource_list("apps", "v1").expect("apps");
        assert_eq!(list["groupVersion"], "apps/v1");
        assert_eq!(
            entry(&list, "deployments/scale"),
            &json!({"group": "autoscaling", "kind": "Scale", "name": "deployments/scale", "namespaced": true,
                    "singularName": "", "verbs": ["get", "patch", "update"], "version": "v1"})
        );
        assert_eq!(entry(&list, "deployments")["shortNames"], json!(["deploy"]));
        assert_eq!(entry(&list, "statefulsets/scale")["kind"], "Scale");
        assert_eq!(api_resource_list("apps", "v2"), None);
        assert_eq!(api_resource_list("nope", "v1"), None);
    }

    #[test]
    fn every_registered_subresource_is_described() {
        for r in registry::all() {
            for s in r.subresources.iter() {
                assert!(subresource(s).is_some(), "{}/{s}", r.plural);
            }
        }
    }

    #[test]
    fn aggregated_core_list() {
        let doc = aggregated(true, AggregatedVersion::V2);
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(doc["metadata"], json!({}));
        let items = doc["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"], json!({}));
        let v1 = &items[0]["versions"][0];
        assert_eq!(
            (&v1["version"], &v1["freshness"]),
            (&json!("v1"), &json!("Current"))
        );
        let pods = v1["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "pods"))
            .expect("pods");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "", "kind": "Pod"})
        );
        assert_eq!(
            (&pods["scope"], &pods["singularResource"]),
            (&json!("Namespaced"), &json!("pod"))
        );
        assert_eq!(
            (&pods["shortNames"], &pods["categories"]),
            (&json!(["po"]), &json!(["all"]))
        );
        let subs: Vec<&str> = pods["subresources"]
            .as_array()
            .expect("subs")
            .iter()
            .filter_map(|s| s["subresource"].as_str())
            .collect();
        assert_eq!(
            subs,
            [
                "attach",
                "binding",
                "ephemeralcontainers",
                "eviction",
                "exec",
                "log",
                "portforward",
                "status"
            ]
        );
        assert_eq!(
            pods["subresources"][3],
            json!({"subresource": "eviction", "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"}, "verbs": ["create"]})
        );
        assert!(
            v1["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .all(|r| !r["resource"].as_str().unwrap_or("/").contains('/'))
        );
        let ns = v1["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "namespaces"))
            .expect("ns");
        assert_eq!(ns["scope"], "Cluster");
        assert!(ns.get("categories").is_none());
    }

    #[test]
    fn aggregated_group_list() {
        let doc = aggregated(false, AggregatedVersion::V2Beta1);
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let items = doc["items"].as_array().expect("items");
        assert!(items.iter().all(|i| i["metadata"]["name"] != ""));
        let apps = items
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .expect("apps");
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "deployments"))
            .expect("deployments");
        assert_eq!(
            deployments,
            &json!({
                "resource": "deployments",
                "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                "scope": "Namespaced",
                "singularResource": "deployment",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": ["deploy"],
                "categories": ["all"],
                "subresources": [
                    {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                     "verbs": ["get", "patch", "update"]},
                    {"subresource": "status", "responseKind": {"group": "", "version": "", "kind": "Deployment"},
                     "verbs": ["get", "patch", "update"]}
                ]
            })
        );
        assert_eq!(
            AggregatedVersion::V2.content_type(),
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
    }

    #[test]
    fn negotiates_aggregated_discovery_from_accept() {
        let kubectl = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.9,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList;q=0.8,application/json;q=0.7";
        assert_eq!(
            parse_accept_for_aggregated(kubectl),
            Some(AggregatedVersion::V2)
        );
        assert_eq!(
            parse_accept_for_aggregated(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList, application/json"
            ),
            Some(AggregatedVersion::V2Beta1)
        );
        assert_eq!(
            parse_accept_for_aggregated(
                "application/json;q=0.5,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            ),
            Some(AggregatedVersion::V2)
        );
        assert_eq!(
            parse_accept_for_aggregated(
                "application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            ),
            None
        );
        assert_eq!(parse_accept_for_aggregated("application/json"), None);
        assert_eq!(parse_accept_for_aggregated("*/*"), None);
        assert_eq!(parse_accept_for_aggregated(""), None);
        assert_eq!(
            parse_accept_for_aggregated(
                "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"
            ),
            None
        );
    }
}

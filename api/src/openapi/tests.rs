//! Checks the documents the way kubectl reads them (cli-runtime `query_param_verifier_v3.go`,
//! kubectl `explain/v2/templates/plaintext.tmpl`, `apply/patcher.go`).

use serde_json::{Value, json};

use super::components::references;
use super::*;
use crate::registry::ResourceInfo;

fn document(group: &str, version: &str) -> Value {
    let (text, _) = v3_document(group, version).expect("served group-version");
    serde_json::from_str(text).expect("document is JSON")
}

fn gvk_of(r: &ResourceInfo) -> Value {
    json!({"group": r.group, "kind": r.kind, "version": r.version})
}

#[test]
fn index_lists_every_group_version_with_its_hash() {
    let index = v3_index();
    for (group, version, key) in [("", "v1", "api/v1"), ("apps", "v1", "apis/apps/v1")] {
        let (_, hash) = v3_document(group, version).expect("served");
        assert_eq!(
            index["paths"][key]["serverRelativeURL"],
            format!("/openapi/v3/{key}?hash={hash}")
        );
        assert_eq!(hash.len(), 32);
    }
    assert_eq!(
        index["paths"].as_object().map(|p| p.len()),
        Some(registry::group_versions().len())
    );
    assert!(v3_document("apps", "v2").is_none());
}

#[test]
fn hash_is_fnv1a_128() {
    assert_eq!(hash(b""), "6C62272E07BB014262B821756295C58D");
    assert_ne!(hash(b"a"), hash(b"b"));
}

#[test]
fn every_reference_resolves_in_every_document() {
    for (group, version) in registry::group_versions() {
        let doc = document(group, version);
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for reference in references(&doc) {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{group}/{version}: foreign ref {reference}"));
            assert!(
                schemas.contains_key(name),
                "{group}/{version}: {reference} unresolved"
            );
        }
    }
    let apps = document("apps", "v1");
    let schemas = apps["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "io.k8s.api.core.v1.PodTemplateSpec",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.api.autoscaling.v1.Scale",
    ] {
        assert!(schemas.contains_key(name), "{name} missing");
    }
}

#[test]
fn kinds_carry_their_gvk_and_do_not_require_metadata() {
    let apps = document("apps", "v1");
    let schemas = &apps["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert!(deployment.get("required").is_none());
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentSpec"]["required"],
        json!(["selector", "template"])
    );
    let list = &schemas["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "DeploymentList", "version": "v1"}])
    );
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    );
    assert_eq!(
        schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"],
        json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}])
    );
}

/// kubectl `apply`/`create` send `fieldValidation=Strict` only if the first PATCH operation
/// tagged with the kind's GVK lists the parameter; paths come from a Go map, so every one must.
#[test]
fn every_patch_operation_takes_field_validation() {
    for r in registry::all().iter().filter(|r| r.supports("patch")) {
        let doc = document(&r.group, &r.version);
        let gvk = gvk_of(r);
        let patches: Vec<&Value> = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .filter_map(|item| item.get("patch"))
            .filter(|op| op["x-kubernetes-group-version-kind"] == gvk)
            .collect();
        assert!(!patches.is_empty(), "{r:?}: no PATCH operation");
        for op in patches {
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(
                names,
                ["dryRun", "fieldManager", "fieldValidation", "force"],
                "{r:?}"
            );
            let content = op["requestBody"]["content"].as_object().expect("content");
            let types: Vec<&str> = content.keys().map(String::as_str).collect();
            assert_eq!(
                types,
                [
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json"
                ],
                "{r:?}"
            );
        }
    }
}

/// `kubectl explain`: the GVK of the first operation found on the resource's collection or item
/// paths must equal, key for key, an entry of some schema's `x-kubernetes-group-version-kind`.
#[test]
fn explain_finds_every_kind() {
    for r in registry::all().iter().filter(|r| r.typed.is_some()) {
        let doc = document(&r.group, &r.version);
        let prefix = if r.group.is_empty() {
            "/api".to_string()
        } else {
            format!("/apis/{}", r.group)
        };
        let candidates = [
            format!("{prefix}/{}/{}", r.version, r.plural),
            format!("{prefix}/{}/{}/{{name}}", r.version, r.plural),
            format!(
                "{prefix}/{}/namespaces/{{namespace}}/{}",
                r.version, r.plural
            ),
            format!(
                "{prefix}/{}/namespaces/{{namespace}}/{}/{{name}}",
                r.version, r.plural
            ),
        ];
        let found = candidates
            .iter()
            .filter_map(|p| doc["paths"].get(p))
            .flat_map(|item| {
                ["get", "post", "put", "patch", "delete"]
                    .iter()
                    .filter_map(|m| item.get(*m))
            })
            .find_map(|op| op.get("x-kubernetes-group-version-kind"))
            .unwrap_or_else(|| panic!("{r:?}: no operation with a GVK"));
        assert_eq!(found, &gvk_of(r), "{r:?}");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let matching = schemas.values().filter(|s| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|l| l.contains(found))
        });
        assert_eq!(matching.count(), 1, "{r:?}");
    }
}

#[test]
fn operations_are_named_as_kubernetes_names_them() {
    let ops = |doc: &Value, path: &str| -> Vec<(String, String, String)> {
        doc["paths"][path]
            .as_object()
            .unwrap_or_else(|| panic!("{path} missing"))
            .iter()
            .filter(|(k, _)| *k != "parameters")
            .map(|(method, op)| {
                let s = |k: &str| op[k].as_str().unwrap_or_default().to_string();
                (method.clone(), s("operationId"), s("x-kubernetes-action"))
            })
            .collect()
    };
    let t = |m: &str, id: &str, a: &str| (m.to_string(), id.to_string(), a.to_string());
    let apps = document("apps", "v1");
    assert_eq!(
        ops(&apps, "/apis/apps/v1/deployments"),
        [t("get", "listAppsV1DeploymentForAllNamespaces", "list")]
    );
    assert_eq!(
        ops(&apps, "/apis/apps/v1/namespaces/{namespace}/deployments"),
        [
            t("get", "listAppsV1NamespacedDeployment", "list"),
            t("post", "createAppsV1NamespacedDeployment", "post"),
            t(
                "delete",
                "deleteAppsV1CollectionNamespacedDeployment",
                "deletecollection"
            ),
        ]
    );
    assert_eq!(
        ops(
            &apps,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        ),
        [
            t("get", "readAppsV1NamespacedDeployment", "get"),
            t("put", "replaceAppsV1NamespacedDeployment", "put"),
            t("patch", "patchAppsV1NamespacedDeployment", "patch"),
            t("delete", "deleteAppsV1NamespacedDeployment", "delete"),
        ]
    );
    let scale = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale";
    assert_eq!(
        ops(&apps, scale)[2],
        t("patch", "patchAppsV1NamespacedDeploymentScale", "patch")
    );
    assert_eq!(
        apps["paths"][scale]["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    assert_eq!(
        apps["paths"][scale]["parameters"]
            .as_array()
            .map(|p| p.iter().map(|p| p["name"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("name"), json!("namespace"), json!("pretty")])
    );

    let core = document("", "v1");
    assert_eq!(
        ops(&core, "/api/v1/namespaces/{namespace}/pods/{name}/exec"),
        [
            t("get", "connectCoreV1GetNamespacedPodExec", "connect"),
            t("post", "connectCoreV1PostNamespacedPodExec", "connect"),
        ]
    );
    assert_eq!(
        ops(&core, "/api/v1/nodes/{name}"),
        [
            t("get", "readCoreV1Node", "get"),
            t("put", "replaceCoreV1Node", "put"),
            t("patch", "patchCoreV1Node", "patch"),
            t("delete", "deleteCoreV1Node", "delete"),
        ]
    );
    assert!(
        core["paths"]
            .get("/api/v1/namespaces/{namespace}/nodes")
            .is_none()
    );

    let rbac = document("rbac.authorization.k8s.io", "v1");
    let op = &rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles"]["delete"];
    assert_eq!(
        op["operationId"],
        "deleteRbacAuthorizationV1CollectionClusterRole"
    );
    assert_eq!(op["tags"], json!(["rbacAuthorization_v1"]));
}

#[test]
fn every_parameter_is_described() {
    for (group, version) in registry::group_versions() {
        let doc = document(group, version);
        for item in doc["paths"].as_object().expect("paths").values() {
            let operations = item.as_object().expect("path item").values();
            let params =
                item["parameters"].as_array().into_iter().flatten().chain(
                    operations.flat_map(|op| op["parameters"].as_array().into_iter().flatten()),
                );
            for p in params {
                assert_ne!(p["description"], "", "{group}/{version}: {p}");
            }
        }
    }
}

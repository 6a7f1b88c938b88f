//! `paths` of a `/openapi/v3` group-version document: for each resource its collection and item
//! paths (namespaced, all-namespaces and cluster forms) and subresources, each operation with
//! the `operationId`, `x-kubernetes-action` and `x-kubernetes-group-version-kind` Kubernetes
//! gives it. kubectl reads two things here: the GVK of a resource's operations (`explain`), and
//! whether PATCH lists the `fieldValidation` parameter (`apply`/`create` then ask the server to
//! validate strictly).

use serde_json::{Map, Value};

use super::components::{
    self, BINDING, DELETE_OPTIONS, EVICTION, Kind, SCALE, STATUS, TOKEN_REQUEST,
};
use super::operation::{
    ATTACH_PARAMS, DELETE_COLLECTION_PARAMS, DELETE_PARAMS, EXEC_PARAMS, LIST_PARAMS, LOG_PARAMS,
    Operation, PATCH_PARAMS, PORTFORWARD_PARAMS, WRITE_PARAMS, object_body, parameter, patch_body,
    responses, text_responses,
};
use crate::registry::{self, ResourceInfo};

/// Names derived from the group-version: `/apis/apps/v1`, `AppsV1`, `apps_v1`.
struct GroupVersion {
    prefix: String,
    id: String,
    tag: String,
}

impl GroupVersion {
    fn new(group: &str, version: &str) -> Self {
        let words: Vec<&str> = if group.is_empty() {
            vec!["core"]
        } else {
            group.trim_end_matches(".k8s.io").split('.').collect()
        };
        let id: String = words.iter().map(|w| capitalize(w)).collect();
        let tag_group: String = words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w.to_string() } else { capitalize(w) })
            .collect();
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        GroupVersion {
            prefix,
            id: format!("{id}{}", capitalize(version)),
            tag: format!("{tag_group}_{version}"),
        }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The paths of every resource served in `group`/`version`, sorted.
pub(super) fn for_group_version(group: &str, version: &str) -> Map<String, Value> {
    let gv = GroupVersion::new(group, version);
    let mut out = Map::new();
    for r in registry::all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        if let Some(resource) = Resource::new(&gv, r) {
            resource.add_paths(&mut out);
        }
    }
    let mut sorted: Vec<(String, Value)> = out.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().collect()
}

/// One built-in resource and the names its operations are built from.
struct Resource<'a> {
    gv: &'a GroupVersion,
    info: &'a ResourceInfo,
    definition: String,
    list_definition: String,
    gvk: Value,
    /// `Namespaced` or empty, as it appears in operation ids.
    scope: &'static str,
    /// `/api/v1/namespaces/{namespace}/pods` or `/api/v1/nodes`.
    collection: String,
}

impl<'a> Resource<'a> {
    fn new(gv: &'a GroupVersion, info: &'a ResourceInfo) -> Option<Self> {
        let collection = if info.namespaced {
            format!("{}/namespaces/{{namespace}}/{}", gv.prefix, info.plural)
        } else {
            format!("{}/{}", gv.prefix, info.plural)
        };
        Some(Resource {
            gv,
            info,
            definition: components::definition_of(info)?,
            list_definition: components::list_definition_of(info)?,
            gvk: components::gvk(&info.group, &info.version, &info.kind),
            scope: if info.namespaced { "Namespaced" } else { "" },
            collection,
        })
    }

    /// `{verb}{GroupVersion}{infix}{scope}{Kind}{suffix}`: `deleteAppsV1CollectionNamespacedDeployment`.
    fn id(&self, verb: &str, infix: &str, suffix: &str) -> String {
        format!(
            "{verb}{}{infix}{}{}{suffix}",
            self.gv.id, self.scope, self.info.kind
        )
    }

    fn op(
        &self,
        action: &'static str,
        id: String,
        description: String,
        params: &'static [&'static str],
        body: Option<Value>,
        responses: Value,
    ) -> Operation {
        Operation {
            action,
            id,
            description,
            params,
            body,
            responses,
            gvk: self.gvk.clone(),
        }
    }

    fn add(&self, out: &mut Map<String, Value>, path: String, ops: Vec<(&str, Operation)>) {
        if ops.is_empty() {
            return;
        }
        let mut item = Map::new();
        for (method, op) in ops {
            item.insert(method.to_string(), op.into_json(&self.gv.tag));
        }
        let mut params = Vec::new();
        if path.contains("{name}") {
            params.push(parameter("name"));
        }
        if path.contains("{namespace}") {
            params.push(parameter("namespace"));
        }
        params.push(parameter("pretty"));
        item.insert("parameters".into(), Value::Array(params));
        out.insert(path, Value::Object(item));
    }

    fn add_paths(&self, out: &mut Map<String, Value>) {
        let r = self.info;
        let kind = &r.kind;
        let (def, list_def) = (&self.definition, &self.list_definition);

        if r.namespaced && r.supports("list") {
            let id = format!("list{}{kind}ForAllNamespaces", self.gv.id);
            let description = format!("list or watch objects of kind {kind}");
            let list = self.op(
                "list",
                id,
                description,
                LIST_PARAMS,
                None,
                responses(list_def, &["200"]),
            );
            self.add(
                out,
                format!("{}/{}", self.gv.prefix, r.plural),
                vec![("get", list)],
            );
        }

        let mut ops = Vec::new();
        if r.supports("list") {
            let description = format!("list or watch objects of kind {kind}");
            let responses = responses(list_def, &["200"]);
            let id = self.id("list", "", "");
            ops.push((
                "get",
                self.op("list", id, description, LIST_PARAMS, None, responses),
            ));
        }
        if r.supports("create") {
            let description = format!("create a {kind}");
            let responses = responses(def, &["200", "201", "202"]);
            let body = Some(object_body(def));
            let id = self.id("create", "", "");
            ops.push((
                "post",
                self.op("post", id, description, WRITE_PARAMS, body, responses),
            ));
        }
        if r.supports("deletecollection") {
            let description = format!("delete collection of {kind}");
            let responses = responses(STATUS, &["200"]);
            let body = Some(object_body(DELETE_OPTIONS));
            let id = self.id("delete", "Collection", "");
            let params = DELETE_COLLECTION_PARAMS;
            ops.push((
                "delete",
                self.op("deletecollection", id, description, params, body, responses),
            ));
        }
        self.add(out, self.collection.clone(), ops);

        let mut ops = Vec::new();
        if r.supports("get") {
            ops.push((
                "get",
                self.read(def, "", format!("read the specified {kind}")),
            ));
        }
        if r.supports("update") {
            ops.push((
                "put",
                self.replace(def, "", format!("replace the specified {kind}")),
            ));
        }
        if r.supports("patch") {
            let description = format!("partially update the specified {kind}");
            ops.push(("patch", self.patch(def, "", description)));
        }
        if r.supports("delete") {
            let description = format!("delete a {kind}");
            let responses = responses(STATUS, &["200", "202"]);
            let body = Some(object_body(DELETE_OPTIONS));
            let id = self.id("delete", "", "");
            ops.push((
                "delete",
                self.op("delete", id, description, DELETE_PARAMS, body, responses),
            ));
        }
        self.add(out, format!("{}/{{name}}", self.collection), ops);

        for sub in r.subresources.iter() {
            let ops = self.subresource(sub);
            self.add(out, format!("{}/{{name}}/{sub}", self.collection), ops);
        }
    }

    fn read(&self, definition: &str, suffix: &str, description: String) -> Operation {
        let id = self.id("read", "", suffix);
        self.op(
            "get",
            id,
            description,
            &[],
            None,
            responses(definition, &["200"]),
        )
    }

    fn replace(&self, definition: &str, suffix: &str, description: String) -> Operation {
        let id = self.id("replace", "", suffix);
        let (body, responses) = (
            object_body(definition),
            responses(definition, &["200", "201"]),
        );
        self.op("put", id, description, WRITE_PARAMS, Some(body), responses)
    }

    fn patch(&self, definition: &str, suffix: &str, description: String) -> Operation {
        let id = self.id("patch", "", suffix);
        let responses = responses(definition, &["200", "201"]);
        self.op(
            "patch",
            id,
            description,
            PATCH_PARAMS,
            Some(patch_body()),
            responses,
        )
    }

    /// The operations of one subresource; subresources not listed here get none.
    fn subresource(&self, sub: &str) -> Vec<(&'static str, Operation)> {
        let kind = &self.info.kind;
        let suffix = capitalize(sub);
        match sub {
            "status" | "ephemeralcontainers" => self.read_write(sub, &suffix, None),
            "scale" => self.read_write(sub, &suffix, Some(&SCALE)),
            "finalize" => {
                let description = format!("replace finalize of the specified {kind}");
                vec![("put", self.replace(&self.definition, &suffix, description))]
            }
            "binding" => vec![("post", self.create_sub(&BINDING, sub, &suffix))],
            "eviction" => vec![("post", self.create_sub(&EVICTION, sub, &suffix))],
            "token" => vec![("post", self.create_sub(&TOKEN_REQUEST, sub, &suffix))],
            "log" => {
                let id = self.id("read", "", &suffix);
                let description = format!("read log of the specified {kind}");
                vec![(
                    "get",
                    self.op("get", id, description, LOG_PARAMS, None, text_responses()),
                )]
            }
            "exec" => self.connect(sub, &suffix, "PodExecOptions", EXEC_PARAMS),
            "attach" => self.connect(sub, &suffix, "PodAttachOptions", ATTACH_PARAMS),
            "portforward" => {
                self.connect(sub, &suffix, "PodPortForwardOptions", PORTFORWARD_PARAMS)
            }
            _ => Vec::new(),
        }
    }

    /// Read, replace and patch of a subresource holding the object itself (status) or another
    /// kind (scale).
    fn read_write(
        &self,
        sub: &str,
        suffix: &str,
        target: Option<&Kind>,
    ) -> Vec<(&'static str, Operation)> {
        let kind = &self.info.kind;
        let definition = target.map_or(self.definition.as_str(), |t| t.definition);
        let mut ops = vec![
            (
                "get",
                self.read(
                    definition,
                    suffix,
                    format!("read {sub} of the specified {kind}"),
                ),
            ),
            (
                "put",
                self.replace(
                    definition,
                    suffix,
                    format!("replace {sub} of the specified {kind}"),
                ),
            ),
            (
                "patch",
                self.patch(
                    definition,
                    suffix,
                    format!("partially update {sub} of the specified {kind}"),
                ),
            ),
        ];
        if let Some(target) = target {
            for (_, op) in &mut ops {
                op.gvk = target.gvk();
            }
        }
        ops
    }

    fn create_sub(&self, target: &Kind, sub: &str, suffix: &str) -> Operation {
        let id = self.id("create", "", suffix);
        let description = format!("create {sub} of a {}", self.info.kind);
        let body = object_body(target.definition);
        let responses = responses(target.definition, &["200", "201", "202"]);
        let mut op = self.op("post", id, description, WRITE_PARAMS, Some(body), responses);
        op.gvk = target.gvk();
        op
    }

    /// Streaming subresources, `connectCoreV1GetNamespacedPodExec` and its POST twin.
    fn connect(
        &self,
        sub: &str,
        suffix: &str,
        options: &str,
        params: &'static [&'static str],
    ) -> Vec<(&'static str, Operation)> {
        [("get", "Get"), ("post", "Post")]
            .into_iter()
            .map(|(method, infix)| {
                let id = self.id("connect", infix, suffix);
                let description = format!(
                    "connect {} requests to {sub} of {}",
                    method.to_uppercase(),
                    self.info.kind
                );
                let mut op = self.op("connect", id, description, params, None, text_responses());
                op.gvk = components::gvk("", "v1", options);
                (method, op)
            })
            .collect()
    }
}

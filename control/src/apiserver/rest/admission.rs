//! The admission pipeline every write goes through, as the Kubernetes API server runs it:
//! decoding checks (apiVersion/kind, unknown and duplicate fields per `fieldValidation`), metadata
//! the server owns, normalisation through the typed object, defaults, validation and the
//! managedFields of the writer. No I/O (the verbs in `write.rs` read and write the store) but
//! for [`default_storage_class`], which reads the StorageClasses.

use axum::http::HeaderMap;
use serde_json::{Value, json};
use skiff_api::patch;
use skiff_api::storage::{DEFAULT_CLASS_ANNOTATION, PVC_PROTECTION_FINALIZER};
use skiff_api::{ApiError, FieldError, ResourceInfo, defaults, strict, validation};

use super::{decode, store_error};
use crate::apiserver::ApiServer;
use crate::apiserver::codec::Query;
use crate::apiserver::objects::{self, metadata_mut};
use crate::apiserver::path::ResourcePath;
use crate::server::User;
use crate::store::Store;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Query options shared by every write.
pub(crate) struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
    pub force: bool,
}

impl WriteOptions {
    pub fn from_query(query: &Query, _user: &User, headers: &HeaderMap) -> Result<Self, ApiError> {
        let field_validation = match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
                )));
            }
        };
        // Without fieldManager, Kubernetes names the manager after the client's User-Agent.
        let field_manager = match query.get("fieldManager") {
            Some(m) if !m.is_empty() => {
                if m.len() > 128 {
                    return Err(ApiError::bad_request(
                        "fieldManager: Too long: may not be longer than 128",
                    ));
                }
                m.to_string()
            }
            _ => headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        Ok(Self {
            dry_run: query.dry_run()?,
            field_manager,
            field_validation,
            force: query.flag("force"),
        })
    }
}

/// The apiVersion/kind of a body must be the endpoint's (or absent: then they are filled in).
pub(crate) fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {})",
            info.kind
        )));
    };
    let api_version = info.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), Value::String(api_version));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), Value::String(info.kind.to_string()));
        }
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

/// Unknown and duplicate fields of a request body.
fn field_problems(info: &ResourceInfo, obj: &Value, raw: &[u8]) -> Vec<FieldError> {
    let mut causes: Vec<FieldError> = strict::unknown_fields(info, obj)
        .into_iter()
        .map(FieldError::unknown)
        .collect();
    causes.extend(strict::duplicate_fields(raw).into_iter().map(|f| {
        FieldError::new(
            skiff_api::status::CauseType::FieldValueDuplicate,
            f.clone(),
            format!("duplicate field \"{f}\""),
        )
    }));
    causes
}

/// Under `fieldValidation=Strict`, unknown and duplicate fields refuse the request.
pub(crate) fn check_fields(
    info: &ResourceInfo,
    obj: &Value,
    raw: &[u8],
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    if opts.field_validation != FieldValidation::Strict {
        return Ok(());
    }
    let causes = field_problems(info, obj, raw);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::strict_decoding(&info.kind, &info.version, causes))
    }
}

/// Under `fieldValidation=Warn` (the default), the same problems become `Warning` headers.
pub(crate) fn field_warnings(
    info: &ResourceInfo,
    obj: &Value,
    raw: &[u8],
    opts: &WriteOptions,
) -> Vec<String> {
    if opts.field_validation != FieldValidation::Warn {
        return Vec::new();
    }
    field_problems(info, obj, raw)
        .into_iter()
        .map(|c| c.message)
        .collect()
}

/// Decodes into the Kubernetes type and back: normalises the object and refuses wrong value types.
pub(crate) fn normalise(info: &ResourceInfo, obj: Value) -> Result<Value, ApiError> {
    let Some(typed) = info.typed else {
        return Ok(obj);
    };
    let mut obj = (typed.roundtrip)(&obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = info.kind,
            version = info.version
        ))
    })?;
    if let Some(root) = skiff_api::schema::index().root(info) {
        skiff_api::schema::omit_empty(root, &mut obj);
    }
    Ok(obj)
}

pub(crate) fn invalid(
    info: &ResourceInfo,
    obj: &Value,
    errs: Vec<FieldError>,
) -> Result<(), ApiError> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = objects::name(obj).unwrap_or("");
    Err(ApiError::invalid(&info.object_ref(name), errs))
}

/// What clients send as status is not theirs to set: a new object starts without one, and
/// defaulting gives it the status Kubernetes starts it with (a Pod's phase and QoS class, ...).
pub(crate) fn reset_status(info: &ResourceInfo, obj: &mut Value) {
    if info.has_subresource("status")
        && info.kind != "Node"
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
}

/// Metadata, normalisation, defaults and validation of a new object (no I/O but allocations).
pub(crate) fn admit_create(rp: &ResourcePath, obj: Value) -> Result<Value, ApiError> {
    let info = rp.info;
    let mut obj = obj;
    {
        let meta = metadata_mut(&mut obj);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if info.namespaced {
            let path_ns = rp.namespace.clone().unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != path_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), Value::String(path_ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name
            && let Some(prefix) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
        {
            let generated = objects::generate_name(prefix);
            meta.insert("name".into(), Value::String(generated));
        }
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert(
            "creationTimestamp".into(),
            Value::String(objects::now_rfc3339()),
        );
        for server_owned in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(server_owned);
        }
        if objects::tracks_generation(info) {
            meta.insert("generation".into(), json!(1));
        }
    }
    let mut obj = normalise(info, obj)?;
    reset_status(info, &mut obj);
    if info.kind == "Namespace" {
        // Set at creation only (the namespace strategy's PrepareForCreate): the namespace
        // controller removes it, through `finalize`, once the namespace is empty.
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
    }
    if info.group.is_empty() && info.kind == "PersistentVolumeClaim" {
        protect_claim(&mut obj);
    }
    defaults::apply(info, &mut obj);
    invalid(info, &obj, validation::validate_create(info, &obj))?;
    Ok(obj)
}

/// The StorageObjectInUseProtection admission plugin: a claim is not removed while a pod uses
/// it (the persistent volume controller removes the finalizer once none does).
fn protect_claim(claim: &mut Value) {
    let meta = metadata_mut(claim);
    let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == PVC_PROTECTION_FINALIZER)
    {
        list.push(json!(PVC_PROTECTION_FINALIZER));
    }
}

/// The ServiceAccount admission plugin's lookup: a pod naming a service account that does not
/// exist is refused, so a ReplicaSet reports `ReplicaFailure` until the account is made. The
/// namespace's `default` account is Skiff's own to create (a moment after the namespace), so a
/// pod using it is not held to that race.
pub(crate) async fn service_account_exists<S: Store>(
    api: &ApiServer<S>,
    pods: &ResourceInfo,
    namespace: &str,
    pod: &Value,
) -> Result<(), ApiError> {
    let account = ["/spec/serviceAccountName", "/spec/serviceAccount"]
        .iter()
        .find_map(|p| {
            pod.pointer(p)
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
        })
        .unwrap_or("default");
    if account == "default" {
        return Ok(());
    }
    let accounts = skiff_api::registry::find("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::internal("no serviceaccounts resource"))?;
    let found = api
        .store
        .get(&accounts.key(namespace, account))
        .await
        .map_err(|e| store_error(accounts, account, e))?;
    if found.is_some() {
        return Ok(());
    }
    // Kubernetes admits a pod before its name is generated and names it by its prefix then.
    let meta = &pod["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let prefix = meta["generateName"].as_str().unwrap_or_default();
    let generated = !prefix.is_empty()
        && name
            .strip_prefix(prefix)
            .is_some_and(|suffix| suffix.len() == objects::GENERATED_SUFFIX_LEN);
    let name = if generated { prefix } else { name };
    Err(ApiError::forbidden(
        &pods.object_ref(name),
        &format!(
            "error looking up service account {namespace}/{account}: serviceaccount \"{account}\" not found"
        ),
    ))
}

/// The DefaultStorageClass admission plugin: a claim created without `storageClassName` (an
/// empty one asks for no class; the beta annotation still counts as one) gets the class
/// annotated as the default, the newest if several are.
pub(crate) async fn default_storage_class<S: Store>(
    api: &ApiServer<S>,
    claim: &mut Value,
) -> Result<(), ApiError> {
    let named = claim
        .pointer("/spec/storageClassName")
        .is_some_and(|c| !c.is_null())
        || claim
            .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
            .is_some();
    if named {
        return Ok(());
    }
    let classes = skiff_api::registry::find("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("no storageclasses resource"))?;
    let listed = api
        .store
        .list(&classes.key_prefix(), None, 0, None)
        .await
        .map_err(|e| store_error(classes, "", e))?;
    let mut defaults = Vec::new();
    for kv in &listed.items {
        let class = decode(kv)?;
        if class["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true" {
            defaults.push(class);
        }
    }
    // Newest first, then by name, as the plugin sorts them. RFC 3339 UTC times sort as text.
    let newest = defaults.iter().max_by(|a, b| {
        let created = |c: &Value| {
            c["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let name = |c: &Value| c["metadata"]["name"].as_str().unwrap_or("").to_string();
        created(a)
            .cmp(&created(b))
            .then_with(|| name(b).cmp(&name(a)))
    });
    if let Some(class) = newest {
        claim["spec"]["storageClassName"] = class["metadata"]["name"].clone();
    }
    Ok(())
}

/// Builds the next version of `old` from what a client sent, through the same admission as a
/// create. `sub` is the subresource written (`status`, `finalize`) or `None` for the object.
pub(crate) fn admit_update(
    info: &ResourceInfo,
    old: &Value,
    mut new: Value,
    sub: Option<&str>,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    let old_meta = objects::metadata(old).cloned().unwrap_or_default();
    match sub {
        Some("status") => {
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        Some("finalize") => {
            let finalizers = new["spec"]["finalizers"].clone();
            new = old.clone();
            new["spec"]["finalizers"] = finalizers;
        }
        _ => {
            if info.has_subresource("status") {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            let meta = metadata_mut(&mut new);
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                if (field == "name" || field == "namespace" || field == "uid")
                    && let Some(given) = meta
                        .get(field)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                    && old_meta.get(field).and_then(Value::as_str) != Some(given)
                {
                    if field == "uid" {
                        return Err(ApiError::conflict(
                            &info.object_ref(
                                old_meta.get("name").and_then(Value::as_str).unwrap_or(""),
                            ),
                            "Precondition failed: UID in precondition does not match the object",
                        ));
                    }
                    return Err(ApiError::bad_request(format!(
                        "the {field} of the object ({given}) does not match the {field} on the URL ({})",
                        old_meta.get(field).and_then(Value::as_str).unwrap_or("")
                    )));
                }
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            if meta.get("managedFields").is_none()
                && let Some(mf) = old_meta.get("managedFields")
            {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
    }
    let mut new = normalise(info, new)?;
    defaults::apply(info, &mut new);
    if objects::tracks_generation(info) && !objects::spec_equal(old, &new) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        metadata_mut(&mut new).insert("generation".into(), json!(generation));
    }
    invalid(info, &new, validation::validate_update(info, &new, old))?;
    if let Some(manager) = manager {
        patch::record_update(
            info,
            Some(old),
            &mut new,
            manager,
            sub,
            &objects::now_rfc3339(),
        );
    }
    Ok(new)
}

/// Whether an object whose deletion was requested has nothing left holding it: no finalizers,
/// and no grace period still running (a pod's node finishes that with a grace-0 delete).
pub(crate) fn deletion_complete(info: &ResourceInfo, obj: &Value) -> bool {
    objects::is_deleting(obj)
        && objects::finalizers(obj).is_empty()
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .is_none_or(|grace| grace == 0)
        && (info.kind != "Namespace"
            || obj["spec"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty))
}

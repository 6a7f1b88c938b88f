//! Strategic merge patch (apimachinery `pkg/util/strategicpatch`) on wire JSON: maps merge,
//! `null` deletes, lists merge by their patch merge key or as sets where the type says so and
//! are replaced otherwise, and the directives `$patch` (replace/delete/merge), `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` are honoured.

use serde_json::{Map, Value};

use super::merge_keys::{PatchList, Ty};
use crate::status::ApiError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `original`.
pub(crate) fn apply(
    original: &Value,
    patch: Map<String, Value>,
    ty: Ty,
) -> Result<Value, ApiError> {
    let original = original.as_object().cloned().unwrap_or_default();
    merge_map(original, patch, ty).map(Value::Object)
}

/// Errors the API server answers with 400 (`interpretStrategicMergePatchError`).
fn bad_format(what: &str) -> ApiError {
    ApiError::bad_request(format!("invalid patch format of {what}"))
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
) -> Result<Map<String, Value>, ApiError> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => Ok(patch),
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(&directive, &patch)),
        };
    }
    retain_keys(&mut original, &mut patch)?;
    set_element_order(&mut original, &mut patch, ty)?;
    for (key, patch_value) in patch {
        let (key, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(k) => (k.to_string(), true),
            None => (key, false),
        };
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let field_ty = ty.field(&key);
        let merged = match (original.shift_remove(&key), patch_value) {
            (None, _) if delete_list => continue,
            (None, p) => fresh(p, field_ty)?,
            (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(o, p, field_ty)?),
            (Some(Value::Array(o)), Value::Array(p)) => {
                Value::Array(merge_list(o, p, field_ty, delete_list)?)
            }
            (Some(o), _) if delete_list => o,
            (Some(_), p) => fresh(p, field_ty)?,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// A patch value for a field the original lacks: taken as it is, without nulls and directives.
fn fresh(patch: Value, ty: Ty) -> Result<Value, ApiError> {
    Ok(match patch {
        Value::Object(p) => Value::Object(merge_map(Map::new(), p, ty)?),
        Value::Array(p) if ty.patch_list() != PatchList::Replace => {
            Value::Array(merge_list(Vec::new(), p, ty, false)?)
        }
        other => other,
    })
}

/// `$retainKeys`: drop original fields the list does not name (used for union types such as
/// `strategy` or volume sources); every set patch field must be listed.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Some(retain) = retain.as_array() else {
        return Err(bad_format("retainKeys"));
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        let directive =
            k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER);
        if !v.is_null() && !directive && !listed(k) {
            return Err(super::rejected());
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<list>`: merges the list now and orders the result as the directive says,
/// keeping elements only the server has at their relative places.
fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty,
) -> Result<(), ApiError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let Some(Value::Array(order)) = patch.shift_remove(&key) else {
            return Err(bad_format("setElementOrder list"));
        };
        let field = &key[SET_ELEMENT_ORDER.len()..];
        if patch.get(field).is_some_and(Value::is_null) {
            continue;
        }
        let server: Vec<Value> = match original.get(field) {
            None => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(other) => return Err(bad_arg_type("slice", other)),
        };
        let patch_list = match patch.shift_remove(field) {
            None => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(other) => return Err(bad_arg_type("slice", &other)),
        };
        if server.is_empty() && patch_list.is_empty() {
            continue;
        }
        let field_ty = ty.field(field);
        let merged = merge_list(server.clone(), patch_list, field_ty, false)?;
        let key = match field_ty.patch_list() {
            PatchList::Merge(k) => k,
            PatchList::Replace => None,
        };
        original.insert(
            field.to_string(),
            Value::Array(order_elements(merged, &order, &server, key)),
        );
    }
    Ok(())
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    ty: Ty,
    delete_list: bool,
) -> Result<Vec<Value>, ApiError> {
    let key = match ty.patch_list() {
        PatchList::Replace => return Ok(patch),
        PatchList::Merge(key) => key,
    };
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if original.iter().chain(&patch).any(Value::is_array) {
        return Err(super::rejected());
    }
    if !original.iter().chain(&patch).any(Value::is_object) {
        if delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::new();
        for v in original.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        return Ok(order_elements(merged, &patch, &original, None));
    }
    let Some(key) = key else {
        return Err(super::unknown(format!(
            "cannot merge lists without merge key for {}",
            ty.name()
        )));
    };
    let (original, patch) = special_elements(original, patch, key)?;
    let mut merged = original.clone();
    for item in &patch {
        let Some(k) = item.get(key) else {
            return Err(no_merge_key(item, key));
        };
        let pos = merged.iter().position(|o| o.get(key) == Some(k));
        let Value::Object(p) = item.clone() else {
            return Err(bad_arg_type("map", item));
        };
        match pos {
            Some(i) => {
                let o = merged[i].as_object().cloned().unwrap_or_default();
                merged[i] = Value::Object(merge_map(o, p, ty.item())?);
            }
            None => merged.push(fresh(Value::Object(p), ty.item())?),
        }
    }
    Ok(order_elements(merged, &patch, &original, Some(key)))
}

/// Handles elements carrying `$patch`: `delete` removes the original element with that key,
/// `replace` makes the rest of the patch list the whole list.
fn special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(k) = item.get(key) else {
                    return Err(no_merge_key(&item, key));
                };
                original.retain(|o| o.get(key) != Some(k));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(super::unknown(
                    "merging lists cannot yet be specified in the patch",
                ));
            }
            _ => {
                let m = item.as_object().cloned().unwrap_or_default();
                return Err(bad_patch_type(directive, &m));
            }
        }
    }
    if replace {
        return Ok((plain, Vec::new()));
    }
    Ok((original, plain))
}

/// Orders a merged list: elements named by `patch_order` in that order, the others (known only
/// to the server) at their relative places from `server_order`, interleaved as
/// `normalizeElementOrder` does.
fn order_elements(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let id = |v: &Value| match key {
        Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
        None => v.clone(),
    };
    let index = |list: &[Value], v: &Value| list.iter().position(|o| id(o) == id(v));
    let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| index(patch_order, v).is_some());
    patched.sort_by_key(|v| index(patch_order, v));
    server_only.sort_by_key(|v| index(server_order, v).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patched.into_iter().peekable(),
    );
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((index(server_order, l), index(server_order, r)), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Go's `%v` of a decoded JSON value, as apimachinery's error messages print maps.
fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_format(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

fn bad_patch_type(directive: &Value, m: &Map<String, Value>) -> ApiError {
    super::unknown(format!(
        "unknown patch type: {} in map: {}",
        go_format(directive),
        go_format(&Value::Object(m.clone()))
    ))
}

fn no_merge_key(item: &Value, key: &str) -> ApiError {
    super::unknown(format!(
        "map: {} does not contain declared merge key: {key}",
        go_format(item)
    ))
}

fn bad_arg_type(expected: &str, got: &Value) -> ApiError {
    let kind = match got {
        Value::Object(_) => "map",
        Value::Array(_) => "slice",
        Value::String(_) => "string",
        Value::Number(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Null => "nil",
    };
    super::unknown(format!("expected a {expected}, but received a {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

    fn smp(resource: (&str, &str), live: Value, patch: Value) -> Result<Value, ApiError> {
        let info = registry::find(resource.0, "v1", resource.1).unwrap();
        apply(&live, patch.as_object().unwrap().clone(), Ty::of(info))
    }

    const DEPLOY: (&str, &str) = ("apps", "deployments");
    const POD: (&str, &str) = ("", "pods");

    fn pod() -> Value {
        json!({"metadata":{"name":"p","labels":{"a":"1"},"finalizers":["x"]},"spec":{"containers":[
            {"name":"app","image":"app:1","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],
             "ports":[{"containerPort":80}]},
            {"name":"side","image":"side:1"}],"tolerations":[{"key":"k1"}]}})
    }

    #[test]
    fn kubectl_apply_three_way_patch_changes_an_image_and_orders_containers() {
        let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"side"},{"name":"app"}],
            "containers":[{"name":"app","image":"app:2"}]}});
        let out = smp(POD, pod(), patch).unwrap();
        let c = &out["spec"]["containers"];
        assert_eq!(c[0]["name"], "side");
        assert_eq!(c[1]["image"], "app:2");
        assert_eq!(
            c[1]["env"],
            json!([{"name":"A","value":"1"},{"name":"B","value":"2"}])
        );
    }

    #[test]
    fn set_element_order_keeps_server_only_elements_and_deletes() {
        let patch = json!({"spec":{"containers":[{"name":"side","$patch":"delete"},{"name":"new","image":"n"}],
            "$setElementOrder/containers":[{"name":"new"},{"name":"app"}]}});
        let out = smp(POD, pod(), patch).unwrap();
        let names: Vec<&str> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["new", "app"]);
    }

    #[test]
    fn nested_lists_merge_by_their_keys_and_null_deletes() {
        let patch = json!({"metadata":{"labels":{"a":null,"b":"2"}},"spec":{"containers":[{"name":"app",
            "env":[{"name":"B","value":"20"},{"name":"C","value":"3"}],"ports":[{"containerPort":80,"name":"http"}]}]}});
        let out = smp(POD, pod(), patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b":"2"}));
        let app = &out["spec"]["containers"][0];
        let env: Vec<(&str, &str)> = app["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
            .collect();
        // Server-only A keeps its place before the patched B; new C follows B.
        assert_eq!(env, [("A", "1"), ("B", "20"), ("C", "3")]);
        assert_eq!(app["ports"], json!([{"containerPort":80,"name":"http"}]));
    }

    #[test]
    fn lists_without_a_strategy_are_replaced_and_primitive_merge_lists_union() {
        let patch =
            json!({"metadata":{"finalizers":["y","x"]},"spec":{"tolerations":[{"key":"k2"}]}});
        let out = smp(POD, pod(), patch).unwrap();
        assert_eq!(out["spec"]["tolerations"], json!([{"key":"k2"}]));
        assert_eq!(out["metadata"]["finalizers"], json!(["y", "x"]));
        let del = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["x"]}});
        assert_eq!(
            smp(POD, out, del).unwrap()["metadata"]["finalizers"],
            json!(["y"])
        );
    }

    #[test]
    fn patch_replace_and_retain_keys_directives() {
        let live = json!({"spec":{"replicas":1,"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}},
            "template":{"spec":{"containers":[{"name":"a"},{"name":"b"}]}}}});
        let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"},
            "template":{"spec":{"containers":[{"name":"c"},{"$patch":"replace"}]}}}});
        let out = smp(DEPLOY, live, patch).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type":"Recreate"}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name":"c"}])
        );
        let out = smp(
            DEPLOY,
            out,
            json!({"spec":{"strategy":{"$patch":"replace","type":"RollingUpdate"}}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type":"RollingUpdate"}));
    }

    #[test]
    fn malformed_directives_fail_as_kubernetes_does() {
        let e = smp(POD, pod(), json!({"spec":{"containers":[{"image":"x"}]}})).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                500,
                "map: map[image:x] does not contain declared merge key: name"
            )
        );
        let e = smp(POD, pod(), json!({"metadata":{"$patch":"oops"}})).unwrap_err();
        assert_eq!(e.message, "unknown patch type: oops in map: map[]");
        let e = smp(
            DEPLOY,
            json!({}),
            json!({"spec":{"strategy":{"$retainKeys":"type"}}}),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "invalid patch format of retainKeys")
        );
        let e = smp(
            DEPLOY,
            json!({}),
            json!({"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":{}}}}),
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
    }
}

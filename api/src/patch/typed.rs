//! Schema-aware walks over wire JSON that server-side apply and managedFields need, following
//! structured-merge-diff's `typed` package: the field set an applied configuration specifies,
//! the comparison of two objects (added, modified, removed paths), the apply merge of a
//! configuration into a live object, and removal of paths.

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, Path, PathElement};
use super::merge_keys::{ApplyList, Ty, key_default};

/// A list element that cannot be identified: apply refuses the object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{path}: element {index}: associative list with keys has an element that omits key field {key:?} (and doesn't have default value)"
)]
pub(crate) struct MissingKey {
    pub(crate) path: String,
    pub(crate) index: usize,
    pub(crate) key: String,
}

/// The path element naming element `index` of a list at `ty`.
fn item_pe(ty: &Ty, item: &Value, index: usize, path: &Path) -> Result<PathElement, MissingKey> {
    match ty.apply_list() {
        ApplyList::Map(keys) => {
            let mut sorted: Vec<&str> = keys.to_vec();
            sorted.sort_unstable();
            let mut m = Map::new();
            for k in sorted {
                let v = item
                    .get(k)
                    .cloned()
                    .or_else(|| key_default(k))
                    .ok_or_else(|| MissingKey {
                        path: super::fieldpath::path_string(path),
                        index,
                        key: k.to_string(),
                    })?;
                m.insert(k.to_string(), v);
            }
            Ok(PathElement::Key(Value::Object(m).to_string()))
        }
        ApplyList::Set => Ok(PathElement::Value(item.to_string())),
        ApplyList::Atomic => Ok(PathElement::Index(index)),
    }
}

fn is_granular_list(ty: &Ty, v: &Value) -> bool {
    v.is_array() && ty.apply_list() != ApplyList::Atomic
}

fn is_granular_object(ty: &Ty, v: &Value) -> bool {
    v.is_object() && !ty.atomic_object()
}

fn indexed<'v>(
    ty: &Ty,
    list: &'v [Value],
    path: &Path,
) -> Result<Vec<(PathElement, &'v Value)>, MissingKey> {
    list.iter()
        .enumerate()
        .map(|(i, v)| Ok((item_pe(ty, v, i, path)?, v)))
        .collect()
}

/// The fields a configuration specifies (structured-merge-diff `ToFieldSet`): leaves, list
/// elements, map entries, and struct fields set to null or `{}`.
pub(crate) fn to_set(v: &Value, ty: Ty) -> Result<FieldSet, MissingKey> {
    let mut set = FieldSet::default();
    walk_set(v, ty, &mut Vec::new(), &mut set)?;
    Ok(set)
}

fn walk_set(v: &Value, ty: Ty, path: &mut Path, set: &mut FieldSet) -> Result<(), MissingKey> {
    if is_granular_object(&ty, v) {
        for (k, cv) in v.as_object().into_iter().flatten() {
            path.push(PathElement::Field(k.clone()));
            walk_set(cv, ty.field(k), path, set)?;
            let empty = cv.is_null() || cv.as_object().is_some_and(Map::is_empty);
            if empty || !ty.declares(k) {
                set.insert(path);
            }
            path.pop();
        }
    } else if is_granular_list(&ty, v) {
        let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
        for (pe, item) in indexed(&ty, items, path)? {
            path.push(pe);
            walk_set(item, ty.item(), path, set)?;
            set.insert(path);
            path.pop();
        }
    } else if !path.is_empty() {
        set.insert(path);
    }
    Ok(())
}

/// What changed between two objects.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: FieldSet,
    pub(crate) modified: FieldSet,
    pub(crate) removed: FieldSet,
}

impl Comparison {
    /// Added and modified paths: what a writer set.
    pub(crate) fn changed(&self) -> FieldSet {
        let mut s = self.added.clone();
        s.union(&self.modified);
        s
    }

    pub(crate) fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

fn find<'v>(list: &[(PathElement, &'v Value)], pe: &PathElement) -> Option<&'v Value> {
    list.iter().find(|(p, _)| p == pe).map(|(_, v)| *v)
}

/// Compares `old` with `new` (structured-merge-diff `Compare`).
pub(crate) fn compare(old: &Value, new: &Value, ty: Ty) -> Result<Comparison, MissingKey> {
    let mut c = Comparison::default();
    walk_compare(Some(old), Some(new), ty, &mut Vec::new(), &mut c, false)?;
    Ok(c)
}

fn walk_compare(
    l: Option<&Value>,
    r: Option<&Value>,
    ty: Ty,
    path: &mut Path,
    c: &mut Comparison,
    implicit: bool,
) -> Result<(), MissingKey> {
    let both_objects = l.is_none_or(|v| is_granular_object(&ty, v))
        && r.is_none_or(|v| is_granular_object(&ty, v));
    let both_lists =
        l.is_none_or(|v| is_granular_list(&ty, v)) && r.is_none_or(|v| is_granular_list(&ty, v));
    if both_objects {
        let (lm, rm) = (l.and_then(Value::as_object), r.and_then(Value::as_object));
        let keys = lm.into_iter().chain(rm).flat_map(|m| m.keys());
        let mut seen: Vec<&String> = Vec::new();
        for k in keys {
            if seen.contains(&k) {
                continue;
            }
            seen.push(k);
            path.push(PathElement::Field(k.clone()));
            let implicit = ty.always_present(k);
            walk_compare(
                lm.and_then(|m| m.get(k)),
                rm.and_then(|m| m.get(k)),
                ty.field(k),
                path,
                c,
                implicit,
            )?;
            path.pop();
        }
    } else if both_lists {
        let empty = Vec::new();
        let ll = indexed(&ty, l.and_then(Value::as_array).unwrap_or(&empty), path)?;
        let rl = indexed(&ty, r.and_then(Value::as_array).unwrap_or(&empty), path)?;
        let mut pes: Vec<&PathElement> = ll.iter().map(|(p, _)| p).collect();
        for (p, _) in &rl {
            if !pes.contains(&p) {
                pes.push(p);
            }
        }
        for pe in pes {
            path.push(pe.clone());
            walk_compare(find(&ll, pe), find(&rl, pe), ty.item(), path, c, false)?;
            path.pop();
        }
    } else {
        match (l, r) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            (Some(a), Some(b)) if a != b => c.modified.insert(path),
            _ => {}
        }
        return Ok(());
    }
    if !path.is_empty() && !implicit {
        match (l, r) {
            (None, Some(_)) => c.added.insert(path),
            (Some(_), None) => c.removed.insert(path),
            _ => {}
        }
    }
    Ok(())
}

/// Merges an applied configuration into a live object: the configuration's values win, maps
/// and keyed lists merge element by element, atomic values are replaced. Null values drop keys.
pub(crate) fn merge(live: &Value, config: &Value, ty: Ty) -> Result<Value, MissingKey> {
    merge_at(live, config, ty, &mut Vec::new())
}

fn merge_at(live: &Value, config: &Value, ty: Ty, path: &mut Path) -> Result<Value, MissingKey> {
    if let (Some(lm), Some(cm)) = (live.as_object(), config.as_object())
        && !ty.atomic_object()
    {
        let mut out = lm.clone();
        for (k, cv) in cm {
            path.push(PathElement::Field(k.clone()));
            let merged = match lm.get(k) {
                Some(lv) => merge_at(lv, cv, ty.field(k), path)?,
                None => cv.clone(),
            };
            path.pop();
            if merged.is_null() {
                out.remove(k);
            } else {
                out.insert(k.clone(), merged);
            }
        }
        return Ok(Value::Object(out));
    }
    if let (Some(ll), Some(cl)) = (live.as_array(), config.as_array())
        && ty.apply_list() != ApplyList::Atomic
    {
        return merge_lists(ll, cl, ty, path);
    }
    Ok(config.clone())
}

/// Interleaves a live list with a configured one as structured-merge-diff does: live-only
/// elements keep their places, shared and new elements follow the configuration's order, and
/// shared elements are merged with their live twins.
fn merge_lists(
    live: &[Value],
    config: &[Value],
    ty: Ty,
    path: &mut Path,
) -> Result<Value, MissingKey> {
    let l = indexed(&ty, live, path)?;
    let r = indexed(&ty, config, path)?;
    let in_r = |pe: &PathElement| r.iter().any(|(p, _)| p == pe);
    let shared: Vec<&PathElement> = r
        .iter()
        .map(|(p, _)| p)
        .filter(|p| l.iter().any(|(q, _)| q == *p))
        .collect();
    let mut next = 0;
    let mut emitted: Vec<&PathElement> = Vec::new();
    let mut out = Vec::with_capacity(l.len() + r.len());
    let (mut li, mut ri) = (0, 0);
    while li < l.len() || ri < r.len() {
        if li < l.len()
            && ri < r.len()
            && l[li].0 != r[ri].0
            && in_r(&l[li].0)
            && shared.get(next).is_some_and(|s| **s != l[li].0)
        {
            // A shared element whose turn has not come: the configuration places it later.
            li += 1;
            continue;
        }
        if li < l.len() && (ri >= r.len() || l[li].0 != r[ri].0) {
            if !in_r(&l[li].0) {
                out.push(l[li].1.clone());
                li += 1;
                continue;
            }
            if emitted.contains(&&l[li].0) {
                li += 1;
                continue;
            }
        }
        let Some((pe, cv)) = r.get(ri) else {
            li += 1;
            continue;
        };
        if li < l.len() && l[li].0 == *pe {
            li += 1;
        }
        path.push(pe.clone());
        let merged = match l.iter().find(|(p, _)| p == pe) {
            Some((_, lv)) => merge_at(lv, cv, ty.item(), path)?,
            None => (*cv).clone(),
        };
        path.pop();
        out.push(merged);
        emitted.push(pe);
        if shared.get(next) == Some(&pe) {
            next += 1;
        }
        ri += 1;
    }
    Ok(Value::Array(out))
}

/// Removes the subtree at `path` from `v`, if present.
pub(crate) fn remove_path(v: &mut Value, ty: Ty, path: &[PathElement]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match (first, v) {
        (PathElement::Field(f), Value::Object(m)) => {
            if rest.is_empty() {
                m.shift_remove(f);
            } else if let Some(child) = m.get_mut(f) {
                remove_path(child, ty.field(f), rest);
            }
        }
        (pe, Value::Array(items)) => {
            let pos = items
                .iter()
                .enumerate()
                .position(|(i, item)| item_pe(&ty, item, i, &Vec::new()).as_ref() == Ok(pe));
            if let Some(i) = pos {
                if rest.is_empty() {
                    items.remove(i);
                } else {
                    remove_path(&mut items[i], ty.item(), rest);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

    fn deploy() -> Ty<'static> {
        Ty::of(registry::find("apps", "v1", "deployments").unwrap())
    }

    #[test]
    fn apply_set_marks_leaves_items_and_map_entries() {
        let cfg = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"app":"web"}},
            "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"spec":{"containers":[
                {"name":"nginx","image":"nginx:1.25","ports":[{"containerPort":80}]}]}}}});
        let set = to_set(&cfg, deploy()).unwrap();
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:apiVersion":{},"f:kind":{},"f:metadata":{"f:labels":{"f:app":{}},"f:name":{}},
                "f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:spec":{"f:containers":{
                    "k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{
                        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}})
        );
    }

    #[test]
    fn apply_set_refuses_an_element_without_its_key() {
        let cfg = json!({"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}});
        let err = to_set(&cfg, deploy()).unwrap_err();
        assert_eq!(
            err.to_string(),
            ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
    }

    #[test]
    fn compare_marks_new_maps_and_items_but_not_value_structs() {
        let old = json!({"metadata":{"name":"web"},"spec":{"replicas":1}});
        let new = json!({"metadata":{"name":"web","labels":{"app":"web"}},"spec":{"replicas":3,
            "template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}});
        let c = compare(&old, &new, deploy()).unwrap();
        assert_eq!(
            c.added.to_fields_v1(),
            json!({"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{
                "k:{\"name\":\"c\"}":{".":{},"f:image":{},"f:name":{}}}}}}})
        );
        assert_eq!(
            c.modified.to_fields_v1(),
            json!({"f:spec":{"f:replicas":{}}})
        );
        assert!(c.removed.is_empty());
        let back = compare(&new, &old, deploy()).unwrap();
        assert_eq!(
            back.removed.to_fields_v1()["f:metadata"],
            json!({"f:labels":{".":{},"f:app":{}}})
        );
    }

    #[test]
    fn merge_keeps_live_only_elements_in_place() {
        let live = json!({"spec":{"template":{"spec":{"containers":[
            {"name":"a","image":"a:1"},{"name":"side","image":"s"},{"name":"b","image":"b:1"}]}}}});
        let cfg = json!({"spec":{"template":{"spec":{"containers":[
            {"name":"b","image":"b:2"},{"name":"a","image":"a:2"},{"name":"c","image":"c"}]}}}});
        let merged = merge(&live, &cfg, deploy()).unwrap();
        let names: Vec<(&str, &str)> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["image"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [("side", "s"), ("b", "b:2"), ("a", "a:2"), ("c", "c")]
        );
    }

    #[test]
    fn remove_path_drops_keyed_elements_and_fields() {
        let mut v = json!({"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"a"},{"name":"b"}]}}}});
        remove_path(
            &mut v,
            deploy(),
            &[
                PathElement::Field("spec".into()),
                PathElement::Field("replicas".into()),
            ],
        );
        let path = [
            PathElement::Field("spec".into()),
            PathElement::Field("template".into()),
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key("{\"name\":\"a\"}".into()),
        ];
        remove_path(&mut v, deploy(), &path);
        assert_eq!(
            v,
            json!({"spec":{"template":{"spec":{"containers":[{"name":"b"}]}}}})
        );
    }
}

//! [`LabelSelector`]: the requirements a label set must meet, from the query string form or from a
//! `metav1.LabelSelector` object, with apimachinery's matching rules and canonical string form.

use std::fmt;

use serde_json::{Map, Value};

use super::{go_quote, label_parse};
use crate::validation::names::{label_value, qualified_name};
use crate::{ApiError, FieldError, status::CauseType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` term; a selector is the AND of its requirements.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Requirement {
    pub(super) key: String,
    op: Operator,
    values: Vec<String>,
}

/// `field: Invalid value: "key": ...` for a malformed key, as `validateLabelKey` words it.
pub(super) fn key_error(field: &str, key: &str) -> Option<String> {
    let errs = qualified_name(key);
    (!errs.is_empty()).then(|| {
        format!(
            "{field}: Invalid value: {}: {}",
            go_quote(key),
            errs.join("; ")
        )
    })
}

/// Go's JSON rendering of a `[]string` bad value.
fn render_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_string())
}

impl Requirement {
    /// apimachinery `labels.NewRequirement`: the checks and the aggregated message it returns.
    /// Field paths are relative (`key`, `values[0]`) because `labels.Parse` passes no root path.
    pub(super) fn new(key: String, op: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errs: Vec<String> = key_error("key", &key).into_iter().collect();
        let bad_count =
            |detail: &str| format!("values: Invalid value: {}: {detail}", render_list(&values));
        match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errs.push(bad_count(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(bad_count(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(bad_count(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(bad_count(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = label_value(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    msgs.join("; ")
                ));
            }
        }
        if errs.is_empty() {
            Ok(Self { key, op, values })
        } else {
            Err(aggregate(errs))
        }
    }

    /// Whether a label set whose value for this key is `text` meets the requirement.
    fn matches(&self, text: Option<&str>) -> bool {
        let has_value = || text.is_some_and(|t| self.values.iter().any(|v| v == t));
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => has_value(),
            Operator::NotIn | Operator::NotEquals => text.is_none() || !has_value(),
            Operator::Exists => text.is_some(),
            Operator::DoesNotExist => text.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [wanted]) = (text, self.values.as_slice()) else {
                    return false;
                };
                match (actual.parse::<i64>(), wanted.parse::<i64>()) {
                    (Ok(a), Ok(w)) if self.op == Operator::GreaterThan => a > w,
                    (Ok(a), Ok(w)) => a < w,
                    _ => false,
                }
            }
        }
    }
}

/// `utilerrors.Aggregate`'s message: one error alone, several as `[a, b]` without repeats.
fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = Vec::with_capacity(errs.len());
    errs.retain(|e| {
        let fresh = !seen.contains(e);
        seen.push(e.clone());
        fresh
    });
    if errs.len() == 1 {
        errs.remove(0)
    } else {
        format!("[{}]", errs.join(", "))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, op) = match self.op {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return write!(f, "{}", self.key),
            Operator::Equals => ("", "="),
            Operator::DoubleEquals => ("", "=="),
            Operator::NotEquals => ("", "!="),
            Operator::GreaterThan => ("", ">"),
            Operator::LessThan => ("", "<"),
            Operator::In => ("(", " in "),
            Operator::NotIn => ("(", " notin "),
        };
        let mut values = self.values.clone();
        values.sort();
        write!(f, "{}{op}{prefix}{}", self.key, values.join(","))?;
        if prefix.is_empty() {
            Ok(())
        } else {
            write!(f, ")")
        }
    }
}

/// A label selector. The empty selector selects everything; a selector built from a JSON `null`
/// (no selector object at all) selects nothing, as `metav1.LabelSelectorAsSelector` decides.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    matches_nothing: bool,
}

impl LabelSelector {
    fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            matches_nothing: false,
        }
    }

    /// Selects nothing (a missing `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// The `?labelSelector=` string form: `a=b,c!=d,e in (x,y),f notin (z),g,!h`, also `==`,
    /// `>` and `<`. Errors are BadRequest with `labels.Parse`'s wording.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        label_parse::parse(s)
            .map(Self::from_requirements)
            .map_err(ApiError::bad_request)
    }

    /// A selector matching exactly the given labels (`labels.SelectorFromSet`), as Services and
    /// ReplicationControllers select pods. Values that are not strings cannot match.
    pub fn from_labels(labels: &Map<String, Value>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Operator::Equals,
                values: vec![v.as_str().map(str::to_string).unwrap_or_default()],
            })
            .collect();
        Self::from_requirements(requirements)
    }

    /// A `metav1.LabelSelector` object. Errors are field errors under `path`
    /// (`spec.selector.matchExpressions[0].values`) worded as `ValidateLabelSelector` words them.
    pub fn from_object(sel: &Value, path: &str) -> Result<Self, Vec<FieldError>> {
        let obj = match sel {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(obj) => obj,
            other => return Err(vec![FieldError::invalid(path, other, "must be an object")]),
        };
        let mut errs = Vec::new();
        let mut requirements = Vec::new();

        let labels_path = format!("{path}.matchLabels");
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    label_name_errors(&labels_path, k, &mut errs);
                    let Some(v) = v.as_str() else {
                        errs.push(FieldError::invalid(&labels_path, v, "must be a string"));
                        continue;
                    };
                    for msg in label_value(v) {
                        errs.push(FieldError::invalid(&labels_path, &v.into(), msg));
                    }
                    requirements.push(Requirement {
                        key: k.clone(),
                        op: Operator::Equals,
                        values: vec![v.to_string()],
                    });
                }
            }
            Some(other) => errs.push(FieldError::invalid(
                &labels_path,
                other,
                "must be an object",
            )),
        }

        let exprs_path = format!("{path}.matchExpressions");
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    let expr_path = format!("{exprs_path}[{i}]");
                    if let Some(r) = expression(expr, &expr_path, &mut errs) {
                        requirements.push(r);
                    }
                }
            }
            Some(other) => errs.push(FieldError::invalid(&exprs_path, other, "must be a list")),
        }

        if errs.is_empty() {
            Ok(Self::from_requirements(requirements))
        } else {
            Err(errs)
        }
    }

    /// Labels that are not strings (never stored: validation refuses them) read as empty.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.matches_lookup(|key| labels.get(key).map(|v| v.as_str().unwrap_or_default()))
    }

    /// Matches the label set that `label` looks values up in, such as a typed object's
    /// `BTreeMap` of labels.
    pub fn matches_lookup<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(label(&r.key)))
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }
}

/// `ValidateLabelName`: one error per message, all on the same field.
fn label_name_errors(field: &str, key: &str, errs: &mut Vec<FieldError>) {
    for msg in qualified_name(key) {
        errs.push(FieldError::invalid(field, &key.into(), msg));
    }
}

/// One `matchExpressions` entry: its requirement, or its errors pushed onto `errs`.
fn expression(expr: &Value, path: &str, errs: &mut Vec<FieldError>) -> Option<Requirement> {
    let before = errs.len();
    let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
    let operator = expr
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let values_path = format!("{path}.values");
    let values: Vec<String> = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    errs.push(FieldError::invalid(
                        format!("{values_path}[{i}]"),
                        v,
                        "must be a string",
                    ));
                    None
                }
            })
            .collect(),
        Some(other) => {
            errs.push(FieldError::invalid(&values_path, other, "must be a list"));
            Vec::new()
        }
    };
    let op = match operator {
        "In" | "NotIn" => {
            if values.is_empty() {
                errs.push(FieldError::new(
                    CauseType::FieldValueRequired,
                    &values_path,
                    "Required value: must be specified when `operator` is 'In' or 'NotIn'"
                        .to_string(),
                ));
            }
            if operator == "In" {
                Operator::In
            } else {
                Operator::NotIn
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errs.push(FieldError::forbidden(
                    &values_path,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
            if operator == "Exists" {
                Operator::Exists
            } else {
                Operator::DoesNotExist
            }
        }
        _ => {
            errs.push(FieldError::invalid(
                format!("{path}.operator"),
                &operator.into(),
                "not a valid selector operator",
            ));
            Operator::In
        }
    };
    label_name_errors(&format!("{path}.key"), key, errs);
    for (i, v) in values.iter().enumerate() {
        for msg in label_value(v) {
            errs.push(FieldError::invalid(
                format!("{values_path}[{i}]"),
                &v.as_str().into(),
                msg,
            ));
        }
    }
    (errs.len() == before).then(|| Requirement {
        key: key.to_string(),
        op,
        values,
    })
}

/// The canonical string form (`labels.Selector.String()`): requirements sorted by key, set values
/// sorted, e.g. `app=web,tier in (back,front)`. This is what Scale's `status.selector` carries.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::names::tests::{LABEL_VALUE_ERR, QUALIFIED_NAME_ERR};

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn errors(sel: Value) -> Vec<String> {
        LabelSelector::from_object(&sel, "spec.selector")
            .expect_err("invalid")
            .iter()
            .map(|e| format!("{} {}", e.cause.as_str(), e.display()))
            .collect()
    }

    #[test]
    fn builds_from_a_label_selector_object() {
        let sel = LabelSelector::from_object(
            &json!({
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["front", "back"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "zone", "operator": "Exists"}
                ]
            }),
            "spec.selector",
        )
        .expect("valid");
        assert_eq!(
            sel.to_string(),
            "app=web,!canary,env notin (dev),tier in (back,front),zone"
        );
        assert!(sel.matches(&labels(json!({"app": "web", "tier": "back", "zone": "a"}))));
        assert!(!sel.matches(&labels(json!({"app": "web", "tier": "mid", "zone": "a"}))));
        assert!(!sel.matches(&labels(json!({"app": "web", "tier": "back"}))));

        let everything = LabelSelector::from_object(&json!({}), "spec.selector").expect("{}");
        assert!(everything.is_empty());
        assert!(everything.matches(&Map::new()));
        assert_eq!(everything.to_string(), "");

        let nothing = LabelSelector::from_object(&Value::Null, "spec.selector").expect("null");
        assert!(!nothing.is_empty());
        assert!(!nothing.matches(&Map::new()));
    }

    #[test]
    fn object_errors_read_as_validate_label_selector_words_them() {
        assert_eq!(
            errors(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
            [
                "FieldValueRequired spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
            ]
        );
        assert_eq!(
            errors(
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
            ),
            [
                "FieldValueForbidden spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            ]
        );
        assert_eq!(
            errors(json!({"matchExpressions": [{}, {"key": "b", "operator": "Gt", "values": ["1"]}]})),
            [
                "FieldValueInvalid spec.selector.matchExpressions[0].operator: Invalid value: \"\": not a valid selector operator".to_string(),
                "FieldValueInvalid spec.selector.matchExpressions[0].key: Invalid value: \"\": name part must be non-empty".to_string(),
                format!("FieldValueInvalid spec.selector.matchExpressions[0].key: Invalid value: \"\": name part {}", QUALIFIED_NAME_ERR),
                "FieldValueInvalid spec.selector.matchExpressions[1].operator: Invalid value: \"Gt\": not a valid selector operator".to_string(),
            ]
        );
        assert_eq!(
            errors(
                json!({"matchLabels": {"-a": "b c"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["ok", "not ok"]}]})
            ),
            [
                format!(
                    "FieldValueInvalid spec.selector.matchLabels: Invalid value: \"-a\": name part {}",
                    QUALIFIED_NAME_ERR
                ),
                format!(
                    "FieldValueInvalid spec.selector.matchLabels: Invalid value: \"b c\": {}",
                    LABEL_VALUE_ERR
                ),
                format!(
                    "FieldValueInvalid spec.selector.matchExpressions[0].values[1]: Invalid value: \"not ok\": {}",
                    LABEL_VALUE_ERR
                ),
            ]
        );
        assert_eq!(
            errors(json!("app=web")),
            ["FieldValueInvalid spec.selector: Invalid value: \"app=web\": must be an object"]
        );
    }

    #[test]
    fn selects_exactly_a_label_set() {
        let sel = LabelSelector::from_labels(&labels(json!({"tier": "web", "app": "shop"})));
        assert_eq!(sel.to_string(), "app=shop,tier=web");
        assert!(sel.matches(&labels(json!({"app": "shop", "tier": "web", "x": "y"}))));
        assert!(!sel.matches(&labels(json!({"app": "shop"}))));
        assert!(LabelSelector::from_labels(&Map::new()).is_empty());
    }
}

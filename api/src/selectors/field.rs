//! [`FieldSelector`]: `?fieldSelector=` terms (`a=b`, `a==b`, `a!=b`, comma-joined, `\`-escaped),
//! restricted per kind to the fields the Kubernetes API server lets clients select on
//! (its `AddFieldLabelConversionFunc` tables) and matched against the values its
//! `ToSelectableFields` functions derive from an object.

use serde_json::Value;

use crate::{ApiError, ResourceInfo};

/// Kinds with their own selectable fields; everything else offers only name and namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selectable {
    Pod,
    Node,
    Namespace,
    Secret,
    Service,
    ReplicationController,
    CoreEvent,
    Job,
    Generic,
}

impl Selectable {
    fn of(info: &ResourceInfo) -> Self {
        match (&*info.group, &*info.kind) {
            ("", "Pod") => Self::Pod,
            ("", "Node") => Self::Node,
            ("", "Namespace") => Self::Namespace,
            ("", "Secret") => Self::Secret,
            ("", "Service") => Self::Service,
            ("", "ReplicationController") => Self::ReplicationController,
            ("", "Event") => Self::CoreEvent,
            ("batch", "Job") => Self::Job,
            _ => Self::Generic,
        }
    }

    fn fields(self) -> &'static [&'static str] {
        const META: &[&str] = &["metadata.name", "metadata.namespace"];
        match self {
            Self::Pod => &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            // Nodes and Namespaces are cluster-scoped: Kubernetes refuses metadata.namespace.
            Self::Node => &["metadata.name", "spec.unschedulable"],
            Self::Namespace => &["metadata.name", "status.phase"],
            Self::Secret => &["metadata.name", "metadata.namespace", "type"],
            Self::Service => &[
                "metadata.name",
                "metadata.namespace",
                "spec.clusterIP",
                "spec.type",
            ],
            Self::ReplicationController => {
                &["metadata.name", "metadata.namespace", "status.replicas"]
            }
            Self::CoreEvent => &[
                "metadata.name",
                "metadata.namespace",
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            Self::Job => &["metadata.name", "metadata.namespace", "status.successful"],
            Self::Generic => META,
        }
    }

    /// The field a label names, or the error Kubernetes' conversion function returns for it.
    fn convert(self, label: &str) -> Result<String, String> {
        if self == Self::Pod && label == "spec.host" {
            // Old v1 clients' name for spec.nodeName, still accepted.
            return Ok("spec.nodeName".to_string());
        }
        if self.fields().contains(&label) {
            return Ok(label.to_string());
        }
        Err(match self {
            Self::Generic => format!(
                "\"{label}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            ),
            Self::Job => format!("field label \"{label}\" not supported for Job"),
            _ => format!("field label not supported: {label}"),
        })
    }

    /// The value an object shows for a selectable field, as `ToSelectableFields` renders it:
    /// absent strings are `""`, booleans `true`/`false`, counters decimal.
    fn value(self, obj: &Value, field: &str) -> String {
        let text = |pointer: &str| {
            obj.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let flag = |pointer: &str| {
            obj.pointer(pointer)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()
        };
        let count = |pointer: &str| {
            obj.pointer(pointer)
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string()
        };
        match (self, field) {
            (Self::Pod, "spec.hostNetwork") => flag("/spec/hostNetwork"),
            // The internal Pod keeps only podIPs; podIP is its first entry.
            (Self::Pod, "status.podIP") => obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| text("/status/podIP")),
            // Accepted by the conversion function but absent from the field set.
            (Self::Pod, "status.podIPs") => String::new(),
            (Self::Node, "spec.unschedulable") => flag("/spec/unschedulable"),
            (Self::ReplicationController, "status.replicas") => count("/status/replicas"),
            (Self::Job, "status.successful") => count("/status/succeeded"),
            (Self::CoreEvent, "source") => {
                let component = text("/source/component");
                if component.is_empty() {
                    text("/reportingComponent")
                } else {
                    component
                }
            }
            _ => text(&format!("/{}", field.replace('.', "/"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    field: String,
    value: String,
    /// `!=` rather than `=` / `==`.
    negated: bool,
}

/// A parsed field selector for one resource; the empty selector selects everything.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSelector {
    selectable: Selectable,
    terms: Vec<Term>,
}

impl FieldSelector {
    /// `?fieldSelector=` for the resource `info`. Errors are BadRequest with the messages of
    /// apimachinery `fields.ParseSelector` and of the kind's field label conversion.
    pub fn parse(info: &ResourceInfo, s: &str) -> Result<Self, ApiError> {
        let selectable = Selectable::of(info);
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut parsed = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape(rhs).map_err(ApiError::bad_request)?;
            parsed.push((lhs, op == "!=", value));
        }
        // Conversion runs over the whole parsed selector, so syntax errors anywhere come first.
        let terms = parsed
            .into_iter()
            .map(|(lhs, negated, value)| {
                Ok(Term {
                    field: selectable.convert(lhs)?,
                    value,
                    negated,
                })
            })
            .collect::<Result<_, String>>()
            .map_err(ApiError::bad_request)?;
        Ok(Self { selectable, terms })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| (self.selectable.value(obj, &t.field) == t.value) != t.negated)
    }

    /// `Some(name)` when the selector pins `metadata.name=NAME` (kubectl wait and get -w do).
    pub fn exact_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == "metadata.name" && !t.negated)
            .map(|t| t.value.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Splits on commas not escaped by a backslash; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// `lhs op rhs` at the first operator; `!=` and `==` win over `=` at the same position.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        ["!=", "==", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .map(|op| (&term[..i], op, &rest[op.len()..]))
    })
}

/// Undoes `\\`, `\,` and `\=`; a bare `,` or `=` in a value is refused, as Kubernetes does.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                ));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v: its code point in decimal.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry;

    fn info(group: &str, plural: &str) -> &'static ResourceInfo {
        registry::find(group, "v1", plural).expect(plural)
    }

    fn sel(group: &str, plural: &str, s: &str) -> FieldSelector {
        FieldSelector::parse(info(group, plural), s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(group: &str, plural: &str, s: &str) -> String {
        let e = FieldSelector::parse(info(group, plural), s).expect_err(s);
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        e.message
    }

    #[test]
    fn selects_pods_by_their_selectable_fields() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}]}
        });
        for s in [
            "",
            "metadata.name=web-1",
            "metadata.namespace==shop,spec.nodeName=n1",
            "spec.host=n1",
            "status.phase!=Pending,spec.restartPolicy=Always",
            "spec.hostNetwork=false",
            "status.podIP=10.0.0.9",
            "status.podIPs=",
            "status.nominatedNodeName=",
            "spec.schedulerName=default-scheduler,spec.serviceAccountName=default",
        ] {
            assert!(sel("", "pods", s).matches(&pod), "{s}");
        }
        for s in [
            "metadata.name=web-2",
            "spec.nodeName=",
            "status.phase!=Running",
            "spec.hostNetwork=true",
        ] {
            assert!(!sel("", "pods", s).matches(&pod), "{s}");
        }
    }

    #[test]
    fn derives_values_as_kubernetes_renders_them() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(sel("", "nodes", "spec.unschedulable=true").matches(&node));
        assert!(
            sel("", "nodes", "spec.unschedulable=false")
                .matches(&json!({"metadata": {"name": "n2"}}))
        );

        let job = json!({"metadata": {"name": "j"}, "status": {"succeeded": 3}});
        assert!(sel("batch", "jobs", "status.successful=3").matches(&job));
        assert!(
            sel("batch", "jobs", "status.successful=0")
                .matches(&json!({"metadata": {"name": "j"}}))
        );

        let rc = json!({"metadata": {"name": "rc"}, "status": {"replicas": 2}});
        assert!(sel("", "replicationcontrollers", "status.replicas=2").matches(&rc));

        let event = json!({
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "uid": "u1"},
            "reason": "Scheduled", "type": "Normal", "reportingComponent": "default-scheduler"
        });
        let s = "involvedObject.kind=Pod,involvedObject.name=web-1,involvedObject.uid=u1,reason=Scheduled,type=Normal,source=default-scheduler,involvedObject.namespace=";
        assert!(sel("", "events", s).matches(&event));

        let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
        assert!(sel("", "secrets", "type=kubernetes.io/tls").matches(&secret));
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.1"}});
        assert!(
            sel(
                "",
                "services",
                "spec.type=NodePort,spec.clusterIP=10.96.0.1"
            )
            .matches(&svc)
        );
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert!(sel("", "namespaces", "status.phase=Active").matches(&ns));
        assert!(
            sel("", "configmaps", "metadata.namespace=")
                .matches(&json!({"metadata": {"name": "c"}}))
        );
    }

    #[test]
    fn pins_a_name_for_get_and_watch() {
        assert_eq!(
            sel("", "pods", "metadata.name=web").exact_name(),
            Some("web")
        );
        assert_eq!(
            sel(
                "apps",
                "deployments",
                "metadata.namespace=a,metadata.name==web"
            )
            .exact_name(),
            Some("web")
        );
        assert_eq!(sel("", "pods", "metadata.name!=web").exact_name(), None);
        assert_eq!(sel("", "pods", "spec.nodeName=web").exact_name(), None);
        assert!(sel("", "pods", "").is_empty());
        assert!(sel("", "pods", ",").is_empty());
    }

    #[test]
    fn unescapes_values() {
        let obj = json!({"metadata": {"name": "a,b=c\\d"}});
        assert!(sel("", "configmaps", r"metadata.name=a\,b\=c\\d").matches(&obj));
        assert_eq!(
            err("", "configmaps", "metadata.name=a=b"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            err("", "configmaps", r"metadata.name=a\x"),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            err("", "configmaps", r"metadata.name=a\"),
            r"invalid field selector: invalid escape sequence: \"
        );
    }

    #[test]
    fn refuses_unknown_fields_with_each_kinds_message() {
        assert_eq!(
            err("", "configmaps", "spec.foo=bar"),
            "\"spec.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(
            err("apps", "replicasets", "status.replicas=1"),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(err("", "pods", "foo=bar"), "field label not supported: foo");
        assert_eq!(
            err("", "nodes", "metadata.namespace=x"),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            err("batch", "jobs", "status.failed=1"),
            "field label \"status.failed\" not supported for Job"
        );
        assert_eq!(
            err("", "pods", "metadata.name"),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        // Every term is parsed before any field is checked.
        assert_eq!(
            err("", "pods", "aaa=1,zzz"),
            "invalid selector: 'aaa=1,zzz'; can't understand 'zzz'"
        );
        // Terms are checked in sorted order.
        assert_eq!(
            err("", "pods", "zzz=1,bbb=2"),
            "field label not supported: bbb"
        );
    }
}

//! Stored objects changed without decoding them. Watches send most objects as stored, and a
//! bind changes two fields of a pod: a scan of where the values are, and one copy with the
//! changes spliced in, cost a fraction of a parse into a `Value` and its re-encoding.

use std::ops::Range;

use serde_json::Value;

/// A stored object as JSON with its resourceVersion, made without decoding it (see
/// [`stamp_stored`]), and where its metadata is within it.
#[derive(Debug)]
pub struct Stamped {
    pub json: Vec<u8>,
    /// The metadata object, within `json`.
    pub metadata: Range<usize>,
    pub namespace: Option<String>,
}

/// What [`super::objects::decode_stored`] and re-encoding would give, as bytes: `bytes` with
/// `metadata.resourceVersion` set to `revision`. `None` when the bytes are not an object this
/// scan understands; callers then decode.
pub fn stamp_stored(bytes: &[u8], revision: u64) -> Option<Stamped> {
    let rv = format!("\"{revision}\"");
    let top = Object::whole(bytes)?;
    let mut splice = Splice::new(bytes);
    let (metadata, namespace) = match top.member(b"metadata") {
        Some(value) => {
            let metadata = Object::at(bytes, value.start)?;
            let namespace = metadata
                .member(b"namespace")
                .and_then(|v| serde_json::from_slice::<String>(&bytes[v]).ok());
            splice.set(&metadata, b"resourceVersion", rv.as_bytes());
            (
                splice.position(value.start)..splice.position(value.end),
                namespace,
            )
        }
        None => {
            let value = format!("{{\"resourceVersion\":{rv}}}");
            splice.set(&top, b"metadata", value.as_bytes());
            // The new member ends where the closing brace now is.
            let end = splice.position(top.close);
            (end - value.len()..end, None)
        }
    };
    Some(Stamped {
        json: splice.apply(),
        metadata,
        namespace,
    })
}

/// Why a pod cannot be bound; the API server words each as Kubernetes does.
#[derive(Debug, PartialEq, Eq)]
pub enum BindRefusal {
    AlreadyBound(String),
    Deleting,
    UidMismatch {
        expected: String,
        actual: String,
    },
    /// Not a stored pod this scan understands.
    Unreadable,
}

/// `bytes` of a stored pod bound to `node`, as Kubernetes' binding storage does it: `spec.nodeName`
/// set and a `PodScheduled=True` condition replacing any earlier verdict. `uid` is the binding's
/// precondition.
pub fn bind_stored(
    bytes: &[u8],
    node: &str,
    uid: Option<&str>,
    now: &str,
) -> Result<Vec<u8>, BindRefusal> {
    let string = |range: Option<Range<usize>>| {
        range.and_then(|r| {
            serde_json::from_slice::<Option<String>>(&bytes[r])
                .ok()
                .flatten()
        })
    };
    let top = Object::whole(bytes).ok_or(BindRefusal::Unreadable)?;
    let metadata = top
        .member(b"metadata")
        .and_then(|m| Object::at(bytes, m.start))
        .ok_or(BindRefusal::Unreadable)?;
    let spec = top
        .member(b"spec")
        .and_then(|s| Object::at(bytes, s.start))
        .ok_or(BindRefusal::Unreadable)?;
    if let Some(current) = string(spec.member(b"nodeName")).filter(|n| !n.is_empty()) {
        return Err(BindRefusal::AlreadyBound(current));
    }
    if string(metadata.member(b"deletionTimestamp")).is_some() {
        return Err(BindRefusal::Deleting);
    }
    let actual = string(metadata.member(b"uid")).unwrap_or_default();
    if let Some(expected) = uid.filter(|u| !u.is_empty() && *u != actual) {
        return Err(BindRefusal::UidMismatch {
            expected: expected.to_string(),
            actual,
        });
    }
    let status_object = top
        .member(b"status")
        .map(|s| Object::at(bytes, s.start).ok_or(BindRefusal::Unreadable))
        .transpose()?;
    let mut conditions: Vec<Value> = status_object
        .as_ref()
        .and_then(|s| s.member(b"conditions"))
        .and_then(|c| serde_json::from_slice(&bytes[c]).ok())
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    conditions.push(serde_json::json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": now,
    }));
    let conditions = serde_json::to_vec(&conditions).map_err(|_| BindRefusal::Unreadable)?;
    let node = serde_json::to_vec(node).map_err(|_| BindRefusal::Unreadable)?;

    let mut splice = Splice::new(bytes);
    splice.set(&spec, b"nodeName", &node);
    match &status_object {
        Some(status) => splice.set(status, b"conditions", &conditions),
        None => {
            let mut value = b"{\"conditions\":".to_vec();
            value.extend_from_slice(&conditions);
            value.push(b'}');
            splice.set(&top, b"status", &value);
        }
    }
    Ok(splice.apply())
}

/// An object found by [`Scan`]: its members (key with quotes, value) and its closing brace.
struct Object<'a> {
    bytes: &'a [u8],
    members: Vec<(Range<usize>, Range<usize>)>,
    close: usize,
}

impl<'a> Object<'a> {
    /// The object that is the whole of `bytes` (whitespace around it allowed).
    fn whole(bytes: &'a [u8]) -> Option<Self> {
        let mut scan = Scan { bytes, at: 0 };
        let (members, close) = scan.members()?;
        scan.space();
        (scan.at == bytes.len()).then_some(Self {
            bytes,
            members,
            close,
        })
    }

    /// The object that starts at `at`.
    fn at(bytes: &'a [u8], at: usize) -> Option<Self> {
        let (members, close) = Scan { bytes, at }.members()?;
        Some(Self {
            bytes,
            members,
            close,
        })
    }

    /// Where the value of member `name` is (names are compared as written: stored JSON is
    /// serde_json's, which escapes nothing in the field names Kubernetes uses).
    fn member(&self, name: &[u8]) -> Option<Range<usize>> {
        self.members
            .iter()
            .find(|(k, _)| self.bytes.get(k.start + 1..k.end - 1) == Some(name))
            .map(|(_, v)| v.clone())
    }
}

/// Replacements of ranges of a JSON document, made in one copy. Ranges must not overlap.
struct Splice<'a> {
    bytes: &'a [u8],
    edits: Vec<(Range<usize>, Vec<u8>)>,
}

impl<'a> Splice<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            edits: Vec::new(),
        }
    }

    /// Sets member `name` of `object` to `value` (raw JSON): in place if present, else appended.
    fn set(&mut self, object: &Object<'_>, name: &[u8], value: &[u8]) {
        match object.member(name) {
            Some(old) => self.edits.push((old, value.to_vec())),
            None => {
                let mut member = Vec::with_capacity(name.len() + value.len() + 4);
                if !object.members.is_empty() {
                    member.push(b',');
                }
                member.push(b'"');
                member.extend_from_slice(name);
                member.extend_from_slice(b"\":");
                member.extend_from_slice(value);
                self.edits.push((object.close..object.close, member));
            }
        }
    }

    /// Where offset `at` of the original lands in the result.
    fn position(&self, at: usize) -> usize {
        self.edits
            .iter()
            .filter(|(range, _)| range.end <= at)
            .fold(at, |at, (range, with)| at + with.len() - range.len())
    }

    fn apply(mut self) -> Vec<u8> {
        self.edits.sort_by_key(|(range, _)| range.start);
        let grown: usize = self.edits.iter().map(|(_, with)| with.len()).sum();
        let mut out = Vec::with_capacity(self.bytes.len() + grown);
        let mut at = 0;
        for (range, with) in &self.edits {
            out.extend_from_slice(&self.bytes[at..range.start]);
            out.extend_from_slice(with);
            at = range.end;
        }
        out.extend_from_slice(&self.bytes[at..]);
        out
    }
}

/// A cursor over JSON that finds where values are without decoding them.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// A string, quotes included.
    fn string(&mut self) -> Option<Range<usize>> {
        self.space();
        let start = self.at;
        (self.peek()? == b'"').then_some(())?;
        self.at += 1;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return Some(start..self.at);
                }
                _ => self.at += 1,
            }
        }
    }

    fn value(&mut self) -> Option<Range<usize>> {
        self.space();
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                ) {
                    self.at += 1;
                }
                (self.at > start).then_some(())?;
            }
        }
        Some(start..self.at)
    }

    /// The members (key, value) of the object at the cursor, and where its closing brace is.
    #[allow(clippy::type_complexity)]
    fn members(&mut self) -> Option<(Vec<(Range<usize>, Range<usize>)>, usize)> {
        self.space();
        (self.peek()? == b'{').then_some(())?;
        self.at += 1;
        let mut members = Vec::new();
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some((members, self.at - 1));
        }
        loop {
            let key = self.string()?;
            self.space();
            (self.peek()? == b':').then_some(())?;
            self.at += 1;
            let value = self.value()?;
            members.push((key, value));
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some((members, self.at - 1));
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::objects::{decode_stored, meta_str};
    use serde_json::json;

    #[test]
    fn stamping_matches_decoding_and_reencoding() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "ns",
                   "labels": {"x": "}{\"]["}}, "spec": {"containers": [{"args": ["\\", "\"", "{"]}]}}),
            json!({"kind": "Node", "metadata": {"name": "n", "resourceVersion": "3"}, "n": [1, -2.5e3, true, null]}),
            json!({"kind": "Empty", "metadata": {}}),
            json!({"kind": "NoMetadata"}),
            json!({}),
        ];
        for object in objects {
            let bytes = serde_json::to_vec(&object).expect("encodes");
            let stamped = stamp_stored(&bytes, 42).expect("a stored object");
            let decoded = decode_stored(&bytes, 42).expect("decodes");
            assert_eq!(
                String::from_utf8_lossy(&stamped.json),
                serde_json::to_string(&decoded).expect("encodes"),
                "for {object}"
            );
            let metadata: Value = serde_json::from_slice(&stamped.json[stamped.metadata.clone()])
                .expect("the metadata range is its value");
            assert_eq!(metadata, decoded["metadata"]);
            assert_eq!(
                stamped.namespace.as_deref(),
                meta_str(&decoded, "namespace")
            );
        }
        assert!(stamp_stored(b"[1]", 1).is_none());
        assert!(stamp_stored(b"{\"a\":1} x", 1).is_none());
        assert!(stamp_stored(b"{\"a\":", 1).is_none());
    }

    fn bind(pod: &Value, uid: Option<&str>) -> Result<Value, BindRefusal> {
        let bytes = serde_json::to_vec(pod).expect("encodes");
        bind_stored(&bytes, "node-1", uid, "2026-01-02T03:04:05Z")
            .map(|b| serde_json::from_slice(&b).expect("a bound pod is JSON"))
    }

    #[test]
    fn binding_sets_the_node_and_the_scheduled_condition() {
        let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                               "lastTransitionTime": "2026-01-02T03:04:05Z"});
        // No status yet; a tricky string elsewhere.
        let pod = json!({"metadata": {"name": "p", "uid": "u1", "annotations": {"a": "\"nodeName\":{"}},
                         "spec": {"containers": [{"name": "c"}], "nodeName": ""}});
        let mut expected = pod.clone();
        expected["spec"]["nodeName"] = json!("node-1");
        expected["status"] = json!({"conditions": [scheduled]});
        assert_eq!(bind(&pod, Some("u1")), Ok(expected));

        // An earlier verdict is replaced; other conditions and fields stay, in their order.
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": []},
                         "status": {"phase": "Pending", "conditions": [
                             {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                             {"type": "Custom", "status": "True"}]}});
        let bound = bind(&pod, None).expect("binds");
        assert_eq!(
            serde_json::to_string(&bound).unwrap(),
            serde_json::to_string(&json!({"metadata": {"name": "p"},
                "spec": {"containers": [], "nodeName": "node-1"},
                "status": {"phase": "Pending", "conditions": [
                    {"type": "Custom", "status": "True"}, scheduled]}}))
            .unwrap()
        );
    }

    #[test]
    fn binding_is_refused_as_kubernetes_refuses_it() {
        let pod = json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {"nodeName": "other"}});
        assert_eq!(
            bind(&pod, None),
            Err(BindRefusal::AlreadyBound("other".into()))
        );
        let pod = json!({"metadata": {"name": "p", "uid": "u1", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                         "spec": {}});
        assert_eq!(bind(&pod, None), Err(BindRefusal::Deleting));
        let pod = json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {}});
        assert_eq!(
            bind(&pod, Some("u2")),
            Err(BindRefusal::UidMismatch {
                expected: "u2".into(),
                actual: "u1".into()
            })
        );
        assert_eq!(
            bind(&json!({"metadata": {}}), None),
            Err(BindRefusal::Unreadable)
        );
        assert_eq!(
            bind_stored(b"{\"spec\":", "n", None, "t"),
            Err(BindRefusal::Unreadable)
        );
    }
}

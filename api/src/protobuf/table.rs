//! The wire table: every Kubernetes 1.33 protobuf message a request body can hold, with each field's
//! tag, JSON name, wire type and presence, parsed once from `messages.txt` (generated from k8s-pb and
//! k8s-openapi by `gen_messages.py`; its header documents the format).

use std::collections::HashMap;
use std::sync::OnceLock;

/// How a field travels on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message,
    /// A map: repeated entry messages `{key = 1, value = 2}` with string keys and these values.
    MapString,
    MapBytes,
    MapMessage,
}

/// What an occurrence, or its absence, means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Each occurrence is one more element of a JSON array.
    Repeated,
    /// A zero value is a value: a Go pointer field, or a required one.
    KeepZero,
    /// A zero value means unset: the Go encoder writes plain fields even when zero, JSON omits them.
    OmitZero,
    /// An embedded Go struct: its fields join the parent's JSON object.
    Inline,
}

#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    pub json: &'static str,
    pub wire: Wire,
    pub presence: Presence,
    /// The message type of `Message` and `MapMessage` fields.
    pub message: Option<&'static str>,
}

#[derive(Debug, Default)]
pub struct Message {
    /// The JSON form is the array held in the message's one repeated field (`ExtraValue`).
    pub array: bool,
    pub fields: Vec<Field>,
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<&Field> {
        self.fields.iter().find(|f| f.tag == tag)
    }
}

#[derive(Debug, Default)]
pub struct Table {
    messages: HashMap<&'static str, Message>,
    kinds: HashMap<(&'static str, &'static str), &'static str>,
}

impl Table {
    pub fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    /// The message of a top-level kind, e.g. (`apps/v1`, `Deployment`).
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&'static str> {
        self.kinds.get(&(api_version, kind)).copied()
    }
}

/// The table, parsed on first use. `Err` names the malformed line (a defect of the generated file).
pub fn table() -> Result<&'static Table, &'static str> {
    static TABLE: OnceLock<Result<Table, String>> = OnceLock::new();
    match TABLE.get_or_init(|| parse(include_str!("messages.txt"))) {
        Ok(t) => Ok(t),
        Err(e) => Err(e.as_str()),
    }
}

fn parse(text: &'static str) -> Result<Table, String> {
    let mut table = Table::default();
    let mut current: Option<&mut Message> = None;
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&'static str> = line.split(' ').collect();
        match words.as_slice() {
            ["K", api_version, kind, message] => {
                table.kinds.insert((api_version, kind), message);
            }
            [head @ ("M" | "A"), name] => {
                let message = table.messages.entry(name).or_default();
                message.array = *head == "A";
                current = Some(message);
            }
            [tag, json, wire, presence, rest @ ..] if rest.len() <= 1 => {
                let field = Field {
                    tag: tag.parse().map_err(|_| line.to_string())?,
                    json,
                    wire: wire_of(wire).ok_or_else(|| line.to_string())?,
                    presence: presence_of(presence).ok_or_else(|| line.to_string())?,
                    message: rest.first().copied(),
                };
                current
                    .as_mut()
                    .ok_or_else(|| line.to_string())?
                    .fields
                    .push(field);
            }
            _ => return Err(line.to_string()),
        }
    }
    Ok(table)
}

fn wire_of(word: &str) -> Option<Wire> {
    Some(match word {
        "string" => Wire::String,
        "bytes" => Wire::Bytes,
        "bool" => Wire::Bool,
        "int32" => Wire::Int32,
        "int64" => Wire::Int64,
        "double" => Wire::Double,
        "message" => Wire::Message,
        "map:string" => Wire::MapString,
        "map:bytes" => Wire::MapBytes,
        "map:message" => Wire::MapMessage,
        _ => return None,
    })
}

fn presence_of(word: &str) -> Option<Presence> {
    Some(match word {
        "r" => Presence::Repeated,
        "z" => Presence::KeepZero,
        "o" => Presence::OmitZero,
        "i" => Presence::Inline,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_parses_and_every_reference_resolves() {
        let t = table().expect("messages.txt parses");
        for (name, m) in &t.messages {
            for f in &m.fields {
                let needs_message = matches!(f.wire, Wire::Message | Wire::MapMessage);
                assert_eq!(needs_message, f.message.is_some(), "{name}.{}", f.json);
                if let Some(target) = f.message {
                    assert!(t.message(target).is_some(), "{name}.{} -> {target}", f.json);
                }
            }
        }
        for message in t.kinds.values() {
            assert!(t.message(message).is_some(), "{message}");
        }
    }

    #[test]
    fn carries_json_names_and_go_presence() {
        let t = table().unwrap();
        assert_eq!(
            t.kind("apps/v1", "Deployment"),
            Some("io.k8s.api.apps.v1.Deployment")
        );
        let spec = t.message("io.k8s.api.core.v1.NodeSpec").unwrap();
        assert_eq!(spec.field(1).unwrap().json, "podCIDR");
        assert_eq!(spec.field(7).unwrap().json, "podCIDRs");
        let port = t.message("io.k8s.api.core.v1.ContainerPort").unwrap();
        assert_eq!(port.field(2).unwrap().presence, Presence::OmitZero); // hostPort
        assert_eq!(port.field(3).unwrap().presence, Presence::KeepZero); // containerPort, required
        let deployment = t.message("io.k8s.api.apps.v1.DeploymentSpec").unwrap();
        assert_eq!(deployment.field(1).unwrap().json, "replicas");
        assert_eq!(deployment.field(1).unwrap().presence, Presence::KeepZero);
        let volume = t.message("io.k8s.api.core.v1.Volume").unwrap();
        assert_eq!(volume.field(2).unwrap().presence, Presence::Inline);
        assert!(
            t.message("io.k8s.api.authentication.v1.ExtraValue")
                .unwrap()
                .array
        );
    }
}

//! The walk from protobuf records to Kubernetes JSON, message by message through the wire table.
//! Types whose Go JSON form is not their message shape (times, IntOrString, Quantity, raw JSON,
//! the JSONSchemaPropsOr* unions) are converted by name, as their Go `MarshalJSON` does.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::DateTime;
use serde_json::{Map, Number, Value};

use super::table::{Field, Message, Presence, Table, Wire};
use super::wire::{self, Records};
use super::{DecodeError, MAGIC, envelope, lossy, with_type_meta, wrong};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";
const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";
const FIELDS_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
const EXTENSIONS: &str = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.";

/// Deeper than any real object; bounds the recursion a hostile body could ask for.
const MAX_DEPTH: usize = 100;

pub struct Decoder<'t> {
    pub table: &'t Table,
}

impl Decoder<'_> {
    /// A whole enveloped object (a body, or a `RawExtension` holding one).
    pub fn object(&self, body: &[u8], depth: usize) -> Result<Value, DecodeError> {
        let env = envelope(body)?;
        let name = self
            .table
            .kind(&env.api_version, &env.kind)
            .map(str::to_string)
            // meta/v1 kinds (DeleteOptions) travel under every group's version
            .or_else(|| {
                let meta = format!("{META}{}", env.kind);
                self.table.message(&meta).map(|_| meta)
            })
            .ok_or_else(|| DecodeError::UnknownKind {
                api_version: env.api_version.clone(),
                kind: env.kind.clone(),
            })?;
        match self.message(&name, env.raw, "", depth)? {
            Some(Value::Object(fields)) => Ok(with_type_meta(&env, fields)),
            _ => Ok(with_type_meta(&env, Map::new())),
        }
    }

    /// One message as JSON; `None` where Go's JSON has nothing to say (a zero time, an empty raw).
    fn message(
        &self,
        name: &str,
        bytes: &[u8],
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let fields = |n: &str| self.fields(n, bytes, path, depth + 1);
        Ok(match name {
            TIME | MICRO_TIME => time(&fields(name)?, name == MICRO_TIME, path)?,
            INT_OR_STRING => {
                let f = fields(name)?;
                Some(match f.get("type").and_then(Value::as_i64) {
                    Some(1) => f.get("strVal").cloned().unwrap_or_else(|| "".into()),
                    _ => f.get("intVal").cloned().unwrap_or_else(|| 0.into()),
                })
            }
            // Go prints a zero Quantity as "0"
            QUANTITY => Some(fields(name)?.remove("string").unwrap_or_else(|| "0".into())),
            RAW_EXTENSION | FIELDS_V1 => self.raw(bytes, path, depth)?,
            _ => match name.strip_prefix(EXTENSIONS) {
                Some("JSON") => self.raw(bytes, path, depth)?,
                Some("JSONSchemaPropsOrArray") => {
                    let mut f = fields(name)?;
                    f.remove("jSONSchemas").or_else(|| f.remove("schema"))
                }
                Some("JSONSchemaPropsOrBool") => {
                    let mut f = fields(name)?;
                    f.remove("schema")
                        .or_else(|| Some(f.remove("allows").unwrap_or(Value::Bool(false))))
                }
                Some("JSONSchemaPropsOrStringArray") => {
                    let mut f = fields(name)?;
                    f.remove("property").or_else(|| f.remove("schema"))
                }
                _ => {
                    let f = fields(name)?;
                    if self.lookup(name).array {
                        Some(f.into_values().next().unwrap_or(Value::Array(Vec::new())))
                    } else {
                        Some(Value::Object(f))
                    }
                }
            },
        })
    }

    fn lookup(&self, name: &str) -> &Message {
        // every reference in the table resolves (tested); an unknown one reads as an empty message
        static EMPTY: Message = Message {
            array: false,
            fields: Vec::new(),
        };
        self.table.message(name).unwrap_or(&EMPTY)
    }

    /// The fields of a message, by JSON name, in wire order.
    fn fields(
        &self,
        name: &str,
        bytes: &[u8],
        path: &str,
        depth: usize,
    ) -> Result<Map<String, Value>, DecodeError> {
        let message = self.lookup(name);
        let mut out = Map::new();
        for record in Records::new(bytes) {
            let (tag, value) = record?;
            let Some(field) = message.field(tag) else {
                continue; // a field newer than 1.33: Go skips it too
            };
            let at = join(path, field.json);
            match field.presence {
                Presence::Inline => {
                    if let Some(Value::Object(inner)) = self.single(field, value, path, depth)? {
                        out.extend(inner);
                    }
                }
                Presence::Repeated => {
                    let items = self.repeated(field, value, &at, depth)?;
                    let slot = out
                        .entry(field.json)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(array) = slot {
                        array.extend(items);
                    }
                }
                _ if matches!(
                    field.wire,
                    Wire::MapString | Wire::MapBytes | Wire::MapMessage
                ) =>
                {
                    let (key, v) = self.map_entry(field, value, &at, depth)?;
                    let slot = out
                        .entry(field.json)
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(map) = slot {
                        map.insert(key, v);
                    }
                }
                presence => match self.single(field, value, &at, depth)? {
                    Some(v) if presence == Presence::KeepZero || !is_zero(&v, field.wire) => {
                        out.insert(field.json.to_string(), v);
                    }
                    _ => {
                        out.remove(field.json); // the last occurrence wins, even a zero one
                    }
                },
            }
        }
        Ok(out)
    }

    /// One value of a field's type from one record.
    fn single(
        &self,
        field: &Field,
        value: wire::Value,
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, DecodeError> {
        Ok(Some(match (field.wire, value) {
            (Wire::String, wire::Value::Bytes(b)) => lossy(b).into(),
            (Wire::Bytes, wire::Value::Bytes(b)) => STANDARD.encode(b).into(),
            (Wire::Bool, wire::Value::Varint(v)) => (v != 0).into(),
            // Go converts as `int32(v)`: the low 32 bits
            (Wire::Int32, wire::Value::Varint(v)) => (v as i32).into(),
            (Wire::Int64, wire::Value::Varint(v)) => (v as i64).into(),
            (Wire::Double, wire::Value::Fixed64(v)) => {
                let f = f64::from_bits(v);
                Number::from_f64(f)
                    .ok_or(DecodeError::UnsupportedNumber(f))?
                    .into()
            }
            (Wire::Message, wire::Value::Bytes(b)) => {
                let name = field.message.unwrap_or_default();
                return self.message(name, b, path, depth);
            }
            (_, v) => return Err(wrong(v, path)),
        }))
    }

    /// The elements one record of a repeated field holds: one, or many when scalars are packed.
    fn repeated(
        &self,
        field: &Field,
        value: wire::Value,
        path: &str,
        depth: usize,
    ) -> Result<Vec<Value>, DecodeError> {
        let packed = matches!(
            field.wire,
            Wire::Bool | Wire::Int32 | Wire::Int64 | Wire::Double
        );
        match value {
            wire::Value::Bytes(mut b) if packed => {
                let mut items = Vec::new();
                while !b.is_empty() {
                    let v = if field.wire == Wire::Double {
                        let (head, tail) = b
                            .split_first_chunk::<8>()
                            .ok_or(DecodeError::UnexpectedEof)?;
                        b = tail;
                        wire::Value::Fixed64(u64::from_le_bytes(*head))
                    } else {
                        wire::Value::Varint(wire::varint(&mut b)?)
                    };
                    items.extend(self.single(field, v, path, depth)?);
                }
                Ok(items)
            }
            // Go writes `null` for a nil element; an absent one can only be an empty message here
            v => Ok(vec![
                self.single(field, v, path, depth)?.unwrap_or(Value::Null),
            ]),
        }
    }

    /// One `{key = 1, value = 2}` entry of a map field.
    fn map_entry(
        &self,
        field: &Field,
        value: wire::Value,
        path: &str,
        depth: usize,
    ) -> Result<(String, Value), DecodeError> {
        let wire::Value::Bytes(entry) = value else {
            return Err(wrong(value, path));
        };
        let (mut key, mut raw): (String, &[u8]) = (String::new(), &[]);
        for record in Records::new(entry) {
            match record? {
                (1, wire::Value::Bytes(k)) => key = lossy(k),
                (2, wire::Value::Bytes(v)) => raw = v,
                (1 | 2, v) => return Err(wrong(v, path)),
                _ => {}
            }
        }
        let at = join(path, &key);
        let v = match field.wire {
            Wire::MapString => lossy(raw).into(),
            Wire::MapBytes => STANDARD.encode(raw).into(),
            _ => {
                let name = field.message.unwrap_or_default();
                self.message(name, raw, &at, depth)?.unwrap_or(Value::Null)
            }
        };
        Ok((key, v))
    }

    /// Embedded JSON (`RawExtension`, `FieldsV1`, `JSON`), or an embedded protobuf object.
    fn raw(&self, bytes: &[u8], path: &str, depth: usize) -> Result<Option<Value>, DecodeError> {
        let mut raw: &[u8] = &[];
        for record in Records::new(bytes) {
            match record? {
                (1, wire::Value::Bytes(b)) => raw = b,
                (1, v) => return Err(wrong(v, path)),
                _ => {}
            }
        }
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.starts_with(MAGIC) {
            return self.object(raw, depth + 1).map(Some);
        }
        serde_json::from_slice(raw)
            .map(Some)
            .map_err(|e| DecodeError::EmbeddedJson {
                field: path.to_string(),
                message: e.to_string(),
            })
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// A zero scalar: what a plain Go field holds when unset.
fn is_zero(v: &Value, wire: Wire) -> bool {
    match wire {
        Wire::String | Wire::Bytes => v.as_str() == Some(""),
        Wire::Bool => v == &Value::Bool(false),
        Wire::Int32 | Wire::Int64 => v.as_i64() == Some(0),
        Wire::Double => v.as_f64() == Some(0.0),
        _ => false,
    }
}

/// `Time` as RFC 3339 in UTC to the second, `MicroTime` to the microsecond; the zero time (all
/// fields zero, which Go also writes for an unset `Time`) has no JSON value.
fn time(
    fields: &Map<String, Value>,
    micro: bool,
    path: &str,
) -> Result<Option<Value>, DecodeError> {
    let seconds = fields.get("seconds").and_then(Value::as_i64).unwrap_or(0);
    let nanos = fields.get("nanos").and_then(Value::as_i64).unwrap_or(0);
    if seconds == 0 && nanos == 0 {
        return Ok(None);
    }
    let t = u32::try_from(nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(seconds, n))
        .ok_or_else(|| DecodeError::TimeOutOfRange {
            field: path.to_string(),
            seconds,
        })?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Some(t.format(format).to_string().into()))
}

//! Decoding of `application/vnd.kubernetes.protobuf` request bodies, which kubectl's typed commands
//! (`create configmap|secret|deployment|job ...`, `run`, `drain`'s evictions) send, into the same
//! Kubernetes JSON the rest of the server handles. Decoding only: the server always answers JSON.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown` envelope {typeMeta{apiVersion = 1, kind = 2} = 1,
//! raw = 2, contentEncoding = 3, contentType = 4} whose `raw` is the object's own encoding. A generic
//! walker ([`json`]) reads that with the wire table ([`table`]) generated from k8s-pb and k8s-openapi.

mod json;
mod table;
mod wire;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::ApiError;
use wire::Records;

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a body does not decode, worded as kube-apiserver (Go's generated unmarshalers) words it.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    Magic,
    #[error("unexpected EOF")]
    UnexpectedEof,
    #[error("proto: integer overflow")]
    IntOverflow,
    #[error("proto: negative length found during unmarshaling")]
    NegativeLength,
    #[error("proto: illegal tag 0 (wire type {wire_type})")]
    IllegalTag { wire_type: u8 },
    #[error("proto: illegal wireType {wire_type}")]
    IllegalWireType { wire_type: u8 },
    #[error("proto: wrong wireType = {wire_type} for field {field}")]
    WrongWireType { wire_type: u8, field: String },
    #[error("Object 'Kind' is missing in the protobuf body")]
    MissingKind,
    #[error("no kind {kind:?} is registered for version {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("time out of range in field {field}: {seconds}s")]
    TimeOutOfRange { field: String, seconds: i64 },
    #[error("json: unsupported value: {0}")]
    UnsupportedNumber(f64),
    #[error("invalid embedded JSON in field {field}: {message}")]
    EmbeddedJson { field: String, message: String },
    #[error("protobuf message nested too deeply")]
    TooDeep,
}

/// Decodes a `application/vnd.kubernetes.protobuf` body into the object as Kubernetes JSON, with
/// apiVersion/kind from the envelope. Every failure is a `BadRequest`.
#[allow(clippy::result_large_err)] // ApiError is what every request failure becomes
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let table = table::table()
        .map_err(|line| ApiError::internal(format!("malformed protobuf table line {line:?}")))?;
    json::Decoder { table }
        .object(body, 0)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The envelope: apiVersion, kind and the object's own bytes.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

fn envelope(body: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let unknown = body.strip_prefix(MAGIC).ok_or(DecodeError::Magic)?;
    let mut out = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    for record in Records::new(unknown) {
        match record? {
            (1, wire::Value::Bytes(type_meta)) => {
                for record in Records::new(type_meta) {
                    match record? {
                        (1, wire::Value::Bytes(s)) => out.api_version = lossy(s),
                        (2, wire::Value::Bytes(s)) => out.kind = lossy(s),
                        (tag @ (1 | 2), v) => {
                            return Err(wrong(v, ["apiVersion", "kind"][tag as usize - 1]));
                        }
                        _ => {}
                    }
                }
            }
            (2, wire::Value::Bytes(raw)) => out.raw = raw,
            (tag @ (1 | 2), v) => return Err(wrong(v, ["typeMeta", "raw"][tag as usize - 1])),
            _ => {}
        }
    }
    if out.kind.is_empty() {
        return Err(DecodeError::MissingKind);
    }
    Ok(out)
}

fn wrong(v: wire::Value, field: &str) -> DecodeError {
    DecodeError::WrongWireType {
        wire_type: v.wire_type(),
        field: field.to_string(),
    }
}

/// Go puts bytes into strings unchecked; its JSON encoder then replaces invalid UTF-8 this way.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `apiVersion` and `kind` first, as kubectl writes them, then the object's fields.
fn with_type_meta(env: &Envelope, fields: Map<String, Value>) -> Value {
    let mut out = Map::with_capacity(fields.len() + 2);
    out.insert("apiVersion".into(), env.api_version.clone().into());
    out.insert("kind".into(), env.kind.clone().into());
    out.extend(fields);
    Value::Object(out)
}

#[cfg(test)]
mod tests;

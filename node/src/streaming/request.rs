//! What a streaming request asks for: the connection upgrade and its protocol ([`upgrade_of`],
//! answered by [`switching`]), and the streams of an exec or attach ([`stream_options`], with
//! the command in [`query_values`]).

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use skiff_api::ApiError;
use skiff_sandbox::StreamOptions;

use super::websocket;

/// What a streaming request asked the connection to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upgrade {
    WebSocket(&'static str),
    Spdy(&'static str),
}

/// The SPDY upgrade kubectl's fallback asks for.
const SPDY: &str = "SPDY/3.1";
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Which of `websocket` or `spdy` protocols the request asks for, in the client's order.
pub(super) fn upgrade_of(
    headers: &HeaderMap,
    websocket: &[&'static str],
    spdy: &[&'static str],
) -> Result<Upgrade, ApiError> {
    if websocket::is_websocket(headers) {
        return websocket::choose(headers, websocket)
            .map(Upgrade::WebSocket)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "none of the requested WebSocket subprotocols ({}) is supported; this node speaks {}",
                    websocket::requested(headers),
                    websocket.join(", ")
                ))
            });
    }
    let wants_spdy = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(SPDY));
    if !wants_spdy {
        return Err(ApiError::bad_request(format!(
            "this endpoint needs a connection upgrade: WebSocket ({}) or {SPDY}",
            websocket.join(", ")
        )));
    }
    headers
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| spdy.iter().find(|s| **s == p).copied())
        .map(Upgrade::Spdy)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "none of the requested stream protocols is supported; this node speaks {}",
                spdy.join(", ")
            ))
        })
}

/// The 101 answer for `upgrade`.
pub(super) fn switching(headers: &HeaderMap, upgrade: Upgrade) -> Result<Response, ApiError> {
    match upgrade {
        Upgrade::WebSocket(protocol) => websocket::accept(headers, protocol),
        Upgrade::Spdy(protocol) => Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, SPDY)
            .header(STREAM_PROTOCOL_HEADER, protocol)
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string())),
    }
}

/// A query's values by name, repeated names (`command`) in order.
pub(super) fn query_values(raw: Option<&str>, name: &str) -> Vec<String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// A boolean parameter as Go's `strconv.ParseBool` reads it; absent is false.
fn query_bool(raw: Option<&str>, name: &str) -> Result<bool, ApiError> {
    match query_values(raw, name).last().map(String::as_str) {
        None => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False" | "") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid value {other:?} for query parameter {name}"
        ))),
    }
}

/// The streams `pods/exec` and `pods/attach` ask for, checked as the kubelet checks them.
pub(super) fn stream_options(raw: Option<&str>) -> Result<StreamOptions, ApiError> {
    let tty = query_bool(raw, "tty")?;
    let options = StreamOptions {
        stdin: query_bool(raw, "stdin")?,
        stdout: query_bool(raw, "stdout")?,
        // A terminal is one stream.
        stderr: query_bool(raw, "stderr")? && !tty,
        tty,
    };
    if !(options.stdin || options.stdout || options.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::{channel, port_forward, spdy_exec};
    use axum::http::HeaderValue;

    #[test]
    fn queries_give_the_command_and_streams() {
        let raw = Some("command=sh&command=-c&command=echo%20a%3Db&stdout=true&stderr=1&tty=false");
        assert_eq!(query_values(raw, "command"), ["sh", "-c", "echo a=b"]);
        let options = stream_options(raw).unwrap();
        assert_eq!(
            options,
            StreamOptions {
                stdin: false,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        let tty = stream_options(Some("stdin=true&stdout=true&stderr=true&tty=true")).unwrap();
        assert!(!tty.stderr, "a terminal is one stream");
        assert_eq!(
            stream_options(Some("tty=true")).unwrap_err().message,
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(stream_options(Some("stdout=yes")).is_err());
    }

    #[test]
    fn upgrades_are_chosen_from_either_protocol_family() {
        let mut ws = HeaderMap::new();
        ws.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        ws.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io"),
        );
        assert_eq!(
            upgrade_of(&ws, channel::PROTOCOLS, spdy_exec::PROTOCOLS).unwrap(),
            Upgrade::WebSocket("v5.channel.k8s.io")
        );
        let refused = upgrade_of(&ws, &[port_forward::TUNNEL_PROTOCOL], &[]).unwrap_err();
        assert!(
            refused.message.contains("v5.channel.k8s.io"),
            "{}",
            refused.message
        );

        let mut spdy = HeaderMap::new();
        spdy.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        for p in ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"] {
            spdy.append(STREAM_PROTOCOL_HEADER, HeaderValue::from_static(p));
        }
        assert_eq!(
            upgrade_of(&spdy, channel::PROTOCOLS, spdy_exec::PROTOCOLS).unwrap(),
            Upgrade::Spdy("v5.channel.k8s.io")
        );
        let resp = switching(&spdy, Upgrade::Spdy("v5.channel.k8s.io")).unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.headers()[STREAM_PROTOCOL_HEADER], "v5.channel.k8s.io");
        assert!(upgrade_of(&HeaderMap::new(), channel::PROTOCOLS, &[]).is_err());
    }
}

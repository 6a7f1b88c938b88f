//! `?watch=1`: a chunked stream of watch events from the watch cache, filtered by namespace and
//! selectors (an object that stops matching is seen as DELETED, one that starts as ADDED), with
//! bookmarks, `sendInitialEvents`, `timeoutSeconds`, and Tables for `kubectl get -w`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::printers;
use skiff_api::{ApiError, ResourceInfo};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::ApiServer;
use super::codec::{Output, Query};
use super::objects;
use super::path::ResourcePath;
use super::rest::{Selectors, list_objects};
use crate::store::Store;
use crate::watch_cache::{CachedEvent, EventType, WatchError};

/// How long a watch lasts without `timeoutSeconds` (Kubernetes picks 30-60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

struct Encoder {
    info: &'static ResourceInfo,
    output: Output,
    columns_sent: bool,
}

/// `{"type":KIND,"object":OBJECT}` and a newline, around an object already encoded. The kinds
/// (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) need no escaping.
fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + kind.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn encode(object: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(object).unwrap_or_default()
}

impl Encoder {
    fn event(&mut self, kind: &str, object: &Value) -> Bytes {
        match self.output {
            Output::Metadata if kind != "ERROR" => {
                line(kind, &encode(&super::codec::partial_metadata(object)))
            }
            Output::Table(include) if kind != "BOOKMARK" && kind != "ERROR" => {
                let rv = objects::meta_str(object, "resourceVersion")
                    .unwrap_or("")
                    .to_string();
                let table = printers::table(
                    self.info,
                    std::slice::from_ref(object),
                    include,
                    !self.columns_sent,
                    json!({"resourceVersion": rv}),
                    chrono::Utc::now(),
                );
                self.columns_sent = true;
                line(kind, &encode(&table))
            }
            _ => line(kind, &encode(object)),
        }
    }

    /// A change from the watch cache: whole objects and metadata are sent as the cache holds
    /// them, already encoded.
    fn change(&mut self, kind: &str, event: &CachedEvent) -> Bytes {
        match self.output {
            Output::Json => line(kind, event.json()),
            Output::Metadata => line(
                kind,
                &super::codec::partial_metadata_json(event.metadata_json()),
            ),
            Output::Table(_) => self.event(kind, event.object()),
        }
    }
}

/// What a cached event looks like to a watcher with these filters, if it sees it at all.
fn visible(
    event: &CachedEvent,
    namespace: Option<&str>,
    selectors: &Selectors,
) -> Option<&'static str> {
    if let Some(ns) = namespace
        && event.namespace() != Some(ns)
    {
        return None;
    }
    if selectors.is_empty() {
        return Some(event.kind.as_str());
    }
    let now = selectors.matches(event.object());
    let before = || event.prev().is_some_and(|p| selectors.matches(p));
    match event.kind {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => (now || before()).then_some("DELETED"),
        EventType::Modified => match (before(), now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

pub(crate) async fn serve<S: Store>(
    api: &Arc<ApiServer<S>>,
    rp: &ResourcePath,
    query: &Query,
    output: Output,
) -> Result<Response, ApiError> {
    let info = rp.info;
    let selectors = Selectors::parse(info, query)?;
    let timeout = query
        .number("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let requested = objects::parse_resource_version(query.get("resourceVersion"))?;

    // Without a resourceVersion (or with "0"), a watch starts with the current state as ADDED events.
    let (initial, from) = match requested {
        Some(rv) if rv > 0 && !send_initial => (Vec::new(), rv),
        _ => {
            let (items, revision, _) = list_objects(api, rp, &selectors, None, None).await?;
            (items, revision)
        }
    };

    let mut encoder = Encoder {
        info,
        output,
        columns_sent: false,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let subscription = match api.watch_cache.subscribe(&info.key_prefix(), from) {
        Ok(s) => s,
        Err(WatchError::Expired { requested, oldest }) => {
            let status =
                ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
                    .to_status();
            let _ = tx.try_send(Ok(encoder.event("ERROR", &status)));
            drop(tx);
            return Ok(stream_response(rx));
        }
        Err(e) => return Err(ApiError::internal(e.to_string())),
    };
    let namespace = rp.namespace.clone();
    tokio::spawn(async move {
        let send = |bytes: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(bytes)).await.is_ok() }
        };
        for obj in &initial {
            if !send(encoder.event("ADDED", obj)).await {
                return;
            }
        }
        if send_initial {
            let mark = json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": {
                "resourceVersion": from.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"}}});
            if !send(encoder.event("BOOKMARK", &mark)).await {
                return;
            }
        }
        // How far this watch has got through the cache's events, sent or filtered out. A
        // bookmark must never claim more: a client resuming from it after the watch ends would
        // skip the events still queued for it (the cache's newest revision can be far ahead of a
        // watcher behind on a burst).
        let mut progress = from;
        for ev in &subscription.replay {
            progress = ev.revision;
            if let Some(kind) = visible(ev, namespace.as_deref(), &selectors)
                && !send(encoder.change(kind, ev)).await
            {
                return;
            }
        }
        let mut live = subscription.live;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let mark = json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": {"resourceVersion": progress.to_string()}});
                    if !send(encoder.event("BOOKMARK", &mark)).await {
                        return;
                    }
                }
                ev = live.recv() => match ev {
                    // The initial list can be ahead of the cache: what it already holds is not
                    // sent again.
                    Ok(ev) if ev.revision <= progress => {}
                    Ok(ev) => {
                        progress = ev.revision;
                        if let Some(kind) = visible(&ev, namespace.as_deref(), &selectors)
                            && !send(encoder.change(kind, &ev)).await
                        {
                            return;
                        }
                    }
                    // Fell behind or the cache stopped: end the watch; clients re-watch.
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Ok(stream_response(rx))
}

fn stream_response(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response {
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

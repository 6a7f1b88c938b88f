//! The Kubernetes API server: routing, authentication, discovery and OpenAPI, and the REST
//! handlers over a [`Store`]. Every request goes through [`ApiServer::handle`], so errors become
//! `Status` responses in one place ([`codec::ErrorResponse`]).

pub mod codec;
pub mod objects;
pub mod path;
pub(crate) mod rest;
pub mod stored;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::{Value, json};
use skiff_api::{ApiError, discovery, openapi};
use tracing::{Instrument, info_span};

use crate::server::User;
use crate::store::Store;
use crate::watch_cache::WatchCache;
use codec::{ErrorResponse, Query};
use path::Route;
pub use rest::node_proxy::{KubeletClient, KubeletClientError};

/// The Kubernetes version Skiff's API is faithful to (kubectl picks its client by the minor).
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "33";

pub struct ApiServer<S: Store> {
    pub(crate) store: Arc<S>,
    pub(crate) watch_cache: WatchCache,
    /// Held from picking a Service's ClusterIP/NodePorts until the Service is stored, so two
    /// concurrent creates never pick the same address.
    pub(crate) service_allocation: tokio::sync::Mutex<()>,
    /// How `pods/log`, `exec`, `attach` and `portforward` reach node agents; until it is set
    /// they answer ServiceUnavailable.
    pub(crate) kubelet: OnceLock<KubeletClient>,
    ready: AtomicBool,
}

impl<S: Store> ApiServer<S> {
    pub fn new(store: Arc<S>, watch_cache: WatchCache) -> Arc<Self> {
        Arc::new(Self {
            store,
            watch_cache,
            service_allocation: tokio::sync::Mutex::new(()),
            kubelet: OnceLock::new(),
            ready: AtomicBool::new(false),
        })
    }

    /// Lets the API server proxy to node agents through `client` (the first call wins).
    pub fn set_kubelet_client(&self, client: KubeletClient) {
        let _ = self.kubelet.set(client);
    }

    /// `/readyz` answers ok from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn router(self: &Arc<Self>) -> Router {
        let this = self.clone();
        Router::new().fallback(move |req: Request| {
            let this = this.clone();
            async move { this.handle(req).await }
        })
    }

    async fn handle(self: Arc<Self>, req: Request) -> Response {
        let span = info_span!("request", method = %req.method(), path = %req.uri().path());
        async move {
            // A bug must cost one request a 500, never the server or the connection.
            match std::panic::AssertUnwindSafe(self.route(req))
                .catch_unwind()
                .await
            {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => ErrorResponse(e).into_response(),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(panic = %what, "request handler panicked");
                    ErrorResponse(ApiError::internal(
                        "the server could not handle the request",
                    ))
                    .into_response()
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn route(self: &Arc<Self>, req: Request) -> Result<Response, ApiError> {
        let route = path::parse(req.uri().path())?;
        let user = req.extensions().get::<Option<User>>().cloned().flatten();
        if let Route::Health = route {
            return Ok(self.health(req.uri().path()));
        }
        let Some(user) = user else {
            return Err(ApiError::unauthorized());
        };
        let get_only = || {
            if req.method() == Method::GET {
                Ok(())
            } else {
                Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource".to_string(),
                ))
            }
        };
        match route {
            Route::Health => unreachable!("answered above"),
            Route::Version => {
                get_only()?;
                Ok(codec::json(StatusCode::OK, &version()))
            }
            Route::ApiRoot { core } => {
                get_only()?;
                Ok(root_discovery(&req, core))
            }
            Route::Group(g) => {
                get_only()?;
                let doc = discovery::api_group(&g).ok_or_else(ApiError::no_such_resource)?;
                Ok(codec::json(StatusCode::OK, &doc))
            }
            Route::GroupVersion { group, version } => {
                get_only()?;
                let doc = discovery::api_resource_list(&group, &version)
                    .ok_or_else(ApiError::no_such_resource)?;
                Ok(codec::json(StatusCode::OK, &doc))
            }
            Route::OpenApiV3Index => {
                get_only()?;
                Ok(codec::json(StatusCode::OK, openapi::v3_index()))
            }
            Route::OpenApiV3 { group, version } => {
                get_only()?;
                let (doc, hash) = openapi::v3_document(&group, &version)
                    .ok_or_else(ApiError::no_such_resource)?;
                Ok(openapi_document(Body::from(doc), "application/json", hash))
            }
            // kubectl decodes /openapi/v2 only as protobuf, whatever the Content-Type; it
            // validates `kind: List` manifests against it.
            Route::OpenApiV2 => {
                get_only()?;
                let (bytes, hash) = openapi::v2_protobuf();
                Ok(openapi_document(
                    Body::from(bytes),
                    openapi::V2_PROTOBUF_CONTENT_TYPE,
                    hash,
                ))
            }
            Route::Resource(rp) => {
                let query = Query::parse(req.uri().query());
                rest::serve(self, rp, query, user, req).await
            }
        }
    }

    fn health(&self, path: &str) -> Response {
        let ready = self.ready.load(Ordering::SeqCst);
        if path.starts_with("/readyz") && !ready {
            let mut resp = Response::new(Body::from(
                "[-]skiff-ready failed: not ready yet\nreadyz check failed\n",
            ));
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return resp;
        }
        Response::new(Body::from("ok"))
    }
}

/// `/version`, as `kubectl version` and the kubectl dispatcher read it.
pub fn version() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+skiff-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// The architecture in Go's spelling, as Kubernetes reports it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// An OpenAPI document with its hash as the ETag, which kubectl's cache keys on.
fn openapi_document(body: Body, content_type: &'static str, hash: &str) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    resp
}

/// `/api` and `/apis`: aggregated discovery when the client asks for it (kubectl branches on
/// the response Content-Type), the legacy documents otherwise.
fn root_discovery(req: &Request, core: bool) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(version) = discovery::parse_accept_for_aggregated(accept) {
        let doc = discovery::aggregated(core, version);
        let mut resp = codec::json(StatusCode::OK, &doc);
        if let Ok(ct) = HeaderValue::from_str(&version.content_type()) {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return resp;
    }
    let doc = if core {
        discovery::api_versions(&server_address(req))
    } else {
        discovery::api_group_list()
    };
    codec::json(StatusCode::OK, &doc)
}

/// The address this request reached the server at (`serverAddressByClientCIDRs`).
fn server_address(req: &Request) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

//! The control plane's own API clients (controllers, the scheduler) reach the API server inside
//! the process: each request goes straight to the router, already authenticated as the control
//! plane, so traffic that never leaves the process spends nothing on TLS, sockets or HTTP framing.
//! Everything else is as for any client: the same routes, admission, authorization and watch
//! streams, through the `kube` crate.

use axum::Router;
use tower::ServiceExt;

use crate::server::User;

/// Who the control plane's own clients are to the authorizer and in audit-like fields such as
/// `managedFields[].manager` (which the `kube` client sets itself).
pub fn controller_user() -> User {
    User {
        name: "system:skiff-controller".into(),
        groups: vec!["system:masters".into()],
    }
}

/// A `kube` client whose requests `router` serves in-process as `user`.
pub fn client(router: Router, user: User) -> kube::Client {
    let service = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(Some(user.clone()));
        router.clone().oneshot(req)
    });
    kube::Client::new(service, "default")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[tokio::test]
    async fn requests_reach_the_router_as_the_given_user() {
        let router = Router::new().fallback(|req: axum::extract::Request| async move {
            let user = req.extensions().get::<Option<User>>().cloned().flatten();
            axum::Json(json!({
                "path": req.uri().path(),
                "user": user.map(|u| (u.name, u.groups)),
            }))
        });
        let client = client(router, controller_user());
        let request = axum::http::Request::get("/api/v1/namespaces")
            .body(Vec::new())
            .expect("a valid request");
        let answer: Value = client.request(request).await.expect("an answer");
        assert_eq!(
            answer,
            json!({"path": "/api/v1/namespaces",
                   "user": ["system:skiff-controller", ["system:masters"]]})
        );
    }
}

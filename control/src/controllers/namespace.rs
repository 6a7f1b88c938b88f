//! The namespace controller: a namespace being deleted (Terminating) has its contents deleted;
//! once nothing is left, its `kubernetes` finalizer is removed through the `finalize`
//! subresource and the API server removes the namespace.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use super::api_resource;

const KUBERNETES_FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("API request: {0}")]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
}

pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Arc::new(Context { client });
    Controller::new(namespaces, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, NamespaceError> {
    let name = ns.name_any();
    let span = info_span!("reconcile", namespace = %name);
    async move {
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Action::await_change());
        }
        let mut remaining = 0usize;
        for info in skiff_api::registry::all()
            .iter()
            .filter(|r| r.namespaced && r.supports("deletecollection"))
        {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &name, &api_resource(info));
            let left = api.list_metadata(&ListParams::default()).await?;
            if left.items.is_empty() {
                continue;
            }
            remaining += left.items.len();
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await?;
        }
        if remaining > 0 {
            // Objects with finalizers (or graceful pods) take time to go.
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.as_ref());
        if finalizers.is_some_and(|f| f.iter().any(|f| f == KUBERNETES_FINALIZER)) {
            let mut finalized = (*ns).clone();
            if let Some(spec) = finalized.spec.as_mut() {
                spec.finalizers = Some(
                    spec.finalizers
                        .take()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|f| f != KUBERNETES_FINALIZER)
                        .collect(),
                );
            }
            let api: Api<Namespace> = Api::all(ctx.client.clone());
            api.replace_subresource("finalize", &name, &PostParams::default(), &finalized)
                .await?;
            info!("namespace emptied and finalized");
        }
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

fn error_policy(ns: Arc<Namespace>, err: &NamespaceError, _ctx: Arc<Context>) -> Action {
    warn!(namespace = %ns.name_any(), error = %err, "namespace reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

//! What every active namespace holds in Kubernetes: the `default` ServiceAccount (the
//! serviceaccount controller's job) and the `kube-root-ca.crt` ConfigMap with the cluster CA (the
//! root-CA publisher's). Both are re-created if deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::warn;

pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

struct Context {
    client: Client,
    ca_pem: String,
}

pub async fn run(client: Client, ca_pem: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        ca_pem,
    });
    Controller::new(namespaces, watcher::Config::default())
        // A deleted default ServiceAccount or root-CA ConfigMap brings its namespace back for
        // reconciling; the field selectors keep every other object's changes off this watch.
        .watches(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}")),
            |sa| {
                sa.namespace()
                    .map(|ns| kube::runtime::reflector::ObjectRef::new(&ns))
            },
        )
        .watches(
            Api::<ConfigMap>::all(client),
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIG_MAP}")),
            |cm| {
                cm.namespace()
                    .map(|ns| kube::runtime::reflector::ObjectRef::new(&ns))
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// Creates `obj` unless it exists.
async fn ensure<K>(api: Api<K>, obj: K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    if api.get_opt(&obj.name_any()).await?.is_some() {
        return Ok(());
    }
    match api.create(&PostParams::default(), &obj).await {
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let meta = |n: &str| ObjectMeta {
        name: Some(n.to_string()),
        namespace: Some(name.clone()),
        ..Default::default()
    };
    ensure(
        Api::<ServiceAccount>::namespaced(ctx.client.clone(), &name),
        ServiceAccount {
            metadata: meta(DEFAULT_SERVICE_ACCOUNT),
            ..Default::default()
        },
    )
    .await?;
    ensure(
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &name),
        ConfigMap {
            metadata: meta(ROOT_CA_CONFIG_MAP),
            data: Some(BTreeMap::from([("ca.crt".to_string(), ctx.ca_pem.clone())])),
            ..Default::default()
        },
    )
    .await?;
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<Namespace>, err: &kube::Error, _ctx: Arc<Context>) -> Action {
    // Creating into a namespace that just began terminating is refused: nothing to retry then.
    if !matches!(err, kube::Error::Api(s) if s.code == 403) {
        warn!(namespace = %ns.name_any(), error = %err, "namespace defaults failed; retrying");
    }
    Action::requeue(Duration::from_secs(2))
}

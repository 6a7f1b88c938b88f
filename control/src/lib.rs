//! The Skiff control plane: the Kubernetes API server over a [`store::Store`], its watch cache,
//! PKI and bootstrap objects, and the controllers that need nothing but the API.
//!
//! [`ControlPlane::run`] is the one entry point `skiff up` and `skiff control` call.

pub mod allocators;
pub mod apiserver;
mod bootstrap;
pub mod controllers;
pub mod join;
pub mod loopback;
pub mod pki;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod watch_cache;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::apiserver::ApiServer;
use crate::store::{RedbOptions, RedbStore};
use crate::watch_cache::WatchCache;

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    #[error(transparent)]
    KubeletClient(#[from] apiserver::KubeletClientError),
    #[error("bootstrapping cluster objects: {0}")]
    Bootstrap(skiff_api::ApiError),
}

/// Where and how the control plane runs.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where each Node's podCIDR is taken from.
    pub cluster_cidr: controllers::node_ipam::ClusterCidr,
}

impl ControlPlaneConfig {
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// The join token nodes present (`skiff node --token`).
    pub fn token_path(&self) -> PathBuf {
        self.data_dir.join("token")
    }

    /// The URL clients use: a wildcard listen address is reached through loopback.
    pub fn server_url(&self) -> String {
        let host = match self.listen.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("https://{host}:{}", self.listen.port())
    }
}

pub struct ControlPlane;

impl ControlPlane {
    /// Opens the store, writes the admin kubeconfig, serves the API until `shutdown`.
    /// `on_ready` runs once the API answers `/readyz`, with the token nodes join with.
    pub async fn run(
        config: ControlPlaneConfig,
        shutdown: CancellationToken,
        on_ready: impl FnOnce(&ControlPlaneConfig, &skiff_api::join::JoinToken) + Send,
    ) -> Result<(), ControlPlaneError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ControlPlaneError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let listener = server::bind(config.listen).await?;
        let pki = pki::load_or_create(&config.data_dir.join("pki"), config.listen)?;
        let join_token = join::load_or_create_token(&config.token_path(), &pki.ca)?;
        let kubeconfig = pki::kubeconfig(&pki.ca, &pki.admin, &config.server_url(), "admin");
        pki::write_kubeconfig(&config.kubeconfig_path(), &kubeconfig)?;

        let best_effort_prefixes = skiff_api::registry::all()
            .iter()
            .filter(|r| r.kind == "Event")
            .map(|r| r.key_prefix())
            .collect();
        let store = Arc::new(RedbStore::open(
            &config.data_dir.join("store.redb"),
            RedbOptions {
                best_effort_prefixes,
                ..RedbOptions::default()
            },
        )?);
        let prefixes = skiff_api::registry::all().iter().map(|r| r.key_prefix());
        let watch_cache = WatchCache::start(store.clone(), prefixes, shutdown.clone());
        let api = ApiServer::new(store, watch_cache);
        api.set_kubelet_client(apiserver::KubeletClient::new(
            &pki.ca.cert_pem,
            &pki.kubelet_client,
        )?);
        bootstrap::run(&api)
            .await
            .map_err(ControlPlaneError::Bootstrap)?;
        let ca_pem = pki.ca.cert_pem.clone();
        let router = join::router(join_token.clone(), pki.ca.clone()).merge(api.router());
        let controllers = loopback::client(router.clone(), loopback::controller_user());
        let serving = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { server::serve(listener, &pki, router, shutdown).await }
        });
        controllers::start(controllers, &ca_pem, config.cluster_cidr, shutdown.clone());
        api.set_ready();
        info!(listen = %config.listen, "API server ready");
        on_ready(&config, &join_token);
        match serving.await {
            Ok(result) => result?,
            Err(e) => tracing::error!(error = %e, "API server task failed"),
        }
        Ok(())
    }
}

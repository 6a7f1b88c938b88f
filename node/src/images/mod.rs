//! Images for the node's pods: [`ImageService::ensure`] makes a reference present per its
//! `imagePullPolicy`, pulling from OCI/Docker v2 registries (with `imagePullSecrets`, plain HTTP
//! for loopback and `--insecure-registry` registries) into a verified content store, and hands
//! the pod worker the [`ImageArtifact`] a runtime runs: a Wasm module, or an ordinary image's
//! layers. [`push_wasm`] is `skiff push`.
//!
//! Concurrent `ensure` calls for one reference share one pull. What was pulled survives a
//! restart of the agent: `IfNotPresent` and `Never` see it without asking the registry.

mod auth;
mod detect;
mod error;
mod pull;
mod push;
mod reference;
mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use oci_client::Reference;
use skiff_sandbox::{ArtifactKind, ImageArtifact, ImageConfig};

pub use auth::{RegistryAuth, auths_from_secrets};
pub use error::{ImageError, PullError, PushError, RegistryError, StoreError};
pub use push::{push_image, push_wasm};
pub use reference::{PullPolicy, UnknownPullPolicy};

use store::ContentStore;

/// What `ensure` hands the pod worker.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub artifact: ImageArtifact,
    /// Set when this call pulled (or joined a pull): the `Pulled` Event's figures.
    pub pulled: Option<PullReport>,
}

/// How a pull went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullReport {
    /// From the first request to the registry until the image was stored.
    pub duration: Duration,
    /// Config plus layers, as the manifest lists them.
    pub size_bytes: u64,
}

impl PullReport {
    /// The kubelet's `Pulled` Event message; `waited` is the time since the worker asked for
    /// the image (it includes waiting for a pull another container started).
    pub fn message(&self, image: &str, waited: Duration) -> String {
        format!(
            "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {} bytes.",
            go_duration(self.duration),
            go_duration(waited.max(self.duration)),
            self.size_bytes
        )
    }
}

/// The node's images. Cheap to clone; clones share the store and pulls in flight.
#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

struct Inner {
    store: ContentStore,
    insecure_registries: Vec<String>,
    /// Artifacts built from the store, by manifest digest.
    resolved: Mutex<HashMap<String, Arc<Resolved>>>,
    /// Pulls in flight, by normalised reference.
    inflight: Mutex<HashMap<String, SharedPull>>,
}

struct Resolved {
    kind: ArtifactKind,
    config: ImageConfig,
}

type PullOutcome = Result<(String, Arc<Resolved>, PullReport), ImageError>;
type SharedPull = Shared<BoxFuture<'static, PullOutcome>>;

impl ImageService {
    /// Opens the content store under `root` (creating it). `insecure_registries` (`host` or
    /// `host:port`) may be reached over plain HTTP; loopback registries always may.
    pub fn new(root: PathBuf, insecure_registries: Vec<String>) -> Result<Self, ImageError> {
        let store = ContentStore::open(&root).map_err(|e| ImageError::Store {
            path: root.clone(),
            source: Arc::new(e),
        })?;
        Ok(ImageService {
            inner: Arc::new(Inner {
                store,
                insecure_registries,
                resolved: Mutex::default(),
                inflight: Mutex::default(),
            }),
        })
    }

    /// Whether `reference` is in the store: with `IfNotPresent`, `ensure` will not pull it
    /// (the kubelet then says "already present on machine" instead of "Pulling image").
    pub fn is_present(&self, reference: &str) -> bool {
        reference::parse(reference).is_ok_and(|image| {
            self.inner
                .store
                .lookup(&image.whole())
                .is_some_and(|digest| self.inner.store.has(&digest))
        })
    }

    /// Makes `reference` present per `policy`, pulling if needed (concurrent calls for one
    /// reference share one pull). `auths` are candidates from the pod's imagePullSecrets.
    pub async fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        auths: &[RegistryAuth],
    ) -> Result<PulledImage, ImageError> {
        let image = reference::parse(reference)?;
        if policy != PullPolicy::Always {
            if let Some((digest, resolved)) = self.present(&image).await {
                return Ok(PulledImage {
                    artifact: artifact(reference, digest, &resolved),
                    pulled: None,
                });
            }
            if policy == PullPolicy::Never {
                return Err(ImageError::NeverPull {
                    image: reference.to_string(),
                });
            }
        }
        let (digest, resolved, report) = self.shared_pull(image, reference, auths).await?;
        Ok(PulledImage {
            artifact: artifact(reference, digest, &resolved),
            pulled: Some(report),
        })
    }

    /// The stored image `image` names, if the store holds all of it.
    async fn present(&self, image: &Reference) -> Option<(String, Arc<Resolved>)> {
        let digest = self.inner.store.lookup(&image.whole())?;
        if !self.inner.store.has(&digest) {
            return None;
        }
        match self.inner.clone().resolve(digest.clone()).await {
            Ok(resolved) => Some((digest, resolved)),
            Err(e) => {
                tracing::warn!(image = %image, error = %e, "stored image is unusable; pulling it again");
                None
            }
        }
    }

    async fn shared_pull(
        &self,
        image: Reference,
        name: &str,
        auths: &[RegistryAuth],
    ) -> PullOutcome {
        let key = image.whole();
        let pull = {
            let mut inflight = lock(&self.inner.inflight);
            inflight
                .entry(key.clone())
                .or_insert_with(|| {
                    let inner = self.inner.clone();
                    let (name, auths) = (name.to_string(), auths.to_vec());
                    async move { inner.pull(image, name, auths).await }
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let outcome = pull.clone().await;
        let mut inflight = lock(&self.inner.inflight);
        if inflight.get(&key).is_some_and(|p| p.ptr_eq(&pull)) {
            inflight.remove(&key);
        }
        outcome
    }
}

impl Inner {
    async fn pull(
        self: Arc<Self>,
        image: Reference,
        name: String,
        auths: Vec<RegistryAuth>,
    ) -> PullOutcome {
        let started = Instant::now();
        tracing::info!(image = %name, "pulling image");
        let fetched = pull::pull(&self.store, &image, &auths, &self.insecure_registries)
            .await
            .map_err(|e| ImageError::pull(&name, e))?;
        let resolved = self
            .clone()
            .resolve(fetched.digest.clone())
            .await
            .map_err(|e| ImageError::pull(&name, e))?;
        self.store
            .record(&image.whole(), &fetched.digest)
            .map_err(|e| ImageError::pull(&name, e))?;
        let report = PullReport {
            duration: started.elapsed(),
            size_bytes: fetched.size_bytes,
        };
        tracing::info!(image = %name, digest = %fetched.digest, ?report, "pulled image");
        Ok((fetched.digest, resolved, report))
    }

    /// The artifact of stored manifest `digest`, built once per digest (reading layers and
    /// extracting a module is blocking work, done off the async threads).
    async fn resolve(self: Arc<Self>, digest: String) -> Result<Arc<Resolved>, PullError> {
        if let Some(resolved) = lock(&self.resolved).get(&digest) {
            return Ok(resolved.clone());
        }
        let inner = self.clone();
        let key = digest.clone();
        let built = tokio::task::spawn_blocking(move || detect::resolve(&inner.store, &key));
        let (kind, config) = match built.await {
            Ok(result) => result?,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        let resolved = Arc::new(Resolved { kind, config });
        lock(&self.resolved).insert(digest, resolved.clone());
        Ok(resolved)
    }
}

fn artifact(reference: &str, digest: String, resolved: &Resolved) -> ImageArtifact {
    ImageArtifact {
        reference: reference.to_string(),
        digest,
        kind: resolved.kind.clone(),
        config: resolved.config.clone(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A duration as Go prints a `time.Duration` truncated to milliseconds (`523ms`, `1.5s`,
/// `2m3.25s`), the way the kubelet's Events show pull times.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        out.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_reports_read_like_the_kubelets_events() {
        let report = PullReport {
            duration: Duration::from_millis(1234),
            size_bytes: 42,
        };
        assert_eq!(
            report.message("127.0.0.1:5000/hello:v1", Duration::from_millis(1500)),
            r#"Successfully pulled image "127.0.0.1:5000/hello:v1" in 1.234s (1.5s including waiting). Image size: 42 bytes."#
        );
        for (ms, go) in [
            (0, "0s"),
            (7, "7ms"),
            (1000, "1s"),
            (61_050, "1m1.05s"),
            (3_600_000, "1h0m0s"),
        ] {
            assert_eq!(go_duration(Duration::from_millis(ms)), go);
        }
    }

    #[tokio::test]
    async fn never_without_the_image_fails_without_a_registry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = ImageService::new(dir.path().into(), vec![]).expect("store");
        let err = images
            .ensure("127.0.0.1:9/absent:v1", PullPolicy::Never, &[])
            .await
            .expect_err("absent");
        assert_eq!(err.reason(), "ErrImageNeverPull");
        assert_eq!(
            err.to_string(),
            r#"Container image "127.0.0.1:9/absent:v1" is not present with pull policy of Never"#
        );
        assert!(!images.is_present("127.0.0.1:9/absent:v1"));
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_an_image_pull_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = ImageService::new(dir.path().into(), vec![]).expect("store");
        // Bound then dropped: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let image = format!("127.0.0.1:{port}/hello:v1");
        let err = images
            .ensure(&image, PullPolicy::IfNotPresent, &[])
            .await
            .expect_err("unreachable");
        assert_eq!(err.reason(), "ErrImagePull");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("Failed to pull image {image:?}: ")),
            "{message}"
        );
        assert!(message.contains("onnection refused"), "{message}");
    }
}

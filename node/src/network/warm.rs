//! Warm pod networks: while pods are being started, the node keeps one network made ahead
//! (namespace, `lo`, `eth0` and its address, by the same CNI plugins), so the next pod without
//! hostPorts claims it instead of waiting for the plugins: CNI leaves a container's start path
//! the way a pause container's sandbox leaves it in the kubelet's. A claimed network keeps the
//! CNI container ID it was made with; the pod's state directory holds a `claim` file naming it,
//! which status and teardown follow. An unclaimed network is torn down after [`IDLE`] without
//! a claim, so an idle node holds none.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, warn};

use super::{PodNetwork, PodNetworkRequest, PodNetworkStatus, pods_dir};

/// How long a warm network waits for a claim before it is torn down.
pub const IDLE: Duration = Duration::from_secs(10);
/// Networks kept ready: two, so that a pod created while one is being made still finds one.
const READY: usize = 2;
const PREFIX: &str = "warm-";
const CLAIM: &str = "claim";

#[derive(Debug, Default)]
pub(super) struct WarmPool {
    enabled: AtomicBool,
    ready: Mutex<VecDeque<String>>,
    filling: AtomicBool,
    /// Counts claims: a reaper that sees it unchanged after [`IDLE`] empties the pool.
    claims: AtomicU64,
}

impl PodNetwork {
    /// Keeps a network warm from now on, and tears down the unclaimed ones an earlier agent
    /// left.
    pub fn keep_warm(self: &Arc<Self>) {
        self.warm.enabled.store(true, Ordering::SeqCst);
        let this = self.clone();
        tokio::spawn(async move {
            let claimed: Vec<String> = std::fs::read_dir(pods_dir(&this.config))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join(CLAIM)).ok())
                .collect();
            let stale: Vec<String> = std::fs::read_dir(pods_dir(&this.config))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(PREFIX) && !claimed.contains(name))
                .collect();
            for id in stale {
                if let Err(e) = this.teardown(&id).await {
                    warn!(id, error = %e, "tearing down a warm network left by an earlier agent");
                }
            }
        });
    }

    /// A warm network for `pod`, if one is ready and the pod needs nothing it lacks (hostPorts
    /// go through portmap at the pod's own ADD).
    pub(super) fn claim(&self, pod: &PodNetworkRequest) -> Option<PodNetworkStatus> {
        if !self.warm.enabled.load(Ordering::SeqCst)
            || pod.port_mappings.iter().any(|m| m.host_port != 0)
        {
            return None;
        }
        loop {
            let id = self
                .warm
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()?;
            let Some(status) = self.status(&id) else {
                continue;
            };
            let dir = self.state_dir(&pod.uid);
            if let Err(e) =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(CLAIM), &id))
            {
                warn!(error = %e, "recording a claim of a warm network");
                self.warm
                    .ready
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_front(id);
                return None;
            }
            self.warm.claims.fetch_add(1, Ordering::SeqCst);
            debug!(pod.uid = %pod.uid, id, "claimed a warm network");
            return Some(status);
        }
    }

    /// The network a pod uid stands for: the warm network it claimed, else its own.
    pub(super) fn resolve(&self, uid: &str) -> String {
        std::fs::read_to_string(self.state_dir(uid).join(CLAIM))
            .ok()
            .filter(|id| id.starts_with(PREFIX))
            .unwrap_or_else(|| uid.to_string())
    }

    /// Whether `uid` claimed a warm network (its state directory is only the claim).
    pub(super) fn claimed(&self, uid: &str) -> bool {
        self.state_dir(uid).join(CLAIM).exists()
    }

    /// Makes networks until [`READY`] are warm, in the background, and schedules their
    /// removal if no pod claims one for [`IDLE`].
    pub fn refill(self: &Arc<Self>) {
        if !self.warm.enabled.load(Ordering::SeqCst)
            || self.warm.filling.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            while this
                .warm
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
                < READY
            {
                let id = format!("{PREFIX}{}", random_suffix());
                let request = PodNetworkRequest {
                    uid: id.clone(),
                    namespace: String::new(),
                    name: String::new(),
                    port_mappings: Vec::new(),
                };
                let background = this.invoker.clone().with_nice(10);
                match this.setup_inner(&request, &background).await {
                    Ok(_) => this
                        .warm
                        .ready
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_back(id),
                    Err(e) => {
                        warn!(error = %e, "making a warm pod network failed");
                        break;
                    }
                }
            }
            this.warm.filling.store(false, Ordering::SeqCst);
            let seen = this.warm.claims.load(Ordering::SeqCst);
            tokio::time::sleep(IDLE).await;
            if this.warm.claims.load(Ordering::SeqCst) == seen {
                this.drain().await;
            }
        });
    }

    async fn drain(&self) {
        let ids: Vec<String> = self
            .warm
            .ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for id in ids {
            if let Err(e) = self.teardown(&id).await {
                warn!(id, error = %e, "tearing down an unclaimed warm network");
            }
        }
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

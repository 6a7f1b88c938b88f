//! [`PodNetwork::teardown`]: undo [`PodNetwork::setup`], from whatever state it is in.

use tracing::{Instrument, debug, info, info_span, warn};

use super::cni::RuntimeConf;
use super::{NetworkError, POD_INTERFACE, PodNetwork, PodState, netns, validate_uid};

impl PodNetwork {
    /// CNI DEL of the pod network (plugins in reverse order, the saved ADD result as
    /// `prevResult`, the configuration saved at ADD time), DEL of the loopback network, then
    /// the namespace and the pod's state files are removed.
    ///
    /// Idempotent and restart-safe: a pod with nothing left is `Ok`, and a missing namespace
    /// (e.g. after a reboot) is handed to DEL as an empty `CNI_NETNS`, which releases the
    /// address anyway. If a DEL fails, the namespace and state are kept so a retry can finish.
    pub async fn teardown(&self, uid: &str) -> Result<(), NetworkError> {
        validate_uid(uid)?;
        if self.claimed(uid) {
            let id = self.resolve(uid);
            if id != uid {
                let span = info_span!("pod_network_teardown", pod.uid = %uid, warm = %id);
                self.teardown_inner(&id).instrument(span).await?;
            }
            return self.remove_state(uid);
        }
        let span = info_span!("pod_network_teardown", pod.uid = %uid);
        self.teardown_inner(uid).instrument(span).await
    }

    async fn teardown_inner(&self, uid: &str) -> Result<(), NetworkError> {
        let netns_path = self.netns_path(uid);
        let saved = match self.read_state(uid) {
            Ok(saved) => saved,
            Err(e) => {
                warn!(error = %e, "unreadable pod network state; using the current configuration");
                Some(self.unrecorded_state(uid))
            }
        };
        let state = match saved {
            Some(state) => state,
            // State is written before the namespace is made, so a namespace without it means
            // the state was lost: DEL with what we have (no port mappings are known).
            None if netns_path.exists() => self.unrecorded_state(uid),
            None => {
                debug!("no pod network to tear down");
                return self.remove_state(uid);
            }
        };

        let present = netns::is_netns(&netns_path);
        let runtime = RuntimeConf {
            netns: present.then(|| netns_path.clone()),
            ..state.runtime.clone()
        };
        // Plugins must DEL while the namespace exists: bridge reads the pod's addresses from
        // it to remove their masquerade rules.
        self.invoker
            .del_list(&state.network, &runtime, state.result.as_ref())
            .await?;
        if present {
            let lo = RuntimeConf {
                netns: runtime.netns.clone(),
                ..state.loopback_runtime()
            };
            self.invoker.del_list(&state.loopback, &lo, None).await?;
        }
        let remove_path = netns_path.clone();
        tokio::task::spawn_blocking(move || netns::remove(&remove_path))
            .await
            .map_err(|_| NetworkError::NetnsThread { path: netns_path })??;
        self.remove_state(uid)?;
        info!("pod network torn down");
        Ok(())
    }

    /// The state a pod would have had, for DEL when its own was lost.
    fn unrecorded_state(&self, uid: &str) -> PodState {
        PodState {
            network: self.network.clone(),
            loopback: self.loopback.clone(),
            runtime: RuntimeConf {
                container_id: uid.to_string(),
                netns: Some(self.netns_path(uid)),
                if_name: POD_INTERFACE.into(),
                args: vec![("IgnoreUnknown".into(), "1".into())],
                capability_args: Default::default(),
            },
            result: None,
        }
    }

    fn remove_state(&self, uid: &str) -> Result<(), NetworkError> {
        let dir = self.state_dir(uid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetworkError::Io {
                action: "removing",
                path: dir,
                source,
            }),
        }
    }
}

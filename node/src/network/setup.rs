//! [`PodNetwork::setup`]: a pod's namespace, `lo`, and `eth0` with an address from the
//! podCIDR, all or nothing.

use serde_json::{Map, Value, json};
use tracing::{Instrument, debug, info, info_span, warn};

use super::cni::{CniInvoker, RuntimeConf};
use super::{
    NetworkError, POD_INTERFACE, PodNetwork, PodNetworkRequest, PodNetworkStatus, PodState,
    PortMapping, netns, validate_uid,
};

impl PodNetwork {
    /// Creates the pod's network namespace, runs the loopback network on `lo` and the pod
    /// network on `eth0` (CNI ADD, container ID = the pod uid), saves the ADD result, and
    /// returns the namespace and the pod's IPs.
    ///
    /// Idempotent: for a pod whose namespace is mounted and whose ADD completed (e.g. after an
    /// agent restart) it returns the saved status without running ADD again. Anything left from
    /// an incomplete earlier attempt is torn down first. On failure it tears down what it made
    /// before returning the error, so no half-made pod network remains.
    pub async fn setup(&self, pod: &PodNetworkRequest) -> Result<PodNetworkStatus, NetworkError> {
        validate_uid(&pod.uid)?;
        if self.claimed(&pod.uid) {
            if let Some(status) = self.status(&pod.uid) {
                return Ok(status);
            }
            self.teardown(&pod.uid).await?;
        }
        if let Some(status) = self.claim(pod) {
            return Ok(status);
        }
        let span = info_span!(
            "pod_network_setup",
            pod.uid = %pod.uid,
            pod.namespace = %pod.namespace,
            pod.name = %pod.name
        );
        self.setup_inner(pod, &self.invoker).instrument(span).await
    }

    /// Makes the network of `pod` (a pod's own, or a warm one) from scratch unless it exists.
    pub(super) async fn setup_inner(
        &self,
        pod: &PodNetworkRequest,
        invoker: &CniInvoker,
    ) -> Result<PodNetworkStatus, NetworkError> {
        let uid = pod.uid.as_str();
        let netns_path = self.netns_path(uid);
        match self.read_state(uid) {
            Ok(Some(state)) if netns::is_netns(&netns_path) => {
                if let Some(status) = state.status() {
                    debug!(ips = ?status.ips, "pod network already set up");
                    return Ok(status);
                }
                info!("clearing an incomplete pod network");
                self.teardown(uid).await?;
            }
            Ok(None) if !netns_path.exists() => {}
            _ => {
                info!("clearing a stale pod network");
                self.teardown(uid).await?;
            }
        }

        let mut state = PodState {
            network: self.network_for(&pod.port_mappings),
            loopback: self.loopback.clone(),
            runtime: RuntimeConf {
                container_id: uid.to_string(),
                netns: Some(netns_path),
                if_name: POD_INTERFACE.into(),
                args: cni_args(pod),
                capability_args: capability_args(&pod.port_mappings),
            },
            result: None,
        };
        // Saved before anything is made, so a teardown after a crash knows what to DEL.
        self.write_state(uid, &state)?;
        match self.attach(uid, &mut state, invoker).await {
            Ok(status) => {
                info!(ips = ?status.ips, "pod network set up");
                Ok(status)
            }
            Err(e) => {
                warn!(error = %e, "pod network setup failed; tearing down what was made");
                if let Err(cleanup) = self.teardown(uid).await {
                    warn!(error = %cleanup, "tearing down the failed pod network failed");
                }
                Err(e)
            }
        }
    }

    async fn attach(
        &self,
        uid: &str,
        state: &mut PodState,
        invoker: &CniInvoker,
    ) -> Result<PodNetworkStatus, NetworkError> {
        let path = self.netns_path(uid);
        let create_path = path.clone();
        tokio::task::spawn_blocking(move || netns::create(&create_path))
            .await
            .map_err(|_| NetworkError::NetnsThread { path: path.clone() })??;
        invoker
            .add_list(&state.loopback, &state.loopback_runtime())
            .await?;
        let result = invoker.add_list(&state.network, &state.runtime).await?;
        state.result = Some(result);
        self.write_state(uid, state)?;
        state.status().ok_or_else(|| NetworkError::NoPodAddress {
            uid: uid.to_string(),
            network: state.network.name.clone(),
        })
    }
}

/// `CNI_ARGS` as containerd passes them for a Kubernetes pod (`IgnoreUnknown` lets plugins
/// that do not know the keys accept them).
fn cni_args(pod: &PodNetworkRequest) -> Vec<(String, String)> {
    [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", pod.namespace.as_str()),
        ("K8S_POD_NAME", pod.name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.uid.as_str()),
        ("K8S_POD_UID", pod.uid.as_str()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// portmap's `runtimeConfig.portMappings`; like the kubelet, only ports with a hostPort.
fn capability_args(ports: &[PortMapping]) -> Map<String, Value> {
    let mappings: Vec<Value> = ports
        .iter()
        .filter(|p| p.host_port != 0)
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": p.protocol.to_ascii_lowercase(),
            });
            if let Some(ip) = p.host_ip {
                m["hostIP"] = ip.to_string().into();
            }
            m
        })
        .collect();
    let mut caps = Map::new();
    if !mappings.is_empty() {
        caps.insert("portMappings".into(), Value::Array(mappings));
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mappings_for_portmap() {
        let ports = [
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "TCP".into(),
                host_ip: None,
            },
            PortMapping {
                host_port: 0,
                container_port: 9090,
                protocol: "TCP".into(),
                host_ip: None,
            },
            PortMapping {
                host_port: 5353,
                container_port: 53,
                protocol: "UDP".into(),
                host_ip: Some("192.0.2.2".parse().unwrap()),
            },
        ];
        assert_eq!(
            Value::Object(capability_args(&ports)),
            json!({"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.2"},
            ]})
        );
        assert!(capability_args(&ports[1..2]).is_empty());
    }

    #[test]
    fn cni_args_like_containerd() {
        let pod = PodNetworkRequest {
            uid: "u-1".into(),
            namespace: "default".into(),
            name: "web".into(),
            port_mappings: vec![],
        };
        let joined: Vec<String> = cni_args(&pod)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            joined.join(";"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=u-1;K8S_POD_UID=u-1"
        );
    }
}

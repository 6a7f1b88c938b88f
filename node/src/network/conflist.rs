//! The node's network settings ([`NetworkConfig`]) and the CNI configuration Skiff writes from
//! them: the pod network conflist (bridge + host-local, then portmap) and the loopback one, in
//! `<data>/network/net.d/`. [`write_if_changed`] rewrites a file only when its content differs,
//! so a changed podCIDR (or bridge, or MTU) takes effect at the next start.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::NetworkError;
use super::cni::{CNI_VERSION, NetworkConfigList};

pub const DEFAULT_CNI_BIN_DIR: &str = "/usr/lib/cni";
pub const DEFAULT_BRIDGE: &str = "skiff0";
pub const DEFAULT_NETWORK_NAME: &str = "skiff";

/// The plugins the default configuration uses; all are in the containernetworking-plugins
/// package.
pub const REQUIRED_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// File names under `net.d/`; the pod network sorts first, as CNI runtimes pick the first.
pub const NETWORK_CONFLIST: &str = "10-skiff.conflist";
pub const LOOPBACK_CONFLIST: &str = "99-loopback.conflist";

/// How this node wires its pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The agent's network state: `net.d/`, `ipam/`, `netns/`, `pods/` (e.g. `<data>/network`).
    pub data_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    /// The node's `spec.podCIDR`, e.g. `10.42.0.0/24`.
    pub pod_cidr: String,
    /// The Linux bridge the pods attach to (at most 15 bytes, the kernel's limit).
    pub bridge: String,
    /// The CNI network name; host-local keeps its leases under `<data>/ipam/<name>/`.
    pub network_name: String,
    pub mtu: Option<u32>,
}

impl NetworkConfig {
    /// The defaults: plugins from `/usr/lib/cni`, bridge `skiff0`, network `skiff`.
    pub fn new(data_dir: impl Into<PathBuf>, pod_cidr: impl Into<String>) -> Self {
        NetworkConfig {
            data_dir: data_dir.into(),
            cni_bin_dir: PathBuf::from(DEFAULT_CNI_BIN_DIR),
            pod_cidr: pod_cidr.into(),
            bridge: DEFAULT_BRIDGE.into(),
            network_name: DEFAULT_NETWORK_NAME.into(),
            mtu: None,
        }
    }

    pub fn net_d(&self) -> PathBuf {
        self.data_dir.join("net.d")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.data_dir.join("ipam")
    }
}

/// The pod network conflist for `config`: a bridge that is the pods' gateway (their traffic
/// leaving the podCIDR is masqueraded by one node-wide rule, see `masquerade`), host-local addresses from the podCIDR (leases kept under
/// our data dir, not `/var/lib/cni`), then portmap for hostPorts.
pub fn pod_network(config: &NetworkConfig) -> Result<NetworkConfigList, NetworkError> {
    let subnet = parse_cidr(&config.pod_cidr).ok_or_else(|| NetworkError::InvalidPodCidr {
        cidr: config.pod_cidr.clone(),
    })?;
    if config.bridge.is_empty()
        || config.bridge.len() > 15
        || config.bridge.contains(['/', ' ', '\t', '\n', ':'])
    {
        return Err(NetworkError::InvalidBridgeName {
            bridge: config.bridge.clone(),
        });
    }
    let default_route = match subnet {
        IpAddr::V4(_) => "0.0.0.0/0",
        IpAddr::V6(_) => "::/0",
    };
    let mut bridge = json!({
        "type": "bridge",
        "bridge": config.bridge,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": config.pod_cidr}]],
            "routes": [{"dst": default_route}],
            "dataDir": config.ipam_dir(),
        },
    });
    if let Some(mtu) = config.mtu {
        bridge["mtu"] = mtu.into();
    }
    Ok(NetworkConfigList {
        cni_version: CNI_VERSION.into(),
        name: config.network_name.clone(),
        plugins: vec![
            bridge,
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        ],
    })
}

/// The loopback network, run on `lo` before the pod network so `127.0.0.1` works in the pod.
pub fn loopback() -> NetworkConfigList {
    NetworkConfigList {
        cni_version: CNI_VERSION.into(),
        name: "lo".into(),
        plugins: vec![json!({"type": "loopback"})],
    }
}

/// Writes `list` to `path` (through a temporary file and a rename, so a reader never sees half
/// of it) unless the file already holds exactly that. Returns whether it wrote.
pub fn write_if_changed(path: &Path, list: &NetworkConfigList) -> Result<bool, NetworkError> {
    let mut text = serde_json::to_string_pretty(list).unwrap_or_default();
    text.push('\n');
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NetworkError::Io {
            action: "writing",
            path,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &text).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(true)
}

/// Reads the subnet of `cidr`; `None` unless it is `address/prefix` with a prefix that fits.
fn parse_cidr(cidr: &str) -> Option<IpAddr> {
    let (addr, prefix) = cidr.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(addr)
}

/// The subnet of the pod network's first range, as written (for logs and tests).
pub fn subnet_of(list: &NetworkConfigList) -> Option<&str> {
    list.plugins
        .first()?
        .pointer("/ipam/ranges/0/0/subnet")
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetworkConfig {
        NetworkConfig::new("/var/lib/skiff/network", "10.42.0.0/24")
    }

    #[test]
    fn default_conflist() {
        let list = pod_network(&config()).unwrap();
        let expected = json!({
            "cniVersion": "1.0.0",
            "name": "skiff",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "skiff0",
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "10.42.0.0/24"}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": "/var/lib/skiff/network/ipam",
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        });
        assert_eq!(serde_json::to_value(&list).unwrap(), expected);
        assert_eq!(subnet_of(&list), Some("10.42.0.0/24"));
        assert_eq!(
            list.plugin_types().unwrap(),
            vec!["bridge", "portmap"],
            "host-local is bridge's ipam, not a list member"
        );
        assert_eq!(
            serde_json::to_value(loopback()).unwrap(),
            json!({"cniVersion": "1.0.0", "name": "lo", "plugins": [{"type": "loopback"}]})
        );
    }

    #[test]
    fn mtu_and_ipv6() {
        let mut c = config();
        c.mtu = Some(1400);
        c.pod_cidr = "fd00:42::/64".into();
        let list = pod_network(&c).unwrap();
        assert_eq!(list.plugins[0]["mtu"], 1400);
        assert_eq!(list.plugins[0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn bad_settings_are_refused() {
        for cidr in ["", "10.42.0.0", "10.42.0.0/33", "banana/8", "10.42.0.0/x"] {
            let mut c = config();
            c.pod_cidr = cidr.into();
            let err = pod_network(&c).unwrap_err();
            assert!(matches!(err, NetworkError::InvalidPodCidr { .. }), "{cidr}");
        }
        for bridge in ["", "a-very-long-bridge", "a/b"] {
            let mut c = config();
            c.bridge = bridge.into();
            let err = pod_network(&c).unwrap_err();
            assert!(
                matches!(err, NetworkError::InvalidBridgeName { .. }),
                "{bridge}"
            );
        }
    }

    #[test]
    fn conflist_is_rewritten_when_the_pod_cidr_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.d").join(NETWORK_CONFLIST);
        let mut c = config();
        assert!(write_if_changed(&path, &pod_network(&c).unwrap()).unwrap());
        assert!(!write_if_changed(&path, &pod_network(&c).unwrap()).unwrap());
        c.pod_cidr = "10.43.0.0/24".into();
        assert!(write_if_changed(&path, &pod_network(&c).unwrap()).unwrap());
        let on_disk: NetworkConfigList =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(subnet_of(&on_disk), Some("10.43.0.0/24"));
        assert!(!path.with_extension("tmp").exists());
    }
}

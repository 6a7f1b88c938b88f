//! Where a pod's ConfigMaps, Secrets and claimed volumes come from ([`ObjectSource`], with [`KubeObjects`] the
//! real one), and the node facts the downward API needs that the pod spec does not hold
//! ([`PodFacts`]).
//!
//! Env and volume resolution ask through the trait so they can be tested against a map and so
//! a cache (the kubelet's watch-based managers) can slot in later without touching them.

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use kube::Api;

/// Fetching a referenced object failed for a reason other than its absence (absence is
/// `Ok(None)`: callers decide whether `optional` lets them go on).
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("couldn't get {kind} {namespace}/{name}: {source}")]
    Api {
        kind: &'static str,
        namespace: String,
        name: String,
        // Boxed: kube's error is large and this one travels inside every env and volume error.
        #[source]
        source: Box<kube::Error>,
    },
}

/// Reads the ConfigMaps, Secrets and PersistentVolumeClaims a pod references, always in the
/// pod's namespace, and the PersistentVolumes its claims are bound to.
#[async_trait::async_trait]
pub trait ObjectSource: Send + Sync {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ObjectError>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectError>;
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ObjectError>;
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, ObjectError>;
}

/// The API server, read with plain GETs (the node authorizer limits a node to the objects its
/// own pods reference).
#[derive(Clone)]
pub struct KubeObjects {
    client: kube::Client,
}

impl KubeObjects {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

/// GETs one object: `None` when it does not exist.
async fn get<K>(
    api: Api<K>,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, ObjectError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(|source| ObjectError::Api {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    })
}

#[async_trait::async_trait]
impl ObjectSource for KubeObjects {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ObjectError> {
        let api = Api::namespaced(self.client.clone(), namespace);
        get(api, "configmap", namespace, name).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectError> {
        let api = Api::namespaced(self.client.clone(), namespace);
        get(api, "secret", namespace, name).await
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ObjectError> {
        let api = Api::namespaced(self.client.clone(), namespace);
        get(api, "persistentvolumeclaim", namespace, name).await
    }

    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, ObjectError> {
        get(Api::all(self.client.clone()), "persistentvolume", "", name).await
    }
}

/// What the downward API exposes beyond the pod object: where it runs and, for
/// `resourceFieldRef` on a container without a limit, the node's allocatable (the kubelet's
/// `defaultPodLimitsForDownwardAPI`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub node_name: String,
    pub host_ip: String,
    pub pod_ip: String,
    pub node_allocatable_cpu_millis: u64,
    pub node_allocatable_memory_bytes: u64,
    pub node_allocatable_ephemeral_storage_bytes: u64,
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory [`ObjectSource`] for tests of env and volume resolution.

    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
    use kube::api::ObjectMeta;

    use super::{ObjectError, ObjectSource};

    #[derive(Default)]
    pub struct FakeObjects {
        config_maps: Mutex<HashMap<(String, String), ConfigMap>>,
        secrets: Mutex<HashMap<(String, String), Secret>>,
        claims: Mutex<HashMap<(String, String), PersistentVolumeClaim>>,
        volumes: Mutex<HashMap<String, PersistentVolume>>,
        /// How many reads each `kind/name` got.
        pub reads: Mutex<HashMap<String, usize>>,
    }

    fn meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        }
    }

    impl FakeObjects {
        pub fn config_map(self, namespace: &str, name: &str, data: &[(&str, &str)]) -> Self {
            self.put_config_map(namespace, name, data, &[]);
            self
        }

        pub fn put_config_map(
            &self,
            namespace: &str,
            name: &str,
            data: &[(&str, &str)],
            binary: &[(&str, &[u8])],
        ) {
            let cm = ConfigMap {
                metadata: meta(namespace, name),
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                binary_data: (!binary.is_empty()).then(|| {
                    binary
                        .iter()
                        .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                        .collect::<BTreeMap<_, _>>()
                }),
                ..Default::default()
            };
            let mut map = self.config_maps.lock().expect("fake lock");
            map.insert((namespace.into(), name.into()), cm);
        }

        pub fn secret(self, namespace: &str, name: &str, data: &[(&str, &[u8])]) -> Self {
            let s = Secret {
                metadata: meta(namespace, name),
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                        .collect(),
                ),
                ..Default::default()
            };
            let mut map = self.secrets.lock().expect("fake lock");
            map.insert((namespace.into(), name.into()), s);
            drop(map);
            self
        }

        pub fn put_claim(&self, claim: PersistentVolumeClaim) {
            let key = (
                claim.metadata.namespace.clone().unwrap_or_default(),
                claim.metadata.name.clone().unwrap_or_default(),
            );
            self.claims.lock().expect("fake lock").insert(key, claim);
        }

        pub fn put_volume(&self, pv: PersistentVolume) {
            let name = pv.metadata.name.clone().unwrap_or_default();
            self.volumes.lock().expect("fake lock").insert(name, pv);
        }

        fn count(&self, key: String) {
            let mut reads = self.reads.lock().expect("fake lock");
            *reads.entry(key).or_default() += 1;
        }
    }

    #[async_trait::async_trait]
    impl ObjectSource for FakeObjects {
        async fn config_map(
            &self,
            namespace: &str,
            name: &str,
        ) -> Result<Option<ConfigMap>, ObjectError> {
            self.count(format!("configmap/{name}"));
            let map = self.config_maps.lock().expect("fake lock");
            Ok(map.get(&(namespace.into(), name.into())).cloned())
        }

        async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ObjectError> {
            self.count(format!("secret/{name}"));
            let map = self.secrets.lock().expect("fake lock");
            Ok(map.get(&(namespace.into(), name.into())).cloned())
        }

        async fn persistent_volume_claim(
            &self,
            namespace: &str,
            name: &str,
        ) -> Result<Option<PersistentVolumeClaim>, ObjectError> {
            let map = self.claims.lock().expect("fake lock");
            Ok(map.get(&(namespace.into(), name.into())).cloned())
        }

        async fn persistent_volume(
            &self,
            name: &str,
        ) -> Result<Option<PersistentVolume>, ObjectError> {
            Ok(self.volumes.lock().expect("fake lock").get(name).cloned())
        }
    }
}

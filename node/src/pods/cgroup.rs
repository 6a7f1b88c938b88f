//! Pod cgroups, laid out and limited as the kubelet lays out `kubepods`: Guaranteed pods at
//! `ROOT/pod<uid>`, the others under `ROOT/burstable` and `ROOT/besteffort`; container
//! cgroups go below their pod's. A pod's limits are its containers' together
//! (`ResourceConfigForPod`): CPU shares from the requests; a CPU quota and a memory limit only
//! when every container sets that limit; the node's per-pod pids limit always.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use skiff_sandbox::cgroups::{Cgroup, CgroupError, Hierarchy, Limits};
use tracing::warn;

use super::sync::resource_limits;

/// The node's pod cgroups; without a usable cgroup hierarchy (no cgroupfs mounted), pods run
/// in the agent's own cgroup and their limits are enforced by the runtimes alone.
pub struct PodCgroups {
    hierarchy: Option<Hierarchy>,
    root: PathBuf,
    pod_max_pids: Option<u64>,
}

impl PodCgroups {
    /// `root` is the node's cgroup below each hierarchy's root (`skiff`).
    pub fn detect(root: PathBuf, pod_max_pids: Option<u64>) -> PodCgroups {
        let hierarchy = match Hierarchy::detect() {
            Ok(h) => Some(h),
            Err(e) => {
                warn!(error = %e, "no cgroup hierarchy found; pods run without pod cgroups");
                None
            }
        };
        PodCgroups {
            hierarchy,
            root,
            pod_max_pids,
        }
    }

    fn qos_dir(&self, qos: &str) -> PathBuf {
        match qos {
            "Guaranteed" => self.root.clone(),
            "BestEffort" => self.root.join("besteffort"),
            _ => self.root.join("burstable"),
        }
    }

    /// Where `pod`'s cgroup is, below the hierarchy root.
    pub fn path(&self, pod: &Pod) -> PathBuf {
        let qos = pod
            .status
            .as_ref()
            .and_then(|s| s.qos_class.as_deref())
            .unwrap_or("BestEffort");
        self.qos_dir(qos)
            .join(format!("pod{}", pod.uid().unwrap_or_default()))
    }

    /// Creates `pod`'s cgroup with its limits; `None` when the node has no cgroups to use.
    pub fn ensure(&self, pod: &Pod) -> Result<Option<PathBuf>, CgroupError> {
        let Some(hierarchy) = &self.hierarchy else {
            return Ok(None);
        };
        let path = self.path(pod);
        let limits = Limits {
            pids: self.pod_max_pids,
            ..pod_limits(pod)
        };
        Cgroup::new(hierarchy.clone(), path.clone()).create(&limits)?;
        Ok(Some(path))
    }

    /// Removes the cgroup of the pod with `uid` wherever its QoS class put it, with whatever
    /// runc left below it.
    pub fn remove(&self, uid: &str) {
        let Some(hierarchy) = &self.hierarchy else {
            return;
        };
        for qos in ["Guaranteed", "Burstable", "BestEffort"] {
            let path = self.qos_dir(qos).join(format!("pod{uid}"));
            if let Err(e) = Cgroup::new(hierarchy.clone(), path).remove() {
                warn!(uid, error = %e, "removing the pod cgroup failed");
            }
        }
    }
}

/// The pod cgroup's limits from its containers' (init containers run alone, so the largest
/// of them counts when it is larger than the app containers together).
fn pod_limits(pod: &Pod) -> Limits {
    let Some(spec) = pod.spec.as_ref() else {
        return Limits::default();
    };
    let sum = |containers: &[k8s_openapi::api::core::v1::Container]| {
        let mut total = Limits {
            cpu_limit_milli: Some(0),
            memory_bytes: Some(0),
            ..Limits::default()
        };
        for c in containers {
            let r = resource_limits(c);
            total.cpu_request_milli += r.cpu_request_millis;
            total.cpu_limit_milli = total
                .cpu_limit_milli
                .zip(r.cpu_limit_millis)
                .map(|(a, b)| a + b);
            total.memory_bytes = total
                .memory_bytes
                .zip(r.memory_limit_bytes)
                .map(|(a, b)| a + b);
        }
        total
    };
    let mut limits = sum(&spec.containers);
    for init in spec.init_containers.iter().flatten() {
        let one = sum(std::slice::from_ref(init));
        limits.cpu_request_milli = limits.cpu_request_milli.max(one.cpu_request_milli);
        limits.cpu_limit_milli = limits
            .cpu_limit_milli
            .zip(one.cpu_limit_milli)
            .map(|(a, b)| a.max(b));
        limits.memory_bytes = limits
            .memory_bytes
            .zip(one.memory_bytes)
            .map(|(a, b)| a.max(b));
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: serde_json::Value, qos: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u1"},
            "spec": {"containers": containers},
            "status": {"qosClass": qos}
        }))
        .expect("pod")
    }

    #[test]
    fn pod_limits_are_the_containers_together_when_all_set_them() {
        let both = pod(
            serde_json::json!([
                {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "32Mi"}}}
            ]),
            "Burstable",
        );
        assert_eq!(
            pod_limits(&both),
            Limits {
                cpu_request_milli: 350,
                cpu_limit_milli: Some(1500),
                memory_bytes: Some(96 << 20),
                pids: None
            }
        );
        let one_unlimited = pod(
            serde_json::json!([
                {"name": "a", "resources": {"limits": {"memory": "64Mi"}}},
                {"name": "b"}
            ]),
            "Burstable",
        );
        let limits = pod_limits(&one_unlimited);
        assert_eq!((limits.cpu_limit_milli, limits.memory_bytes), (None, None));
    }

    #[test]
    fn pods_are_placed_by_qos_class() {
        let cgroups = PodCgroups {
            hierarchy: None,
            root: "skiff".into(),
            pod_max_pids: None,
        };
        let empty = serde_json::json!([{"name": "a"}]);
        assert_eq!(
            cgroups.path(&pod(empty.clone(), "Guaranteed")),
            PathBuf::from("skiff/podu1")
        );
        assert_eq!(
            cgroups.path(&pod(empty.clone(), "Burstable")),
            PathBuf::from("skiff/burstable/podu1")
        );
        assert_eq!(
            cgroups.path(&pod(empty, "BestEffort")),
            PathBuf::from("skiff/besteffort/podu1")
        );
    }
}

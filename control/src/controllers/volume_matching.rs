//! Which PersistentVolume may serve which PersistentVolumeClaim, as Kubernetes' persistent
//! volume controller (`pkg/controller/volume/persistentvolume/index.go`, `findMatchingVolume`)
//! and the scheduler's VolumeBinding plugin decide it: the same class and volume mode, every
//! access mode the claim asks for, at least its requested size, its label selector, and nothing
//! else bound or reserved. Pure functions, shared by the controller and the scheduler.

use k8s_openapi::api::core::v1::{NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use skiff_api::quantity::Quantity;

use super::ownership::Selector;

/// A volume's phase, `Pending` until the controller first looks at it.
pub fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// The class a claim asks for; the beta annotation still wins over the field, as everywhere in
/// Kubernetes. Empty: no class.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .annotations()
        .get("volume.beta.kubernetes.io/storage-class")
        .map(String::as_str)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The class a volume belongs to, read like [`claim_class`].
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.annotations()
        .get("volume.beta.kubernetes.io/storage-class")
        .map(String::as_str)
        .or_else(|| pv.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The volume a claim is bound (or pre-bound by its author) to.
pub fn claim_volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()?
        .volume_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// The bytes a claim requests (`resources.requests.storage`).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> i128 {
    let requests = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref());
    storage_bytes(requests.and_then(|r| r.get("storage")))
}

fn capacity_bytes(pv: &PersistentVolume) -> i128 {
    let capacity = pv.spec.as_ref().and_then(|s| s.capacity.as_ref());
    storage_bytes(capacity.and_then(|c| c.get("storage")))
}

fn storage_bytes(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i128 {
    q.and_then(|q| q.0.parse::<Quantity>().ok())
        .map_or(0, |q| q.as_bytes())
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map_or("Filesystem", String::as_str)
}

/// Whether a volume's claim reference names this claim (by uid once the binding is made; by
/// namespace and name when the volume's author pre-bound it).
pub fn reserved_for(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == Some(claim.name_any().as_str())
        && r.namespace == claim.namespace()
        && r.uid
            .as_deref()
            .is_none_or(|uid| Some(uid) == claim.uid().as_deref())
}

/// Whether `pv` may be bound to `claim`, its node affinity aside.
pub fn volume_fits_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let (Some(spec), Some(want)) = (pv.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    let free = match &spec.claim_ref {
        None => true,
        Some(_) => reserved_for(pv, claim),
    };
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    let wanted_modes = want.access_modes.as_deref().unwrap_or_default();
    let selected = want.selector.as_ref().is_none_or(|s| {
        let selector = Selector::new(Some(s));
        selector.matches(pv.labels())
    });
    let pre_bound_elsewhere = claim_volume_name(claim).is_some_and(|n| n != pv.name_any());
    free && !pre_bound_elsewhere
        && pv.metadata.deletion_timestamp.is_none()
        && matches!(volume_phase(pv), "Pending" | "Available")
        && volume_class(pv) == claim_class(claim)
        && volume_mode(spec.volume_mode.as_ref()) == volume_mode(want.volume_mode.as_ref())
        && wanted_modes.iter().all(|m| modes.contains(m))
        && capacity_bytes(pv) >= requested_bytes(claim)
        && selected
}

/// The smallest of `volumes` that fits `claim` and that `node_ok` accepts, a volume reserved
/// for the claim first, as the controller picks it.
pub fn best_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node_ok: impl Fn(&PersistentVolume) -> bool,
) -> Option<&'a PersistentVolume> {
    volumes
        .into_iter()
        .filter(|pv| volume_fits_claim(pv, claim) && node_ok(pv))
        .min_by_key(|pv| (!reserved_for(pv, claim), capacity_bytes(pv)))
}

/// The required node affinity of a volume (`spec.nodeAffinity.required`), if it has one.
pub fn volume_node_terms(pv: &PersistentVolume) -> Option<&[NodeSelectorTerm]> {
    let required = pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?;
    Some(&required.node_selector_terms)
}

/// The claims a pod's volumes name, in order.
pub fn pod_claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(spec: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(
            json!({"metadata": {"name": "pv1", "labels": {"tier": "fast"}},
            "spec": spec, "status": {"phase": "Available"}}),
        )
        .expect("pv")
    }

    fn claim(spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": spec}),
        )
        .expect("claim")
    }

    fn base_pv() -> serde_json::Value {
        json!({"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
               "storageClassName": "manual", "hostPath": {"path": "/data"}})
    }

    fn base_claim() -> serde_json::Value {
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
               "resources": {"requests": {"storage": "1Gi"}}})
    }

    fn with(mut v: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
        v[key] = value;
        v
    }

    #[test]
    fn class_size_modes_and_selector_must_match() {
        assert!(volume_fits_claim(&pv(base_pv()), &claim(base_claim())));
        let fits = |pv_spec, claim_spec| volume_fits_claim(&pv(pv_spec), &claim(claim_spec));
        assert!(!fits(
            base_pv(),
            with(base_claim(), "storageClassName", json!("other"))
        ));
        assert!(!fits(
            base_pv(),
            with(
                base_claim(),
                "resources",
                json!({"requests": {"storage": "3Gi"}})
            )
        ));
        assert!(fits(
            base_pv(),
            with(
                base_claim(),
                "resources",
                json!({"requests": {"storage": "2048Mi"}})
            )
        ));
        assert!(!fits(
            base_pv(),
            with(base_claim(), "accessModes", json!(["ReadWriteMany"]))
        ));
        assert!(!fits(
            base_pv(),
            with(base_claim(), "volumeMode", json!("Block"))
        ));
        assert!(fits(
            base_pv(),
            with(
                base_claim(),
                "selector",
                json!({"matchLabels": {"tier": "fast"}})
            )
        ));
        assert!(!fits(
            base_pv(),
            with(
                base_claim(),
                "selector",
                json!({"matchLabels": {"tier": "slow"}})
            )
        ));
        // No class on either side matches; a class on one side only does not.
        let unclassed = |mut v: serde_json::Value| {
            v.as_object_mut().map(|m| m.remove("storageClassName"));
            v
        };
        assert!(fits(unclassed(base_pv()), unclassed(base_claim())));
        assert!(!fits(unclassed(base_pv()), base_claim()));
    }

    #[test]
    fn a_volume_bound_or_reserved_elsewhere_does_not_fit() {
        let taken = with(
            base_pv(),
            "claimRef",
            json!({"namespace": "ns", "name": "data", "uid": "u2"}),
        );
        assert!(!volume_fits_claim(&pv(taken), &claim(base_claim())));
        let reserved = with(
            base_pv(),
            "claimRef",
            json!({"namespace": "ns", "name": "data"}),
        );
        assert!(volume_fits_claim(
            &pv(reserved.clone()),
            &claim(base_claim())
        ));
        assert!(reserved_for(&pv(reserved), &claim(base_claim())));
        let mut released = pv(base_pv());
        released.status.as_mut().expect("status").phase = Some("Released".into());
        assert!(!volume_fits_claim(&released, &claim(base_claim())));
        let elsewhere = with(base_claim(), "volumeName", json!("pv2"));
        assert!(!volume_fits_claim(&pv(base_pv()), &claim(elsewhere)));
    }

    #[test]
    fn the_smallest_fitting_volume_is_best() {
        let mut small = pv(with(base_pv(), "capacity", json!({"storage": "1Gi"})));
        small.metadata.name = Some("small".into());
        let big = pv(with(base_pv(), "capacity", json!({"storage": "10Gi"})));
        let too_small = pv(with(base_pv(), "capacity", json!({"storage": "1Mi"})));
        let volumes = [big.clone(), too_small, small];
        let best = best_volume(&claim(base_claim()), &volumes, |_| true);
        assert_eq!(best.map(|v| v.name_any()), Some("small".to_string()));
        let best = best_volume(&claim(base_claim()), &volumes, |v| v.name_any() != "small");
        assert_eq!(best.map(|v| v.name_any()), Some("pv1".to_string()));
    }
}

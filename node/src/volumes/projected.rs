//! `projected` volumes: the files of several ConfigMap, Secret and downwardAPI sources in one
//! directory, published together through the
//! [`AtomicWriter`](super::atomic_writer::AtomicWriter) (the kubelet's projected plugin). Two
//! sources writing one path is an error, as it is there.

use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource};

use super::atomic_writer::{AtomicWriter, Payload};
use super::{DEFAULT_MODE, SetUpError, config_map, downward_api, mode, secret};
use crate::objects::{ObjectSource, PodFacts};

pub(super) async fn set_up(
    dir: &Path,
    source: &ProjectedVolumeSource,
    pod: &Pod,
    namespace: &str,
    objects: &dyn ObjectSource,
    facts: &PodFacts,
) -> Result<(), SetUpError> {
    let default_mode = mode(source.default_mode, DEFAULT_MODE);
    let mut payload = Payload::new();
    for projection in source.sources.iter().flatten() {
        let part = if let Some(cm) = &projection.config_map {
            config_map::payload(
                &cm.name,
                cm.items.as_deref(),
                cm.optional == Some(true),
                default_mode,
                namespace,
                objects,
            )
            .await?
        } else if let Some(s) = &projection.secret {
            secret::payload(
                &s.name,
                s.items.as_deref(),
                s.optional == Some(true),
                default_mode,
                namespace,
                objects,
            )
            .await?
        } else if let Some(d) = &projection.downward_api {
            downward_api::payload(
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                pod,
                facts,
            )?
        } else if projection.service_account_token.is_some() {
            return Err(SetUpError::UnsupportedProjection("serviceAccountToken"));
        } else if projection.cluster_trust_bundle.is_some() {
            return Err(SetUpError::UnsupportedProjection("clusterTrustBundle"));
        } else {
            Payload::new()
        };
        for (path, file) in part {
            if payload.contains_key(&path) {
                return Err(SetUpError::ProjectionConflict(path));
            }
            payload.insert(path, file);
        }
    }
    AtomicWriter::new(dir).write(&payload)?;
    Ok(())
}

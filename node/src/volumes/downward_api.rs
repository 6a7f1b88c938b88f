//! `downwardAPI` volumes: pod metadata (`fieldRef`) and container resources
//! (`resourceFieldRef`) as files, published through the
//! [`AtomicWriter`](super::atomic_writer::AtomicWriter) so labels and annotations can be
//! refreshed in place (the kubelet's `downwardapi.CollectData`).

use std::path::Path;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, DownwardAPIVolumeSource, Pod};

use super::atomic_writer::{AtomicWriter, FileProjection, Payload};
use super::{DEFAULT_MODE, SetUpError, mode};
use crate::env::downward::{find_container, metadata_field, resource_value};
use crate::objects::PodFacts;

pub(super) fn set_up(
    dir: &Path,
    source: &DownwardAPIVolumeSource,
    pod: &Pod,
    facts: &PodFacts,
) -> Result<(), SetUpError> {
    let default_mode = mode(source.default_mode, DEFAULT_MODE);
    let payload = payload(
        source.items.as_deref().unwrap_or_default(),
        default_mode,
        pod,
        facts,
    )?;
    AtomicWriter::new(dir).write(&payload)?;
    Ok(())
}

/// The files of downward API `items` (also a projected volume's `downwardAPI` source).
pub(super) fn payload(
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    pod: &Pod,
    facts: &PodFacts,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    for item in items {
        let data = if let Some(field) = &item.field_ref {
            metadata_field(pod, &field.field_path)?
        } else if let Some(resource) = &item.resource_field_ref {
            let container = find_container(pod, resource.container_name.as_deref().unwrap_or(""))?;
            resource_value(resource, container, facts)?
        } else {
            String::new()
        };
        let file = FileProjection {
            data: data.into_bytes(),
            mode: mode(item.mode, default_mode),
        };
        payload.insert(item.path.clone(), file);
    }
    Ok(payload)
}

//! `configMap` volumes: the ConfigMap's `data` and `binaryData` (or its `items`) as files,
//! published through the [`AtomicWriter`](super::atomic_writer::AtomicWriter) so a refresh is
//! atomic. A missing ConfigMap marked `optional` gives an empty volume.

use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMapVolumeSource;

use k8s_openapi::api::core::v1::KeyToPath;

use super::atomic_writer::{AtomicWriter, Payload};
use super::{DEFAULT_MODE, SetUpError, bytes, key_payload, mode};
use crate::objects::ObjectSource;

pub(super) async fn set_up(
    dir: &Path,
    source: &ConfigMapVolumeSource,
    namespace: &str,
    objects: &dyn ObjectSource,
) -> Result<(), SetUpError> {
    let payload = payload(
        &source.name,
        source.items.as_deref(),
        source.optional == Some(true),
        mode(source.default_mode, DEFAULT_MODE),
        namespace,
        objects,
    )
    .await?;
    AtomicWriter::new(dir).write(&payload)?;
    Ok(())
}

/// The files of ConfigMap `name` (also a projected volume's `configMap` source).
pub(super) async fn payload(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default_mode: u32,
    namespace: &str,
    objects: &dyn ObjectSource,
) -> Result<Payload, SetUpError> {
    let entries = match objects.config_map(namespace, name).await? {
        Some(cm) => {
            let text = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
            text.chain(bytes(cm.binary_data.as_ref())).collect()
        }
        None if optional => Default::default(),
        None => return Err(SetUpError::ConfigMapNotFound(name.to_owned())),
    };
    key_payload(&entries, items, default_mode, optional, |key| {
        SetUpError::ConfigMapKeyNotFound(key.to_owned())
    })
}

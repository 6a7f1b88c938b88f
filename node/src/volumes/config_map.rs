//! `configMap` volumes: the ConfigMap's `data` and `binaryData` (or its `items`) as files,
//! published through the [`AtomicWriter`](super::atomic_writer::AtomicWriter) so a refresh is
//! atomic. A missing ConfigMap marked `optional` gives an empty volume.

use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMapVolumeSource;

use super::atomic_writer::AtomicWriter;
use super::{SetUpError, bytes, key_payload};
use crate::objects::ObjectSource;

pub(super) async fn set_up(
    dir: &Path,
    source: &ConfigMapVolumeSource,
    namespace: &str,
    objects: &dyn ObjectSource,
) -> Result<(), SetUpError> {
    let optional = source.optional == Some(true);
    let entries = match objects.config_map(namespace, &source.name).await? {
        Some(cm) => {
            let text = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
            text.chain(bytes(cm.binary_data.as_ref())).collect()
        }
        None if optional => Default::default(),
        None => return Err(SetUpError::ConfigMapNotFound(source.name.clone())),
    };
    let payload = key_payload(
        &entries,
        source.items.as_deref(),
        source.default_mode,
        optional,
        |key| SetUpError::ConfigMapKeyNotFound(key.to_owned()),
    )?;
    AtomicWriter::new(dir).write(&payload)?;
    Ok(())
}

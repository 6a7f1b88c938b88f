//! `secret` volumes: the Secret's `data` (or its `items`) as files, published through the
//! [`AtomicWriter`](super::atomic_writer::AtomicWriter). A missing Secret marked `optional`
//! gives an empty volume. Secret contents are never logged.

use std::path::Path;

use k8s_openapi::api::core::v1::SecretVolumeSource;

use super::atomic_writer::AtomicWriter;
use super::{SetUpError, bytes, key_payload};
use crate::objects::ObjectSource;

pub(super) async fn set_up(
    dir: &Path,
    source: &SecretVolumeSource,
    namespace: &str,
    objects: &dyn ObjectSource,
) -> Result<(), SetUpError> {
    let optional = source.optional == Some(true);
    let name = source.secret_name.as_deref().unwrap_or_default();
    let entries = match objects.secret(namespace, name).await? {
        Some(secret) => bytes(secret.data.as_ref()).collect(),
        None if optional => Default::default(),
        None => return Err(SetUpError::SecretNotFound(name.to_owned())),
    };
    let payload = key_payload(
        &entries,
        source.items.as_deref(),
        source.default_mode,
        optional,
        |key| SetUpError::SecretKeyNotFound(key.to_owned()),
    )?;
    AtomicWriter::new(dir).write(&payload)?;
    Ok(())
}

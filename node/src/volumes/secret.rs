//! `secret` volumes: the Secret's `data` (or its `items`) as files, published through the
//! [`AtomicWriter`](super::atomic_writer::AtomicWriter). A missing Secret marked `optional`
//! gives an empty volume. Secret contents are never logged.

use std::path::Path;

use k8s_openapi::api::core::v1::SecretVolumeSource;

use k8s_openapi::api::core::v1::KeyToPath;

use super::atomic_writer::{AtomicWriter, Payload};
use super::{DEFAULT_MODE, SetUpError, bytes, key_payload, mode};
use crate::objects::ObjectSource;

pub(super) async fn set_up(
    dir: &Path,
    source: &SecretVolumeSource,
    namespace: &str,
    objects: &dyn ObjectSource,
) -> Result<(), SetUpError> {
    let payload = payload(
        source.secret_name.as_deref().unwrap_or_default(),
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

/// The files of Secret `name` (also a projected volume's `secret` source).
pub(super) async fn payload(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
    default_mode: u32,
    namespace: &str,
    objects: &dyn ObjectSource,
) -> Result<Payload, SetUpError> {
    let entries = match objects.secret(namespace, name).await? {
        Some(secret) => bytes(secret.data.as_ref()).collect(),
        None if optional => Default::default(),
        None => return Err(SetUpError::SecretNotFound(name.to_owned())),
    };
    key_payload(&entries, items, default_mode, optional, |key| {
        SetUpError::SecretKeyNotFound(key.to_owned())
    })
}

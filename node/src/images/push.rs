//! `skiff push`: publishing a WebAssembly module or component as a Wasm OCI artifact (CNCF TAG
//! Runtime layout: config `application/vnd.wasm.config.v0+json`, one `application/wasm` layer);
//! [`push_image`] publishes any image built in memory (the benchmarks' busybox).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use oci_client::client::{Client, ClientConfig};
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Reference, RegistryOperation};

use super::error::{ImageError, PushError, RegistryError};
use super::reference::client_config;
use super::store::sha256_digest;

const WASM_MAGIC: &[u8] = b"\0asm";

/// Pushes the module at `file` to `reference` (anonymously) and returns the manifest digest
/// (`sha256:…`), which a pod may name as `REPO@DIGEST`.
pub async fn push_wasm(
    file: &Path,
    reference: &str,
    insecure_registries: &[String],
) -> Result<String, ImageError> {
    let fail = |cause: PushError| ImageError::Push {
        file: file.to_path_buf(),
        reference: reference.to_string(),
        cause: Arc::new(cause),
    };
    let image = Reference::from_str(reference).map_err(|e| fail(PushError::InvalidReference(e)))?;
    let module = tokio::fs::read(file)
        .await
        .map_err(|e| fail(PushError::Read(e)))?;
    if !module.starts_with(WASM_MAGIC) {
        return Err(fail(PushError::NotWasm));
    }
    let config = wasm_config(&module);
    push_image(
        &image,
        ("application/vnd.wasm.config.v0+json", &config),
        &[("application/wasm", &module)],
        insecure_registries,
    )
    .await
    .map_err(fail)
}

/// Pushes an image made of `config` and `layers` (media type, bytes) to `image` (anonymously)
/// and returns its manifest digest. Blobs the registry has are sent again: images here are small.
pub async fn push_image(
    image: &Reference,
    config: (&str, &[u8]),
    layers: &[(&str, &[u8])],
    insecure_registries: &[String],
) -> Result<String, PushError> {
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "config": descriptor(config.0, config.1),
        "layers": layers.iter().map(|(kind, bytes)| descriptor(kind, bytes)).collect::<Vec<_>>(),
    }))
    .expect("a JSON value always serialises");
    let client = Client::new(ClientConfig {
        // The registry answers each blob push with its own location; one request per blob.
        use_monolithic_push: true,
        ..client_config(image.resolve_registry(), insecure_registries)
    });
    let upload = async {
        client
            .auth(image, &OciAuth::Anonymous, RegistryOperation::Push)
            .await?;
        for blob in std::iter::once(config.1).chain(layers.iter().map(|(_, b)| *b)) {
            client
                .push_blob(image, blob.to_vec(), &sha256_digest(blob))
                .await?;
        }
        client
            .push_manifest_raw(
                image,
                manifest.clone(),
                OCI_IMAGE_MEDIA_TYPE
                    .parse()
                    .expect("a media type is a valid header value"),
            )
            .await
    };
    upload
        .await
        .map_err(|e| PushError::Registry(RegistryError::from(e)))?;
    Ok(sha256_digest(&manifest))
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": sha256_digest(bytes),
        "size": bytes.len(),
    })
}

/// The artifact's config: a component (binary version `0d 00 01 00`) targets `wasip2`, a core
/// module `wasip1`.
fn wasm_config(module: &[u8]) -> Vec<u8> {
    let os = if module.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00]) {
        "wasip2"
    } else {
        "wasip1"
    };
    serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": os,
        "layerDigests": [sha256_digest(module)],
    }))
    .expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_and_modules_name_their_wasi_version() {
        let module = b"\0asm\x01\0\0\0";
        let component = b"\0asm\x0d\0\x01\0";
        let os = |bytes: &[u8]| -> String {
            let v: serde_json::Value = serde_json::from_slice(&wasm_config(bytes)).expect("json");
            v["os"].as_str().expect("os").to_string()
        };
        assert_eq!(os(module), "wasip1");
        assert_eq!(os(component), "wasip2");
    }

    #[tokio::test]
    async fn files_that_are_not_wasm_are_refused_before_any_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("hello.txt");
        std::fs::write(&file, "hello").expect("write");
        // Port 9 (discard) would refuse a connection; the check must come first.
        let err = push_wasm(&file, "127.0.0.1:9/x:v1", &[])
            .await
            .expect_err("not wasm");
        assert!(
            err.to_string()
                .ends_with("not a WebAssembly module or component (no \\0asm header)"),
            "{err}"
        );
    }
}

//! Fetching an image from its registry into the content store: the manifest (an index is
//! resolved to one platform's manifest), the config and every layer not already kept. All
//! content is verified against its digest by the store before it is kept.
//!
//! The OCI runtime's unpacking starts from the layers this leaves in the store; it never needs
//! a second registry client.

use futures::StreamExt;
use oci_client::Client;
use oci_client::Reference;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest,
};
use oci_client::secrets::RegistryAuth as OciAuth;
use serde::Deserialize;

use super::auth::{RegistryAuth, matching};
use super::error::{PullError, RegistryError};
use super::reference::client_config;
use super::store::ContentStore;

const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// A finished pull: the platform manifest's digest and the bytes the image is made of.
pub(super) struct Fetched {
    pub(super) digest: String,
    pub(super) size_bytes: u64,
}

/// Pulls `image` with each credential that applies to it in turn (most specific first, as the
/// kubelet does), anonymously when none does; the first success wins, else the last failure.
pub(super) async fn pull(
    store: &ContentStore,
    image: &Reference,
    auths: &[RegistryAuth],
    insecure: &[String],
) -> Result<Fetched, PullError> {
    let candidates: Vec<OciAuth> = match matching(auths, image).as_slice() {
        [] => vec![OciAuth::Anonymous],
        found => found
            .iter()
            .map(|a| OciAuth::Basic(a.username.clone(), a.password.clone()))
            .collect(),
    };
    let mut last = None;
    for auth in candidates {
        // A client per attempt: oci-client keeps the first credential it saw per registry.
        let client = Client::new(client_config(image.resolve_registry(), insecure));
        match fetch(store, &client, image, &auth).await {
            Err(PullError::Registry(e)) if e.is_auth() => last = Some(PullError::Registry(e)),
            result => return result,
        }
    }
    Err(last
        .unwrap_or_else(|| PullError::Registry(RegistryError::Unauthorized { url: image.whole() })))
}

async fn fetch(
    store: &ContentStore,
    client: &Client,
    image: &Reference,
    auth: &OciAuth,
) -> Result<Fetched, PullError> {
    let (body, digest) = client
        .pull_manifest_raw(image, auth, MANIFEST_TYPES)
        .await
        .map_err(RegistryError::from)?;
    let (body, digest) = match platform_entry(&body, &digest)? {
        Some(entry) => client
            .pull_manifest_raw(&image.clone_with_digest(entry), auth, MANIFEST_TYPES)
            .await
            .map_err(RegistryError::from)?,
        None => (body, digest),
    };
    let manifest: OciImageManifest =
        serde_json::from_slice(&body).map_err(|source| PullError::Manifest {
            digest: digest.clone(),
            source,
        })?;
    let mut size_bytes = 0;
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if !store.has(&blob.digest) {
            fetch_blob(store, client, image, blob).await?;
        }
        size_bytes += u64::try_from(blob.size).unwrap_or_default();
    }
    // The manifest goes last: its presence says the whole image is here.
    store.put(&digest, &body)?;
    Ok(Fetched { digest, size_bytes })
}

async fn fetch_blob(
    store: &ContentStore,
    client: &Client,
    image: &Reference,
    blob: &OciDescriptor,
) -> Result<(), PullError> {
    tracing::debug!(digest = %blob.digest, size = blob.size, "fetching blob");
    let mut stream = client
        .pull_blob_stream(image, blob)
        .await
        .map_err(RegistryError::from)?;
    let mut writer = store.writer(&blob.digest).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| RegistryError::from(oci_client::errors::OciDistributionError::from(e)))?;
        writer.write(&chunk).await?;
    }
    writer.commit().await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaybeIndex {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

/// If `body` is an index, the digest of the manifest this node runs: a Wasm platform entry
/// (`wasm`/`wasip1`, `wasip2`, `wasi`) first, since it runs in-process, else the host's Linux
/// platform. `None` for a plain manifest.
fn platform_entry(body: &[u8], digest: &str) -> Result<Option<String>, PullError> {
    let parsed: MaybeIndex =
        serde_json::from_slice(body).map_err(|source| PullError::Manifest {
            digest: digest.to_string(),
            source,
        })?;
    let is_index = matches!(
        parsed.media_type.as_deref(),
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE)
    ) || (parsed.media_type.is_none() && parsed.manifests.is_some());
    if !is_index {
        return Ok(None);
    }
    let entries = parsed.manifests.unwrap_or_default();
    let host_arch = host_architecture();
    let wasm = entries
        .iter()
        .find(|e| matches!(platform_of(e), Some(("wasip1" | "wasip2" | "wasi", "wasm"))));
    let host = entries
        .iter()
        .find(|e| platform_of(e) == Some(("linux", host_arch)));
    wasm.or(host)
        .map(|e| Some(e.digest.clone()))
        .ok_or_else(|| PullError::NoPlatform {
            wanted: format!("linux/{host_arch} or wasip1/wasm"),
        })
}

fn platform_of(entry: &IndexEntry) -> Option<(&str, &str)> {
    entry
        .platform
        .as_ref()
        .map(|p| (p.os.as_str(), p.architecture.as_str()))
}

/// The host architecture as OCI platforms name it.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, &str)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(digest, os, arch)| {
                serde_json::json!({"mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": digest, "size": 1,
                    "platform": {"os": os, "architecture": arch}})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
            "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "manifests": manifests}))
        .expect("json")
    }

    #[test]
    fn indexes_resolve_to_wasm_then_the_host_platform() {
        let host = host_architecture();
        let both = index(&[
            ("sha256:arm", "linux", "s390x"),
            ("sha256:host", "linux", host),
            ("sha256:wasm", "wasip1", "wasm"),
        ]);
        assert_eq!(
            platform_entry(&both, "d").expect("index"),
            Some("sha256:wasm".into())
        );
        let linux = index(&[("sha256:host", "linux", host)]);
        assert_eq!(
            platform_entry(&linux, "d").expect("index"),
            Some("sha256:host".into())
        );
        let none = index(&[("sha256:win", "windows", host)]);
        let err = platform_entry(&none, "d").expect_err("no platform");
        assert_eq!(
            err.to_string(),
            format!(
                "no matching manifest for linux/{host} or wasip1/wasm in the manifest list entries"
            )
        );
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(platform_entry(manifest, "d").expect("manifest"), None);
    }
}

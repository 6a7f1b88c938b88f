//! Image pulls and `skiff push` against a real registry (Debian's `docker-registry`): pull
//! policies, the Wasm artifact layout and ordinary images with a `.wasm` entrypoint, indexes,
//! registry errors as the kubelet reports them, pull secrets, and refusing tampered content.

use std::path::{Path, PathBuf};

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex,
    OciImageManifest, OciManifest, Platform,
};
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference};
use sha2::Digest;
use skiff_node::images::{ImageService, PullPolicy, PulledImage, auths_from_secrets};
use skiff_sandbox::ArtifactKind;
use skiff_tests::{Cluster, LOCAL_NODE, Registry, eventually, samples_dir};

/// The smallest valid module, `(module)`.
const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";
/// `(module (memory 1))`: a different module, for a re-pushed tag.
const MEMORY_MODULE: &[u8] = b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01";

fn registry() -> Registry {
    Registry::start().unwrap_or_else(|e| panic!("{e:#}"))
}

fn module_file(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("module.wasm");
    std::fs::write(&path, bytes).expect("writing the module");
    path
}

fn images(dir: &Path) -> ImageService {
    ImageService::new(dir.join("images"), vec![]).expect("opening the image store")
}

fn module_of(pulled: &PulledImage) -> Vec<u8> {
    match &pulled.artifact.kind {
        ArtifactKind::Wasm { module } => std::fs::read(module).expect("reading the module"),
        other => panic!("expected a Wasm artifact, got {other:?}"),
    }
}

/// A blob as the node's content store keeps it.
fn stored_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let path = dir
        .join("images/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes an image with oci-client as another tool would; returns its manifest digest.
async fn push_image(
    reference: &str,
    auth: &OciAuth,
    config: Config,
    layers: Vec<ImageLayer>,
    manifest_type: &str,
) -> String {
    let image: Reference = reference.parse().expect("a valid reference");
    // Skiff's TLS uses ring; the test's own registry client needs the same process-wide choice.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(manifest_type.to_string());
    client
        .push(&image, &layers, config, auth, Some(manifest))
        .await
        .unwrap_or_else(|e| panic!("pushing {reference}: {e}"));
    client
        .fetch_manifest_digest(&image, auth)
        .await
        .expect("the pushed manifest's digest")
}

fn wasm_artifact(module: &[u8]) -> (Config, Vec<ImageLayer>) {
    let config = Config::new(
        br#"{"architecture":"wasm","os":"wasip1"}"#.to_vec(),
        "application/vnd.wasm.config.v0+json".to_string(),
        None,
    );
    (
        config,
        vec![ImageLayer::new(
            module.to_vec(),
            "application/wasm".to_string(),
            None,
        )],
    )
}

fn tar_layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder
            .append_data(&mut header, path, *data)
            .expect("appending to the tar");
    }
    builder.into_inner().expect("finishing the tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).expect("gzip");
    gz.finish().expect("gzip")
}

fn image_config(run: serde_json::Value, layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": run,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("json")
}

#[tokio::test]
async fn if_not_present_pulls_once_and_remembers_across_restarts() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = registry
        .push_wasm(&module_file(dir.path(), EMPTY_MODULE), "hello:v1")
        .unwrap_or_else(|e| panic!("{e:#}\n{}", registry.log()));
    let image = format!("{}/hello:v1", registry.addr());

    let service = images(dir.path());
    assert!(!service.is_present(&image));
    let first = service
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull");
    let report = first.pulled.expect("the first ensure pulls");
    let manifest: OciImageManifest =
        serde_json::from_slice(&stored_blob(dir.path(), &digest)).expect("the stored manifest");
    let listed: i64 = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<i64>();
    assert_eq!(report.size_bytes, listed as u64);
    assert_eq!(first.artifact.digest, digest);
    assert_eq!(first.artifact.reference, image);
    assert_eq!(module_of(&first), EMPTY_MODULE);
    assert!(service.is_present(&image));

    let second = service
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect("present");
    assert!(second.pulled.is_none(), "the second ensure must not pull");
    assert_eq!(second.artifact.digest, digest);

    drop(registry);
    let restarted = images(dir.path());
    for policy in [PullPolicy::IfNotPresent, PullPolicy::Never] {
        let again = restarted
            .ensure(&image, policy, &[])
            .await
            .expect("present after a restart");
        assert!(again.pulled.is_none());
        assert_eq!(
            (again.artifact.digest.as_str(), module_of(&again)),
            (digest.as_str(), EMPTY_MODULE.to_vec())
        );
    }
}

#[tokio::test]
async fn always_resolves_the_tag_again_and_never_does_not_pull() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = format!("{}/app:stable", registry.addr());
    let service = images(dir.path());

    registry
        .push_wasm(&module_file(dir.path(), EMPTY_MODULE), "app:stable")
        .expect("push");
    let never = service
        .ensure(&image, PullPolicy::Never, &[])
        .await
        .expect_err("not pulled yet");
    assert_eq!(never.reason(), "ErrImageNeverPull");
    assert_eq!(
        never.to_string(),
        format!("Container image {image:?} is not present with pull policy of Never")
    );

    let v1 = service
        .ensure(&image, PullPolicy::Always, &[])
        .await
        .expect("pull v1");
    let new_digest = registry
        .push_wasm(&module_file(dir.path(), MEMORY_MODULE), "app:stable")
        .expect("push");
    let stale = service
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect("present");
    assert_eq!(
        stale.artifact.digest, v1.artifact.digest,
        "IfNotPresent keeps what it has"
    );
    let v2 = service
        .ensure(&image, PullPolicy::Always, &[])
        .await
        .expect("pull v2");
    assert!(v2.pulled.is_some());
    assert_eq!(v2.artifact.digest, new_digest);
    assert_eq!(module_of(&v2), MEMORY_MODULE);
    let now = service
        .ensure(&image, PullPolicy::Never, &[])
        .await
        .expect("present");
    assert_eq!(now.artifact.digest, new_digest);
}

#[tokio::test]
async fn concurrent_ensures_share_one_pull() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = registry
        .push_wasm(&module_file(dir.path(), EMPTY_MODULE), "shared:v1")
        .expect("push");
    let image = format!("{}/shared:v1", registry.addr());
    let service = images(dir.path());
    let pulls = (0..8).map(|_| service.ensure(&image, PullPolicy::Always, &[]));
    let results = futures::future::join_all(pulls).await;
    let reports: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().expect("pull").pulled.expect("pulled"))
        .collect();
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|p| p.artifact.digest == digest))
    );
    assert!(
        reports.windows(2).all(|w| w[0] == w[1]),
        "every caller sees the one pull's report: {reports:?}"
    );
}

#[tokio::test]
async fn an_ordinary_image_with_a_wasm_entrypoint_runs_as_wasm() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = tar_layer(&[
        ("app/hello.wasm", b"\0asm\x01\0\0\0old"),
        ("etc/motd", b"hi"),
    ]);
    let top = tar_layer(&[("app/hello.wasm", EMPTY_MODULE)]);
    let run = serde_json::json!({"Entrypoint": ["./hello.wasm"], "Cmd": ["--greet"], "Env": ["GREETING=hi"], "WorkingDir": "/app", "User": "1000"});
    let config = Config::oci_v1(image_config(run, &[&base, &top]), None);
    let layers = vec![
        ImageLayer::oci_v1_gzip(gzip(&base), None),
        ImageLayer::oci_v1(top, None),
    ];
    let reference = format!("{}/wasm-in-image:v1", registry.addr());
    let digest = push_image(
        &reference,
        &OciAuth::Anonymous,
        config,
        layers,
        OCI_IMAGE_MEDIA_TYPE,
    )
    .await;

    let pulled = images(dir.path())
        .ensure(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull");
    assert_eq!(pulled.artifact.digest, digest);
    assert_eq!(
        module_of(&pulled),
        EMPTY_MODULE,
        "the top layer's file wins"
    );
    let config = &pulled.artifact.config;
    assert_eq!(config.entrypoint, ["./hello.wasm"]);
    assert_eq!(config.cmd, ["--greet"]);
    assert_eq!(config.env, ["GREETING=hi"]);
    assert_eq!(config.working_dir.as_deref(), Some("/app"));
    assert_eq!(config.user.as_deref(), Some("1000"));
}

#[tokio::test]
async fn other_images_keep_their_layers_for_the_oci_runtime() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = tar_layer(&[("bin/app", b"#!/bin/sh\necho hi\n")]);
    let run = serde_json::json!({"Entrypoint": ["/bin/app"]});
    let config = Config::new(
        image_config(run, &[&layer]),
        IMAGE_DOCKER_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layers = vec![ImageLayer::new(
        layer.clone(),
        IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE.to_string(),
        None,
    )];
    let reference = format!("{}/docker-image:v1", registry.addr());
    push_image(
        &reference,
        &OciAuth::Anonymous,
        config,
        layers,
        IMAGE_MANIFEST_MEDIA_TYPE,
    )
    .await;

    let pulled = images(dir.path())
        .ensure(&reference, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull");
    match &pulled.artifact.kind {
        ArtifactKind::Oci { layers } => {
            assert_eq!(layers.len(), 1);
            assert_eq!(std::fs::read(&layers[0]).expect("the stored layer"), layer);
        }
        other => panic!("expected an OCI image, got {other:?}"),
    }
    assert_eq!(pulled.artifact.config.entrypoint, ["/bin/app"]);
}

#[tokio::test]
async fn an_index_resolves_to_its_wasm_platform() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, layers) = wasm_artifact(EMPTY_MODULE);
    let wasm_ref = format!("{}/multi:wasm", registry.addr());
    let wasm_digest = push_image(
        &wasm_ref,
        &OciAuth::Anonymous,
        config,
        layers,
        OCI_IMAGE_MEDIA_TYPE,
    )
    .await;
    let layer = tar_layer(&[("bin/app", b"x")]);
    let config = Config::oci_v1(image_config(serde_json::json!({}), &[&layer]), None);
    let linux_ref = format!("{}/multi:linux", registry.addr());
    let linux_digest = push_image(
        &linux_ref,
        &OciAuth::Anonymous,
        config,
        vec![ImageLayer::oci_v1(layer, None)],
        OCI_IMAGE_MEDIA_TYPE,
    )
    .await;

    let entry = |digest: &str, platform: serde_json::Value| -> ImageIndexEntry {
        ImageIndexEntry {
            media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
            digest: digest.to_string(),
            size: 0,
            platform: Some(serde_json::from_value::<Platform>(platform).expect("platform")),
            annotations: None,
            artifact_type: None,
        }
    };
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests: vec![
            entry(
                &linux_digest,
                serde_json::json!({"os": "linux", "architecture": "amd64"}),
            ),
            entry(
                &wasm_digest,
                serde_json::json!({"os": "wasip1", "architecture": "wasm"}),
            ),
        ],
        artifact_type: None,
        annotations: None,
    };
    let index_ref = format!("{}/multi:v1", registry.addr());
    // Skiff's TLS uses ring; the test's own registry client needs the same process-wide choice.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    client
        .push_manifest(
            &index_ref.parse().expect("reference"),
            &OciManifest::ImageIndex(index),
        )
        .await
        .unwrap_or_else(|e| panic!("pushing the index: {e}\n{}", registry.log()));

    let pulled = images(dir.path())
        .ensure(&index_ref, PullPolicy::IfNotPresent, &[])
        .await
        .expect("pull");
    assert_eq!(pulled.artifact.digest, wasm_digest);
    assert_eq!(module_of(&pulled), EMPTY_MODULE);
}

#[tokio::test]
async fn a_missing_tag_is_err_image_pull_with_the_registrys_reason() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    registry
        .push_wasm(&module_file(dir.path(), EMPTY_MODULE), "x:v1")
        .expect("push");
    let service = images(dir.path());
    let image = format!("{}/x:v9", registry.addr());
    let err = service
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect_err("no such tag");
    assert_eq!(err.reason(), "ErrImagePull");
    assert_eq!(
        err.to_string(),
        format!("Failed to pull image {image:?}: manifest unknown")
    );

    let image = format!("{}/nobody:v1", registry.addr());
    let err = service
        .ensure(&image, PullPolicy::Always, &[])
        .await
        .expect_err("no such repository");
    // distribution answers MANIFEST_UNKNOWN for a repository it never saw, too.
    assert_eq!(
        err.to_string(),
        format!("Failed to pull image {image:?}: manifest unknown")
    );
}

#[tokio::test]
async fn private_registries_need_the_pods_pull_secret() {
    let registry =
        Registry::start_with_htpasswd("alice", "wonderland").unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = OciAuth::Basic("alice".into(), "wonderland".into());
    let (config, layers) = wasm_artifact(EMPTY_MODULE);
    let image = format!("{}/private:v1", registry.addr());
    let digest = push_image(&image, &alice, config, layers, OCI_IMAGE_MEDIA_TYPE).await;
    let service = images(dir.path());

    let err = service
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect_err("anonymous");
    assert_eq!(err.reason(), "ErrImagePull");
    assert_eq!(
        err.to_string(),
        format!("Failed to pull image {image:?}: unauthorized: authentication required")
    );

    let secret = |user: &str, password: &str| -> Secret {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let config = format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.addr()
        );
        Secret {
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some(
                [(
                    ".dockerconfigjson".to_string(),
                    ByteString(config.into_bytes()),
                )]
                .into(),
            ),
            ..Default::default()
        }
    };
    let wrong = auths_from_secrets(&[secret("alice", "queen")]);
    let err = service
        .ensure(&image, PullPolicy::IfNotPresent, &wrong)
        .await
        .expect_err("wrong password");
    assert_eq!(
        err.to_string(),
        format!("Failed to pull image {image:?}: unauthorized: authentication required")
    );

    let both = auths_from_secrets(&[secret("alice", "queen"), secret("alice", "wonderland")]);
    let pulled = service
        .ensure(&image, PullPolicy::IfNotPresent, &both)
        .await
        .expect("with the secret");
    assert_eq!(pulled.artifact.digest, digest);
    assert_eq!(module_of(&pulled), EMPTY_MODULE);
}

#[tokio::test]
async fn a_tampered_blob_is_refused_and_never_stored() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let module = b"\0asm\x01\0\0\0tampered-test-payload";
    registry
        .push_wasm(&module_file(dir.path(), module), "t:v1")
        .expect("push");
    let stored = registry.blob_data_path(&sha256(module));
    let mut bytes = std::fs::read(&stored).unwrap_or_else(|e| panic!("reading {stored:?}: {e}"));
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, bytes).expect("tampering");

    let image = format!("{}/t:v1", registry.addr());
    let err = images(dir.path())
        .ensure(&image, PullPolicy::IfNotPresent, &[])
        .await
        .expect_err("tampered");
    assert_eq!(err.reason(), "ErrImagePull");
    // The registry's own digest is the expected one; what it served hashes to another.
    assert!(
        err.to_string()
            .contains(&format!("Expected {}", sha256(module))),
        "{err}"
    );
    let kept = dir
        .path()
        .join("images/blobs/sha256")
        .join(sha256(module).trim_start_matches("sha256:"));
    assert!(!kept.exists(), "the tampered blob must not be kept");
    assert!(!images(dir.path()).is_present(&image));
}

#[test]
fn skiff_push_prints_the_digest() {
    let registry = registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = module_file(dir.path(), EMPTY_MODULE);
    let image = format!("{}/pushed:v1", registry.addr());
    let out = std::process::Command::new(skiff_tests::skiff_bin())
        .args(["push".as_ref(), file.as_os_str(), image.as_ref()])
        .output()
        .expect("running skiff push");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "skiff push failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = stdout.trim();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{stdout}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let pulled = runtime
        .block_on(images(dir.path()).ensure(
            &format!("{}/pushed@{digest}", registry.addr()),
            PullPolicy::IfNotPresent,
            &[],
        ))
        .expect("pull by digest");
    assert_eq!(pulled.artifact.digest, digest);
    assert_eq!(module_of(&pulled), EMPTY_MODULE);
}

/// The same through a pod, as a user does it: `kubectl create secret docker-registry`, then the
/// pod's `imagePullSecrets`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_pulls_a_private_image_with_its_pull_secret() {
    let registry =
        Registry::start_with_htpasswd("alice", "wonderland").unwrap_or_else(|e| panic!("{e:#}"));
    let hello = samples_dir().join("wasm/out/hello.wasm");
    let module = std::fs::read(&hello)
        .unwrap_or_else(|e| panic!("{}: {e}: run samples/wasm/build.sh", hello.display()));
    let (config, layers) = wasm_artifact(&module);
    let image = format!("{}/private/hello:v1", registry.addr());
    let alice = OciAuth::Basic("alice".into(), "wonderland".into());
    push_image(&image, &alice, config, layers, OCI_IMAGE_MEDIA_TYPE).await;

    let cluster = Cluster::start();
    cluster.wait_node_ready(LOCAL_NODE, || cluster.server_log());
    let pod = |name: &str, secrets: &str| {
        format!(
            "{{apiVersion: v1, kind: Pod, metadata: {{name: {name}}}, spec: {{restartPolicy: Never, \
             runtimeClassName: wasmtime, imagePullSecrets: [{secrets}], \
             containers: [{{name: app, image: \"{image}\"}}]}}}}"
        )
    };

    cluster.apply(&pod("anonymous", ""));
    let waiting = eventually("the pull refused", || {
        let status = cluster.get_json(&["pod", "anonymous"]);
        let waiting = &status["status"]["containerStatuses"][0]["state"]["waiting"];
        let reason = waiting["reason"].as_str().unwrap_or_default();
        if reason == "ErrImagePull" || reason == "ImagePullBackOff" {
            Ok(waiting.clone())
        } else {
            Err(status["status"].to_string())
        }
    });
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unauthorized: authentication required"),
        "{waiting}"
    );

    cluster.kubectl_ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "--docker-server",
        &registry.addr(),
        "--docker-username",
        "alice",
        "--docker-password",
        "wonderland",
    ]);
    cluster.apply(&pod("private", "{name: regcred}"));
    cluster.wait_pod_phase("private", "Succeeded");
    assert_eq!(
        cluster.kubectl_ok(&["logs", "private"]),
        "Hello from Skiff!\n"
    );
}

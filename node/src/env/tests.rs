use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use skiff_sandbox::ImageConfig;

use super::*;
use crate::objects::fake::FakeObjects;

fn facts() -> PodFacts {
    PodFacts {
        node_name: "node-a".into(),
        host_ip: "10.0.0.5".into(),
        pod_ip: "10.88.0.7".into(),
        node_allocatable_cpu_millis: 4000,
        node_allocatable_memory_bytes: 8 << 30,
        node_allocatable_ephemeral_storage_bytes: 100 << 30,
    }
}

fn pod(container: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "web", "namespace": "default", "uid": "1234-abcd",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": "say \"hi\"\n"},
        },
        "spec": {
            "nodeName": "node-a",
            "serviceAccountName": "builder",
            "containers": [container, {"name": "side", "resources": {"limits": {"memory": "64Mi"}}}],
        },
    }))
    .expect("pod fixture")
}

fn objects() -> FakeObjects {
    FakeObjects::default()
        .config_map(
            "default",
            "cfg",
            &[
                ("LOG_LEVEL", "debug"),
                ("1badkey", "x"),
                ("URL", "http://x"),
            ],
        )
        .secret(
            "default",
            "creds",
            &[("password", b"s3cret"), ("2alsobad", b"y")],
        )
}

async fn resolve(container: serde_json::Value) -> Result<ContainerEnv, EnvError> {
    resolve_with(container, &ImageConfig::default()).await
}

async fn resolve_with(
    container: serde_json::Value,
    image: &ImageConfig,
) -> Result<ContainerEnv, EnvError> {
    let pod = pod(container);
    let c = &pod.spec.as_ref().expect("spec").containers[0];
    container_env(&pod, c, image, &objects(), &facts()).await
}

fn vars(env: &ContainerEnv) -> Vec<(&str, &str)> {
    env.vars
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

async fn one(value_from: serde_json::Value) -> Result<String, EnvError> {
    let env =
        resolve(json!({"name": "app", "env": [{"name": "X", "valueFrom": value_from}]})).await?;
    Ok(env
        .vars
        .into_iter()
        .find(|(n, _)| n == "X")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "<unset>".into()))
}

#[tokio::test]
async fn image_env_then_env_from_then_env_later_wins() {
    let image = ImageConfig {
        env: vec![
            "PATH=/bin".into(),
            "LOG_LEVEL=info".into(),
            "MODE=image".into(),
        ],
        ..Default::default()
    };
    let env = resolve_with(
        json!({"name": "app",
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "env": [{"name": "MODE", "value": "pod"}, {"name": "EXTRA", "value": "1"}]}),
        &image,
    )
    .await
    .expect("env");
    assert_eq!(
        vars(&env),
        [
            ("PATH", "/bin"),
            ("LOG_LEVEL", "debug"),
            ("MODE", "pod"),
            ("URL", "http://x"),
            ("EXTRA", "1"),
        ]
    );
}

#[tokio::test]
async fn env_from_applies_prefix_and_reports_invalid_keys() {
    let env = resolve(json!({"name": "app", "envFrom": [
        {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
        {"configMapRef": {"name": "cfg"}},
        {"secretRef": {"name": "creds"}},
    ]}))
    .await
    .expect("env");
    assert_eq!(
        vars(&env),
        [
            ("CFG_1badkey", "x"),
            ("CFG_LOG_LEVEL", "debug"),
            ("CFG_URL", "http://x"),
            ("LOG_LEVEL", "debug"),
            ("URL", "http://x"),
            ("password", "s3cret"),
        ]
    );
    let messages: Vec<String> = env.skipped_keys.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "Keys [1badkey] from the EnvFrom configMap default/cfg were skipped since they are \
             considered invalid environment variable names.",
            "Keys [2alsobad] from the EnvFrom secret default/creds were skipped since they are \
             considered invalid environment variable names.",
        ]
    );
    assert_eq!(SkippedKeys::REASON, "InvalidEnvironmentVariableNames");
}

#[tokio::test]
async fn env_from_missing_source_fails_unless_optional() {
    let err = resolve(json!({"name": "app", "envFrom": [{"configMapRef": {"name": "nope"}}]}))
        .await
        .expect_err("missing configmap");
    assert_eq!(err.to_string(), "configmap \"nope\" not found");
    let err = resolve(json!({"name": "app", "envFrom": [{"secretRef": {"name": "nope"}}]}))
        .await
        .expect_err("missing secret");
    assert_eq!(err.to_string(), "secret \"nope\" not found");
    let env = resolve(json!({"name": "app", "envFrom": [
        {"configMapRef": {"name": "nope", "optional": true}},
        {"secretRef": {"name": "nope", "optional": true}},
    ]}))
    .await
    .expect("optional sources");
    assert!(env.vars.is_empty());
}

#[tokio::test]
async fn value_expands_earlier_vars_only() {
    let image = ImageConfig {
        env: vec!["IMG=from-image".into()],
        ..Default::default()
    };
    let env = resolve_with(
        json!({"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}}], "env": [
            {"name": "A", "value": "$(URL)/api?level=$(LOG_LEVEL)"},
            {"name": "B", "value": "$(C)-$(A)"},
            {"name": "C", "value": "c"},
            {"name": "D", "value": "$$(A) $(IMG)"},
        ]}),
        &image,
    )
    .await
    .expect("env");
    let get = |name: &str| {
        env.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("A"), Some("http://x/api?level=debug"));
    assert_eq!(
        get("B"),
        Some("$(C)-http://x/api?level=debug"),
        "C is defined later"
    );
    assert_eq!(
        get("D"),
        Some("$(A) $(IMG)"),
        "escaped, and image env is not visible"
    );
}

#[tokio::test]
async fn config_map_and_secret_key_refs() {
    assert_eq!(
        one(json!({"configMapKeyRef": {"name": "cfg", "key": "URL"}}))
            .await
            .expect("cm"),
        "http://x"
    );
    assert_eq!(
        one(json!({"secretKeyRef": {"name": "creds", "key": "password"}}))
            .await
            .expect("secret"),
        "s3cret"
    );

    let err = one(json!({"configMapKeyRef": {"name": "cfg", "key": "nokey"}}))
        .await
        .expect_err("key");
    assert_eq!(
        err.to_string(),
        "couldn't find key nokey in ConfigMap default/cfg"
    );
    let err = one(json!({"secretKeyRef": {"name": "creds", "key": "nokey"}}))
        .await
        .expect_err("key");
    assert_eq!(
        err.to_string(),
        "couldn't find key nokey in Secret default/creds"
    );
    let err = one(json!({"configMapKeyRef": {"name": "gone", "key": "k"}}))
        .await
        .expect_err("cm");
    assert_eq!(err.to_string(), "configmap \"gone\" not found");
    let err = one(json!({"secretKeyRef": {"name": "gone", "key": "k"}}))
        .await
        .expect_err("secret");
    assert_eq!(err.to_string(), "secret \"gone\" not found");

    for optional in [
        json!({"configMapKeyRef": {"name": "cfg", "key": "nokey", "optional": true}}),
        json!({"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}),
        json!({"secretKeyRef": {"name": "creds", "key": "nokey", "optional": true}}),
        json!({"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}),
    ] {
        assert_eq!(
            one(optional.clone()).await.expect("optional"),
            "<unset>",
            "{optional}"
        );
    }
}

#[tokio::test]
async fn each_object_is_read_once() {
    let pod = pod(json!({"name": "app",
    "envFrom": [{"configMapRef": {"name": "cfg"}}],
    "env": [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "URL"}}},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LOG_LEVEL"}}},
    ]}));
    let objects = objects();
    let c = &pod.spec.as_ref().expect("spec").containers[0];
    container_env(&pod, c, &ImageConfig::default(), &objects, &facts())
        .await
        .expect("env");
    assert_eq!(objects.reads.lock().expect("reads")["configmap/cfg"], 1);
}

#[tokio::test]
async fn field_refs() {
    let cases = [
        ("metadata.name", "web"),
        ("metadata.namespace", "default"),
        ("metadata.uid", "1234-abcd"),
        ("metadata.labels['app']", "web"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['note']", "say \"hi\"\n"),
        ("metadata.labels", "app=\"web\"\ntier=\"front\""),
        ("metadata.annotations", "note=\"say \\\"hi\\\"\\n\""),
        ("spec.nodeName", "node-a"),
        ("spec.serviceAccountName", "builder"),
        ("status.hostIP", "10.0.0.5"),
        ("status.hostIPs", "10.0.0.5"),
        ("status.podIP", "10.88.0.7"),
        ("status.podIPs", "10.88.0.7"),
    ];
    for (path, want) in cases {
        let got = one(json!({"fieldRef": {"fieldPath": path}}))
            .await
            .expect(path);
        assert_eq!(got, want, "{path}");
    }
    let err = one(json!({"fieldRef": {"fieldPath": "spec.hostname"}}))
        .await
        .expect_err("bad path");
    assert_eq!(err.to_string(), "unsupported fieldPath: spec.hostname");
    let err = one(json!({"fieldRef": {"fieldPath": "metadata.name['x']"}}))
        .await
        .expect_err("subscript");
    assert_eq!(
        err.to_string(),
        "fieldPath \"metadata.name['x']\" does not support subscript"
    );
}

#[tokio::test]
async fn resource_field_refs_round_up_and_default_to_allocatable() {
    let resources = json!({"limits": {"cpu": "250m", "memory": "100Mi"}, "requests": {"cpu": "1500m", "memory": "1G"}});
    let value = |resource: &str, divisor: Option<&str>, container_name: Option<&str>| {
        let mut sel = json!({"resource": resource});
        if let Some(d) = divisor {
            sel["divisor"] = json!(d);
        }
        if let Some(c) = container_name {
            sel["containerName"] = json!(c);
        }
        let c = json!({"name": "app", "resources": resources.clone(),
            "env": [{"name": "X", "valueFrom": {"resourceFieldRef": sel}}]});
        async move {
            let env = resolve(c).await?;
            Ok::<_, EnvError>(env.vars[0].1.clone())
        }
    };
    assert_eq!(
        value("limits.cpu", None, None).await.expect("cpu"),
        "1",
        "250m rounds up to 1 core"
    );
    assert_eq!(
        value("limits.cpu", Some("1m"), None).await.expect("cpu"),
        "250"
    );
    assert_eq!(value("requests.cpu", None, None).await.expect("cpu"), "2");
    assert_eq!(
        value("requests.cpu", Some("0"), None).await.expect("cpu"),
        "2",
        "zero divisor is 1"
    );
    assert_eq!(
        value("limits.memory", None, None).await.expect("mem"),
        "104857600"
    );
    assert_eq!(
        value("limits.memory", Some("1Mi"), None)
            .await
            .expect("mem"),
        "100"
    );
    assert_eq!(
        value("limits.memory", Some("1M"), None).await.expect("mem"),
        "105"
    );
    assert_eq!(
        value("requests.memory", Some("1Mi"), None)
            .await
            .expect("mem"),
        "954"
    );
    assert_eq!(
        value("limits.ephemeral-storage", Some("1Gi"), None)
            .await
            .expect("eph"),
        "100",
        "no limit: node allocatable"
    );
    assert_eq!(
        value("requests.ephemeral-storage", None, None)
            .await
            .expect("eph"),
        "0"
    );
    assert_eq!(
        value("limits.memory", Some("1Mi"), Some("side"))
            .await
            .expect("side"),
        "64"
    );
    assert_eq!(
        value("limits.cpu", Some("1m"), Some("side"))
            .await
            .expect("side"),
        "4000"
    );
    let err = value("limits.cpu", Some("-1"), None)
        .await
        .expect_err("negative divisor");
    assert_eq!(
        err.to_string(),
        "divisor -1 for resource limits.cpu must be positive"
    );
    let err = value("limits.hugepages-2Mi", None, None)
        .await
        .expect_err("hugepages");
    assert_eq!(
        err.to_string(),
        "unsupported container resource : limits.hugepages-2Mi"
    );
    let err = value("limits.cpu", None, Some("ghost"))
        .await
        .expect_err("container");
    assert_eq!(err.to_string(), "container ghost not found");
}

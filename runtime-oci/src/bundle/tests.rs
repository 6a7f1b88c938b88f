use std::path::PathBuf;

use skiff_sandbox::{
    ArtifactKind, ContainerSpec, ImageArtifact, ImageConfig, Mount, ResourceLimits, SandboxSpec,
    SeccompProfile, SecurityContext,
};

use super::*;

fn container(security: SecurityContext) -> ContainerSpec {
    ContainerSpec {
        name: "app".into(),
        image: ImageArtifact {
            reference: "127.0.0.1:5000/busybox:v1".into(),
            digest: "sha256:00".into(),
            kind: ArtifactKind::Oci { layers: Vec::new() },
            config: ImageConfig::default(),
        },
        argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
        env: vec![("GREETING".into(), "hi".into())],
        working_dir: Some("/work".into()),
        mounts: vec![Mount {
            host_path: PathBuf::from("/data/pods/u/volumes/cache"),
            container_path: "/cache".into(),
            read_only: true,
        }],
        resources: ResourceLimits {
            cpu_limit_millis: Some(500),
            memory_limit_bytes: Some(64 << 20),
            cpu_request_millis: 250,
        },
        log_path: PathBuf::from("/data/logs/app/0.log"),
        attempt: 0,
        security,
        stdin: false,
        stdin_once: false,
        tty: false,
    }
}

fn spec_json(security: SecurityContext) -> serde_json::Value {
    let pod = SandboxSpec {
        uid: "u".into(),
        namespace: "default".into(),
        name: "web".into(),
        network_namespace: Some("/data/network/netns/u".into()),
        hostname: "web".into(),
        ..SandboxSpec::default()
    };
    let container = container(security);
    let identity = Identity {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![50],
        home: "/home/app".into(),
    };
    let spec = runtime_spec(&Bundle {
        pod: &pod,
        container: &container,
        rootfs: Path::new("/data/oci/containers/x/rootfs"),
        cgroups_path: Some("/skiff/burstable/podu/x".into()),
        identity: &identity,
    })
    .expect("spec");
    serde_json::to_value(&spec).expect("json")
}

fn caps(json: &serde_json::Value, set: &str) -> Vec<String> {
    let mut caps: Vec<String> = json["process"]["capabilities"][set]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c.as_str().expect("cap").to_string())
                .collect()
        })
        .unwrap_or_default();
    caps.sort();
    caps
}

#[test]
fn an_ordinary_container_gets_kubernetes_defaults() {
    let json = spec_json(SecurityContext::default());
    assert_eq!(
        json["process"]["args"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(json["process"]["cwd"], "/work");
    assert_eq!(json["process"]["terminal"], false);
    assert_eq!(json["process"]["user"]["uid"], 1000);
    assert_eq!(
        json["process"]["user"]["additionalGids"],
        serde_json::json!([50])
    );
    let env: Vec<&str> = json["process"]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e.as_str().expect("str"))
        .collect();
    assert_eq!(
        env,
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=web",
            "HOME=/home/app",
            "GREETING=hi"
        ]
    );
    assert_eq!(caps(&json, "bounding").len(), 14);
    assert_eq!(
        caps(&json, "ambient"),
        Vec::<String>::new(),
        "none survive exec as non-root"
    );
    assert_eq!(caps(&json, "inheritable"), Vec::<String>::new());
    assert!(caps(&json, "effective").contains(&"CAP_NET_BIND_SERVICE".to_string()));
    assert!(!caps(&json, "bounding").contains(&"CAP_SYS_ADMIN".to_string()));
    assert_eq!(json["hostname"], "web");
    let namespaces = json["linux"]["namespaces"].as_array().expect("namespaces");
    let network = namespaces
        .iter()
        .find(|n| n["type"] == "network")
        .expect("network namespace");
    assert_eq!(network["path"], "/data/network/netns/u");
    assert_eq!(json["linux"]["cgroupsPath"], "/skiff/burstable/podu/x");
    let resources = &json["linux"]["resources"];
    assert_eq!(resources["memory"]["limit"], 64 << 20);
    assert_eq!(resources["cpu"]["quota"], 50_000);
    assert_eq!(resources["cpu"]["period"], 100_000);
    assert_eq!(resources["cpu"]["shares"], 256);
    assert!(
        json["linux"]["maskedPaths"]
            .as_array()
            .expect("masked")
            .contains(&serde_json::json!("/proc/kcore"))
    );
    assert!(
        json["linux"]["seccomp"].is_null(),
        "the kubelet's default is Unconfined"
    );
    let volume = json["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["destination"] == "/cache")
        .expect("volume mount");
    assert_eq!(
        volume["options"],
        serde_json::json!(["rbind", "rprivate", "ro"])
    );
    assert_eq!(json["root"]["readonly"], false);
}

#[test]
fn the_security_context_adjusts_the_spec() {
    let json = spec_json(SecurityContext {
        capabilities_drop: vec!["ALL".into()],
        capabilities_add: vec!["NET_ADMIN".into(), "CAP_CHOWN".into()],
        read_only_root_filesystem: true,
        no_new_privileges: true,
        seccomp: SeccompProfile::RuntimeDefault,
        ..SecurityContext::default()
    });
    assert_eq!(caps(&json, "bounding"), ["CAP_CHOWN", "CAP_NET_ADMIN"]);
    assert_eq!(json["root"]["readonly"], true);
    assert_eq!(json["process"]["noNewPrivileges"], true);
    assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");

    let privileged = spec_json(SecurityContext {
        privileged: true,
        no_new_privileges: true,
        seccomp: SeccompProfile::RuntimeDefault,
        ..SecurityContext::default()
    });
    assert!(caps(&privileged, "bounding").len() >= 40);
    assert_eq!(privileged["linux"]["maskedPaths"], serde_json::json!([]));
    assert_eq!(privileged["linux"]["readonlyPaths"], serde_json::json!([]));
    assert!(privileged["linux"]["seccomp"].is_null());
    assert_eq!(
        privileged["linux"]["resources"]["devices"][0]["allow"],
        true
    );
    assert_eq!(privileged["process"]["noNewPrivileges"], false);

    let unknown = capabilities(&container(SecurityContext {
        capabilities_add: vec!["FLY".into()],
        ..SecurityContext::default()
    }));
    assert_eq!(
        unknown.expect_err("unknown").to_string(),
        "unknown capability \"FLY\" in securityContext.capabilities"
    );
}

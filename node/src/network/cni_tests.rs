//! Tests of [`super`]: config building and result parsing, and the exec path against small
//! shell-script plugins (the real plugins are exercised in `network/tests.rs`).

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use serde_json::json;

use super::*;

/// The bridge ADD result recorded in research/issue5.md §1.
const BRIDGE_RESULT: &str = r#"{"cniVersion":"1.0.0",
 "interfaces":[{"name":"skiff0","mac":"a6:12:00:00:00:01"},{"name":"vethc985d58e","mac":"0a:7c:00:00:00:02"},
               {"name":"eth0","mac":"b6:28:00:00:00:03","sandbox":"/var/run/netns/skiffpod1"}],
 "ips":[{"interface":2,"address":"10.244.0.2/24","gateway":"10.244.0.1"}],
 "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;

fn list() -> NetworkConfigList {
    NetworkConfigList {
        cni_version: CNI_VERSION.into(),
        name: "testnet".into(),
        plugins: vec![
            json!({"type": "first", "capabilities": {"portMappings": false, "bandwidth": true}}),
            json!({"type": "second", "capabilities": {"portMappings": true}, "snat": true}),
        ],
    }
}

fn rt(dir: &Path) -> RuntimeConf {
    let mut caps = Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    RuntimeConf {
        container_id: "pod-uid-1".into(),
        netns: Some(dir.join("ns")),
        if_name: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        capability_args: caps,
    }
}

fn fake_plugin(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn plugin_config_injects_name_version_prev_result_and_declared_capabilities() {
    let list = list();
    let dir = tempfile::tempdir().unwrap();
    let rt = rt(dir.path());
    let first = plugin_config(&list, &list.plugins[0], &rt, None);
    assert_eq!(first["cniVersion"], "1.0.0");
    assert_eq!(first["name"], "testnet");
    assert!(first.get("prevResult").is_none());
    // portMappings is declared false, bandwidth has no value: no runtimeConfig at all.
    assert!(first.get("runtimeConfig").is_none(), "{first}");

    let prev = json!({"cniVersion": "1.0.0", "ips": []});
    let second = plugin_config(&list, &list.plugins[1], &rt, Some(&prev));
    assert_eq!(second["prevResult"], prev);
    assert_eq!(second["snat"], true);
    assert_eq!(
        second["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
}

#[test]
fn result_parsing_finds_the_pod_interface_ips() {
    let value: Value = serde_json::from_str(BRIDGE_RESULT).unwrap();
    let result = CniResult::parse(&value).unwrap();
    assert_eq!(result.interfaces.len(), 3);
    assert_eq!(
        result.interfaces[2].sandbox.as_deref(),
        Some("/var/run/netns/skiffpod1")
    );
    assert_eq!(
        result.ips_on("eth0"),
        vec!["10.244.0.2".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(result.ips[0].gateway, Some("10.244.0.1".parse().unwrap()));
    assert!(result.ips_on("lo").is_empty());

    // loopback's result (same research section): both addresses on interface 0, "lo".
    let lo = json!({"cniVersion":"1.0.0","interfaces":[{"name":"lo"}],
        "ips":[{"interface":0,"address":"127.0.0.1/8"},{"interface":0,"address":"::1/128"}]});
    let ips = CniResult::parse(&lo).unwrap().ips_on("lo");
    assert_eq!(
        ips,
        vec![
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
}

#[test]
fn error_output_is_parsed_with_plugin_code_msg_details() {
    let out = br#"{"code":1,"msg":"incompatible CNI versions","details":"config is \"1.1.0\", plugin supports [\"1.0.0\"]"}"#;
    let err = parse_error("bridge", CniCommand::Add, out).unwrap();
    match &err {
        NetworkError::Plugin {
            plugin,
            command,
            code,
            msg,
            details,
        } => {
            assert_eq!(plugin, "bridge");
            assert_eq!(*command, "ADD");
            assert_eq!(*code, 1);
            assert_eq!(msg, "incompatible CNI versions");
            assert!(details.contains("1.1.0"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        r#"CNI plugin "bridge" ADD failed (code 1): incompatible CNI versions: config is "1.1.0", plugin supports ["1.0.0"]"#
    );
    // No details: no trailing separator.
    let err = parse_error(
        "bridge",
        CniCommand::Del,
        br#"{"code":4,"msg":"required env variables [CNI_PATH] missing"}"#,
    )
    .unwrap();
    assert_eq!(
        err.to_string(),
        r#"CNI plugin "bridge" DEL failed (code 4): required env variables [CNI_PATH] missing"#
    );
    assert!(parse_error("bridge", CniCommand::Add, b"not json").is_none());
}

#[test]
fn missing_plugin_names_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let err = CniInvoker::new(dir.path())
        .plugin_path("bridge")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "CNI plugin \"bridge\" not found in {}: install the containernetworking-plugins package",
            dir.path().display()
        )
    );
}

#[test]
fn plugin_types_refuse_paths() {
    let mut list = list();
    list.plugins.push(json!({"type": "../bin/sh"}));
    let err = list.plugin_types().unwrap_err();
    assert!(
        matches!(err, NetworkError::PluginType { index: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn add_chains_prev_result_and_passes_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    fake_plugin(
        dir.path(),
        "first",
        r#"cat > /dev/null; printf '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"}]}'"#,
    );
    fake_plugin(
        dir.path(),
        "second",
        &format!(
            r#"cat > {d}/second.stdin; env | grep ^CNI_ | sort > {d}/second.env; printf '{{"cniVersion":"1.0.0","final":true}}'"#
        ),
    );
    let invoker = CniInvoker::new(dir.path());
    let rt = rt(dir.path());
    let result = invoker.add_list(&list(), &rt).await.unwrap();
    assert_eq!(result, json!({"cniVersion": "1.0.0", "final": true}));

    let stdin: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("second.stdin")).unwrap()).unwrap();
    assert_eq!(
        stdin["prevResult"],
        json!({"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24"}]})
    );
    assert_eq!(stdin["name"], "testnet");
    assert_eq!(stdin["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);

    let env = std::fs::read_to_string(dir.path().join("second.env")).unwrap();
    let expected = format!(
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web\nCNI_COMMAND=ADD\nCNI_CONTAINERID=pod-uid-1\n\
         CNI_IFNAME=eth0\nCNI_NETNS={d}/ns\nCNI_PATH={d}\n"
    );
    assert_eq!(env, expected);
}

#[tokio::test]
async fn del_runs_in_reverse_with_the_cached_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    for name in ["first", "second"] {
        fake_plugin(
            dir.path(),
            name,
            &format!(r#"echo "{name} $CNI_COMMAND $CNI_NETNS" >> {d}/log; cat > {d}/{name}.stdin"#),
        );
    }
    let invoker = CniInvoker::new(dir.path());
    let mut rt = rt(dir.path());
    rt.netns = None;
    let cached = json!({"cniVersion": "1.0.0", "ips": []});
    invoker.del_list(&list(), &rt, Some(&cached)).await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(log, "second DEL \nfirst DEL \n");
    for name in ["first", "second"] {
        let stdin: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("{name}.stdin"))).unwrap(),
        )
        .unwrap();
        assert_eq!(stdin["prevResult"], cached, "{name}");
    }

    // CHECK goes forward, also with the cached result.
    std::fs::remove_file(dir.path().join("log")).unwrap();
    invoker.check_list(&list(), &rt, &cached).await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(log, "first CHECK \nsecond CHECK \n");
    for name in ["first", "second"] {
        let stdin: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("{name}.stdin"))).unwrap(),
        )
        .unwrap();
        assert_eq!(stdin["prevResult"], cached, "{name}");
    }
}

#[tokio::test]
async fn failures_become_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    fake_plugin(
        dir.path(),
        "fails",
        r#"printf '{"code":7,"msg":"boom","details":"in the bridge"}'; exit 1"#,
    );
    fake_plugin(dir.path(), "crashes", "echo 'panic: oops' >&2; exit 3");
    fake_plugin(dir.path(), "garbage", "printf 'not json'");
    let invoker = CniInvoker::new(dir.path());
    let rt = rt(dir.path());
    let one = |t: &str| NetworkConfigList {
        cni_version: CNI_VERSION.into(),
        name: "n".into(),
        plugins: vec![json!({ "type": t })],
    };

    let err = invoker.add_list(&one("fails"), &rt).await.unwrap_err();
    assert!(
        matches!(&err, NetworkError::Plugin { plugin, code: 7, msg, details, .. }
            if plugin == "fails" && msg == "boom" && details == "in the bridge"),
        "{err:?}"
    );

    let err = invoker.add_list(&one("crashes"), &rt).await.unwrap_err();
    assert!(
        matches!(&err, NetworkError::PluginExit { plugin, output, .. }
            if plugin == "crashes" && output == "panic: oops"),
        "{err:?}"
    );
    assert!(err.to_string().contains("exit status: 3"), "{err}");

    let err = invoker.add_list(&one("garbage"), &rt).await.unwrap_err();
    assert!(matches!(err, NetworkError::PluginOutput { .. }), "{err:?}");

    let err = invoker.add_list(&one("absent"), &rt).await.unwrap_err();
    assert!(
        matches!(err, NetworkError::PluginNotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hung_plugin_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    fake_plugin(
        dir.path(),
        "hangs",
        &format!("echo $$ > {d}/pid; exec sleep 30"),
    );
    let invoker = CniInvoker::new(dir.path()).with_timeout(Duration::from_millis(500));
    let list = NetworkConfigList {
        cni_version: CNI_VERSION.into(),
        name: "n".into(),
        plugins: vec![json!({"type": "hangs"})],
    };
    let started = Instant::now();
    let err = invoker
        .del_list(&list, &rt(dir.path()), None)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(err, NetworkError::PluginTimeout { ref plugin, command: "DEL", .. } if plugin == "hangs"),
        "{err:?}"
    );
    // The plugin was killed, not left running.
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    let gone = (0..50).any(|_| {
        let dead = std::fs::read_to_string(proc_dir.join("stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        if !dead {
            std::thread::sleep(Duration::from_millis(100));
        }
        dead
    });
    assert!(gone, "plugin process {} still running", pid.trim());
}

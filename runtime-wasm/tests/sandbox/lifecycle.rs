//! Output, argv and env, exit codes, traps, stop, restart, remove and the compile cache.

use std::time::{Duration, Instant};

use skiff_runtime_wasm::WASMTIME_VERSION;
use skiff_sandbox::cri_log::Stream;
use skiff_sandbox::{ExitReason, PodSandbox, SandboxError};

use crate::common::{Pod, TIMEOUT, entries, lines, new_sandbox, sample};

fn is_container_id(id: &str) -> bool {
    id.strip_prefix("wasm://")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_prints_its_args_and_env_into_a_cri_log() {
    let pod = Pod::new().await;
    let mut spec = pod.spec("hello", &sample("hello"), &["from", "a pod"]);
    spec.env = vec![
        ("GREETING".into(), "first".into()),
        ("OTHER".into(), "not printed".into()),
        ("POD_NAME".into(), "hello".into()),
        ("GREETING".into(), "Hello, Kubernetes".into()),
    ];
    spec.resources.memory_limit_bytes = Some(16 << 20);
    let status = pod.run(&spec).await;
    assert_eq!((status.exit_code, status.reason), (0, ExitReason::Exited));
    assert_eq!(status.message, None);
    assert!(status.started_at <= status.finished_at);
    assert_eq!(
        lines(&spec, Stream::Stdout),
        [
            "Hello from Skiff!",
            "arg: from",
            "arg: a pod",
            "GREETING=Hello, Kubernetes",
            "POD_NAME=hello",
        ]
    );
    assert!(entries(&spec).iter().all(|e| e.full));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview2_command_component_runs() {
    let pod = Pod::new().await;
    let spec = pod.spec("hello-component", &sample("hello-component"), &["x"]);
    let status = pod.run(&spec).await;
    assert_eq!((status.exit_code, status.reason), (0, ExitReason::Exited));
    assert_eq!(
        lines(&spec, Stream::Stdout),
        ["Hello from a Skiff component!", "arg: x"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_exit_codes_are_the_exit_codes() {
    let pod = Pod::new().await;
    let spec = pod.spec("exit-code", &sample("exit-code"), &["42"]);
    let status = pod.run(&spec).await;
    assert_eq!((status.exit_code, status.reason), (42, ExitReason::Exited));
    assert_eq!(lines(&spec, Stream::Stderr), ["exiting with 42"]);

    let spec = pod.spec("default-code", &sample("exit-code"), &[]);
    assert_eq!(pod.run(&spec).await.exit_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_exits_134_with_the_trap_as_message_and_in_stderr() {
    let pod = Pod::new().await;
    let spec = pod.wat_spec(
        "trap",
        r#"(module
            (memory (export "memory") 1)
            (func (export "_start") unreachable))"#,
    );
    let status = pod.run(&spec).await;
    assert_eq!((status.exit_code, status.reason), (134, ExitReason::Exited));
    let message = status.message.expect("a trap message");
    assert!(message.contains("unreachable"), "{message}");
    let stderr = lines(&spec, Stream::Stderr).join("\n");
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_spinning_module_at_once() {
    let pod = Pod::new().await;
    let spec = pod.spec("cpu-spinner", &sample("cpu-spinner"), &[]);
    pod.sandbox.start_container(&pod.id, &spec).await.unwrap();
    pod.wait_for_log(&spec, "spinning").await;
    assert_eq!(pod.sandbox.running(), 1);

    let begin = Instant::now();
    pod.sandbox
        .stop_container(&pod.id, "cpu-spinner", Duration::from_secs(30))
        .await
        .unwrap();
    let took = begin.elapsed();
    assert!(took < Duration::from_millis(100), "stop took {took:?}");
    let status = pod.wait("cpu-spinner").await;
    assert_eq!(
        (status.exit_code, status.reason),
        (137, ExitReason::Stopped)
    );
    assert_eq!(pod.sandbox.running(), 0);
    // Stopping what has ended is not an error.
    pod.sandbox
        .stop_container(&pod.id, "cpu-spinner", Duration::ZERO)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_exited_container_again_is_a_restart_with_a_new_id() {
    let pod = Pod::new().await;
    let spec = pod.spec("exit-code", &sample("exit-code"), &["1"]);
    let first = pod.sandbox.start_container(&pod.id, &spec).await.unwrap();
    pod.wait("exit-code").await;
    let second = pod.sandbox.start_container(&pod.id, &spec).await.unwrap();
    assert!(is_container_id(&first.0), "{first}");
    assert!(is_container_id(&second.0), "{second}");
    assert_ne!(first, second);
    pod.wait("exit-code").await;
    // Both runs appended to the one log file the node chose.
    assert_eq!(
        lines(&spec, Stream::Stderr),
        ["exiting with 1", "exiting with 1"]
    );

    let sleeper = pod.spec("sleeper", &sample("sleeper"), &[]);
    pod.sandbox
        .start_container(&pod.id, &sleeper)
        .await
        .unwrap();
    let again = pod.sandbox.start_container(&pod.id, &sleeper).await;
    assert!(
        matches!(again, Err(SandboxError::AlreadyRunning { ref container }) if container == "sleeper"),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_all_see_the_end_and_remove_stops_everything() {
    let pod = Pod::new().await;
    let spec = pod.spec("sleeper", &sample("sleeper"), &[]);
    pod.sandbox.start_container(&pod.id, &spec).await.unwrap();
    pod.wait_for_log(&spec, "sleeping").await;
    let wait = || pod.sandbox.wait_container(&pod.id, "sleeper");
    let remove = async {
        // The waiters are waiting by now: they were polled first.
        tokio::task::yield_now().await;
        pod.sandbox.remove(&pod.id).await
    };
    let (a, b, removed) =
        tokio::time::timeout(TIMEOUT, async { tokio::join!(wait(), wait(), remove) })
            .await
            .expect("waiters were not woken");
    removed.unwrap();
    for status in [a, b] {
        assert_eq!(status.unwrap().reason, ExitReason::Stopped);
    }
    assert_eq!(pod.sandbox.running(), 0);
    assert!(matches!(
        pod.sandbox.wait_container(&pod.id, "sleeper").await,
        Err(SandboxError::UnknownSandbox(_))
    ));
    assert!(matches!(
        pod.sandbox.remove(&pod.id).await,
        Err(SandboxError::UnknownSandbox(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_does_not_compile_nor_does_a_restarted_agent() {
    let pod = Pod::new().await;
    let spec = pod.spec("hello", &sample("hello"), &[]);
    pod.run(&spec).await;
    assert_eq!(pod.sandbox.compile_count(), 1);
    pod.run(&spec).await;
    let component = pod.spec("hello-component", &sample("hello-component"), &[]);
    pod.run(&component).await;
    pod.run(&component).await;
    assert_eq!(pod.sandbox.compile_count(), 2);

    // A new engine on the same cache dir, as after an agent restart, loads the compiled code.
    let restarted = new_sandbox(&pod.dir.path().join("cache"));
    let id = restarted
        .create(&skiff_sandbox::SandboxSpec {
            uid: "restarted".into(),
            namespace: "default".into(),
            name: "again".into(),
            dir: pod.dir.path().join("again"),
            ..Default::default()
        })
        .await
        .unwrap();
    for spec in [&spec, &component] {
        restarted.start_container(&id, spec).await.unwrap();
        let status = tokio::time::timeout(TIMEOUT, restarted.wait_container(&id, &spec.name))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.exit_code, 0);
    }
    assert_eq!(restarted.compile_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_and_unknown_names_are_errors() {
    let pod = Pod::new().await;
    let not_wasm = pod.dir.path().join("not.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\necho hi\n").unwrap();
    let err = pod
        .sandbox
        .start_container(&pod.id, &pod.spec("script", &not_wasm, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::UnsupportedArtifact { reason, .. } if reason.contains("not a WebAssembly")),
        "{err}"
    );
    let reactor = pod.wat_spec("reactor", r#"(module (func (export "run")))"#);
    let err = pod
        .sandbox
        .start_container(&pod.id, &reactor)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::UnsupportedArtifact { reason, .. } if reason.contains("_start")),
        "{err}"
    );
    assert!(matches!(
        pod.sandbox.wait_container(&pod.id, "nope").await,
        Err(SandboxError::UnknownContainer { .. })
    ));
    assert_eq!(pod.sandbox.handler(), "wasmtime");
    assert_eq!(
        pod.sandbox.version(),
        format!("wasmtime://{WASMTIME_VERSION}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_containers_worth_of_pool_fits_a_component_or_a_module_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = skiff_runtime_wasm::WasmtimeSandbox::new(skiff_runtime_wasm::WasmtimeConfig {
        cache_dir: dir.path().join("cache"),
        max_instances: 1,
    })
    .unwrap();
    let pod = Pod {
        sandbox,
        id: skiff_sandbox::SandboxId("one".into()),
        dir,
    };
    pod.sandbox
        .create(&skiff_sandbox::SandboxSpec {
            uid: "one".into(),
            namespace: "default".into(),
            name: "one".into(),
            dir: pod.dir.path().to_path_buf(),
            ..Default::default()
        })
        .await
        .unwrap();
    let component = pod.spec("hello-component", &sample("hello-component"), &[]);
    assert_eq!(pod.run(&component).await.exit_code, 0);
    let sleeper = pod.spec("sleeper", &sample("sleeper"), &[]);
    pod.sandbox
        .start_container(&pod.id, &sleeper)
        .await
        .unwrap();
    let err = pod
        .sandbox
        .start_container(&pod.id, &pod.spec("hello", &sample("hello"), &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::Runtime {
                context: "instantiating",
                ..
            }
        ),
        "{err}"
    );
}

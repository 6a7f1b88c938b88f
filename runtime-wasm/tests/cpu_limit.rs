//! `limits.cpu: 100m` holds a busy-looping module to about a tenth of one core, measured with
//! the whole process's CPU time. A test binary of its own, so no other test's work is counted.

use std::path::Path;
use std::time::{Duration, Instant};

use skiff_runtime_wasm::{WasmtimeConfig, WasmtimeSandbox};
use skiff_sandbox::{
    ArtifactKind, ContainerSpec, ImageArtifact, ImageConfig, PodSandbox, ResourceLimits,
    SandboxSpec,
};

fn process_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinner_at_100m_uses_a_tenth_of_a_core() {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/wasm/out/cpu-spinner.wasm");
    assert!(
        module.exists(),
        "{} is missing: run samples/wasm/build.sh",
        module.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let sandbox = WasmtimeSandbox::new(WasmtimeConfig {
        cache_dir: dir.path().join("cache"),
        max_instances: 4,
    })
    .unwrap();
    let id = sandbox
        .create(&SandboxSpec {
            uid: "cpu".into(),
            namespace: "default".into(),
            name: "cpu-spinner".into(),
            dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .await
        .unwrap();
    let spec = ContainerSpec {
        name: "cpu-spinner".into(),
        image: ImageArtifact {
            reference: "127.0.0.1:5000/skiff-samples/cpu-spinner:v1".into(),
            digest: "sha256:cpu-spinner".into(),
            kind: ArtifactKind::Wasm { module },
            config: ImageConfig::default(),
        },
        argv: vec!["cpu-spinner".into()],
        env: Vec::new(),
        working_dir: None,
        mounts: Vec::new(),
        resources: ResourceLimits {
            cpu_limit_millis: Some(100),
            memory_limit_bytes: Some(16 << 20),
            cpu_request_millis: 100,
        },
        log_path: dir.path().join("cpu-spinner.log"),
        attempt: 0,
        security: Default::default(),
        stdin: false,
        stdin_once: false,
        tty: false,
    };
    sandbox.start_container(&id, &spec).await.unwrap();
    // Past compilation and start-up, measure a steady state.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu0, wall0) = (process_cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let share = (process_cpu_time() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64();
    sandbox.remove(&id).await.unwrap();
    println!("the spinner used {:.1}% of a core", share * 100.0);
    assert!(
        (0.05..=0.15).contains(&share),
        "the spinner used {:.1}% of a core",
        share * 100.0
    );
}

//! Density: starts N sleeping pods (`samples/wasm/out/sleeper.wasm`) on one `WasmtimeSandbox`
//! and reports the process's resident memory per pod, the figure `skiff bench wasm` targets
//! (≤ 256 KiB per pod at 10,000 pods).
//!
//! ```sh
//! samples/wasm/build.sh
//! cargo run -p skiff-runtime-wasm --example density -- 10000
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use skiff_runtime_wasm::{WasmtimeConfig, WasmtimeSandbox};
use skiff_sandbox::{
    ArtifactKind, ContainerSpec, ImageArtifact, ImageConfig, PodSandbox, ResourceLimits,
    SandboxSpec,
};

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmSize`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1000);
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/wasm/out/sleeper.wasm");
    if !module.exists() {
        return Err(format!("{} is missing: run samples/wasm/build.sh", module.display()).into());
    }
    let dir = tempfile::tempdir()?;
    let sandbox = WasmtimeSandbox::new(WasmtimeConfig {
        cache_dir: dir.path().join("cache"),
        max_instances: n,
    })?;
    let spec = |i: u32| ContainerSpec {
        name: "sleeper".into(),
        image: ImageArtifact {
            reference: "127.0.0.1:5000/skiff-samples/sleeper:v1".into(),
            digest: "sha256:sleeper".into(),
            kind: ArtifactKind::Wasm {
                module: module.clone(),
            },
            config: ImageConfig::default(),
        },
        argv: vec!["sleeper".into()],
        env: vec![("POD_NAME".into(), format!("sleeper-{i}"))],
        working_dir: None,
        mounts: Vec::new(),
        resources: ResourceLimits {
            memory_limit_bytes: Some(8 << 20),
            ..ResourceLimits::default()
        },
        log_path: dir.path().join(format!("sleeper-{i}.log")),
        attempt: 0,
        security: Default::default(),
        stdin: false,
        stdin_once: false,
        tty: false,
    };
    let start = |i: u32| {
        let sandbox = &sandbox;
        let spec = spec(i);
        let pod_dir = dir.path().to_path_buf();
        async move {
            let id = sandbox
                .create(&SandboxSpec {
                    uid: format!("pod-{i}"),
                    namespace: "default".into(),
                    name: format!("sleeper-{i}"),
                    dir: pod_dir,
                    ..Default::default()
                })
                .await?;
            sandbox.start_container(&id, &spec).await?;
            Ok::<_, Box<dyn std::error::Error>>(id)
        }
    };
    // One pod first, so the compile and the runtime's own start-up are not counted per pod.
    let mut ids = vec![start(0).await?];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (base_rss, base_maps) = (status_kib("VmRSS"), mappings());
    let begin = Instant::now();
    for i in 1..n {
        ids.push(start(i).await?);
    }
    let took = begin.elapsed();
    // Let every module reach its sleep.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods = u64::from(n.saturating_sub(1).max(1));
    let rss = status_kib("VmRSS");
    println!(
        "{n} sleeping pods ({} running): started {} in {took:.2?} ({:.0} µs each)",
        sandbox.running(),
        n - 1,
        took.as_micros() as f64 / pods as f64
    );
    println!(
        "VmRSS {base_rss} KiB -> {rss} KiB: {} KiB per pod; VmSize {} GiB; {} -> {} mappings",
        rss.saturating_sub(base_rss) / pods,
        status_kib("VmSize") >> 20,
        base_maps,
        mappings()
    );
    for id in &ids {
        sandbox.remove(id).await?;
    }
    Ok(())
}

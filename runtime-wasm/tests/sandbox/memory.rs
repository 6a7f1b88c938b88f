//! `limits.memory`: a module growing past it is OOMKilled.

use skiff_sandbox::ExitReason;
use skiff_sandbox::cri_log::Stream;

use crate::common::{Pod, lines, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_past_16mi_is_oom_killed() {
    let pod = Pod::new().await;
    let mut spec = pod.spec("memory-hog", &sample("memory-hog"), &[]);
    spec.resources.memory_limit_bytes = Some(16 << 20);
    let status = pod.run(&spec).await;
    assert_eq!(
        (status.exit_code, status.reason),
        (137, ExitReason::OomKilled)
    );
    let stdout = lines(&spec, Stream::Stdout);
    let last = stdout.last().expect("some allocations succeed first");
    let mib: u32 = last
        .strip_prefix("allocated ")
        .and_then(|l| l.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {last:?}"));
    assert!((8..16).contains(&mib), "got to {mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_below_the_initial_memory_kills_at_start() {
    let pod = Pod::new().await;
    let mut spec = pod.wat_spec(
        "big",
        r#"(module (memory (export "memory") 64) (func (export "_start")))"#,
    );
    spec.resources.memory_limit_bytes = Some(1 << 20);
    let status = pod.run(&spec).await;
    assert_eq!(status.reason, ExitReason::OomKilled);
    spec.resources.memory_limit_bytes = Some(8 << 20);
    assert_eq!(pod.run(&spec).await.reason, ExitReason::Exited);
}

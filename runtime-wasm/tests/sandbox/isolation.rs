//! Nothing of the host is reachable but the declared volumes: read-only mounts refuse writes,
//! `/etc/passwd` is not there, sockets are denied with a line in the log.

use skiff_runtime_wasm::NETWORK_DENIED;
use skiff_sandbox::ExitReason;
use skiff_sandbox::cri_log::Stream;

use crate::common::{Pod, lines, sample};

/// Opens (creating) `out.txt` for writing in the first preopened directory (fd 3) and exits
/// with the WASI errno of `path_open` (0 on success).
const CREATE_FILE: &str = r#"(module
    (import "wasi_snapshot_preview1" "path_open"
        (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "out.txt")
    (func (export "_start")
        ;; fd 3, no symlink follow, path "out.txt", O_CREAT, rights FD_WRITE, fd at 64
        (call $proc_exit
            (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 7)
                (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 64)))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_mount_refuses_writes_and_a_writable_one_takes_them() {
    let pod = Pod::new().await;
    let mut spec = pod.wat_spec("writer", CREATE_FILE);
    spec.mounts = vec![pod.mount("ro", "/data", true)];
    let status = pod.run(&spec).await;
    assert_ne!(
        status.exit_code, 0,
        "creating a file on a read-only mount succeeded"
    );
    assert!(!pod.dir.path().join("ro/out.txt").exists());

    spec.mounts = vec![pod.mount("rw", "/data", false)];
    assert_eq!(pod.run(&spec).await.exit_code, 0);
    assert!(pod.dir.path().join("rw/out.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_config_map_is_readable_at_its_mount_path() {
    let pod = Pod::new().await;
    let mut spec = pod.spec("config-reader", &sample("config-reader"), &["--once"]);
    let config = pod.mount("config", "/config", true);
    std::fs::write(config.host_path.join("greeting"), "hello\n").unwrap();
    std::fs::write(config.host_path.join("color"), "blue").unwrap();
    spec.mounts = vec![config];
    let status = pod.run(&spec).await;
    assert_eq!(status.exit_code, 0, "{:?}", lines(&spec, Stream::Stderr));
    assert_eq!(
        lines(&spec, Stream::Stdout),
        ["color=blue", "greeting=hello"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_etc_passwd_is_not_reachable() {
    let pod = Pod::new().await;
    let mut spec = pod.spec("passwd-reader", &sample("passwd-reader"), &[]);
    // Even with a volume mounted, only the volume is there.
    spec.mounts = vec![pod.mount("config", "/config", true)];
    let status = pod.run(&spec).await;
    assert_eq!((status.exit_code, status.reason), (1, ExitReason::Exited));
    let stderr = lines(&spec, Stream::Stderr);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("cannot read /etc/passwd: "),
        "{stderr:?}"
    );
    assert!(lines(&spec, Stream::Stdout).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_denied_with_a_clear_line_in_the_log() {
    let pod = Pod::new().await;
    let spec = pod.spec("net-probe", &sample("net-probe"), &[]);
    let status = pod.run(&spec).await;
    assert_eq!(status.exit_code, 1);
    let stderr = lines(&spec, Stream::Stderr);
    assert!(stderr.iter().any(|l| l == NETWORK_DENIED), "{stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("cannot connect to 127.0.0.1:80: ")),
        "{stderr:?}"
    );
}

//! A small harness: a `WasmtimeSandbox` on a temp dir with one pod, container specs for the
//! sample modules (`samples/wasm/out/*.wasm`) or inline WAT, and the CRI log read back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_runtime_wasm::{WasmtimeConfig, WasmtimeSandbox};
use skiff_sandbox::cri_log::{Entry, LogFile, Stream};
use skiff_sandbox::{
    ArtifactKind, ContainerSpec, ExitStatus, ImageArtifact, ImageConfig, Mount, PodSandbox,
    ResourceLimits, SandboxId, SandboxSpec,
};

/// How long any single wait in these tests may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn sample(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples/wasm/out")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run samples/wasm/build.sh (needs rustup with the wasm32-wasip1 and \
         wasm32-wasip2 targets)",
        path.display()
    );
    path
}

pub struct Pod {
    pub sandbox: WasmtimeSandbox,
    pub id: SandboxId,
    pub dir: tempfile::TempDir,
}

impl Pod {
    pub async fn new() -> Pod {
        Pod::create(None).await
    }

    /// A pod whose containers join the network namespace bound at `netns`.
    pub async fn in_network_namespace(netns: &Path) -> Pod {
        Pod::create(Some(netns.to_path_buf())).await
    }

    async fn create(network_namespace: Option<PathBuf>) -> Pod {
        let dir = tempfile::tempdir().expect("temp dir");
        let sandbox = new_sandbox(&dir.path().join("cache"));
        let id = sandbox
            .create(&SandboxSpec {
                uid: "0b5e7c9a-0000-4000-8000-000000000001".into(),
                namespace: "default".into(),
                name: "test".into(),
                dir: dir.path().join("pod"),
                network_namespace,
                ..Default::default()
            })
            .await
            .expect("create sandbox");
        Pod { sandbox, id, dir }
    }

    /// A container running `module` as `name`, with argv `[name, args…]`.
    pub fn spec(&self, name: &str, module: &Path, args: &[&str]) -> ContainerSpec {
        let mut argv = vec![name.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        ContainerSpec {
            name: name.into(),
            image: ImageArtifact {
                reference: format!("127.0.0.1:5000/skiff-samples/{name}:v1"),
                digest: format!("sha256:{}", digest_of(module)),
                kind: ArtifactKind::Wasm {
                    module: module.to_path_buf(),
                },
                config: ImageConfig::default(),
            },
            argv,
            env: Vec::new(),
            working_dir: None,
            mounts: Vec::new(),
            resources: ResourceLimits::default(),
            log_path: self.dir.path().join(format!("{name}.log")),
            attempt: 0,
            security: Default::default(),
            stdin: false,
            stdin_once: false,
            tty: false,
        }
    }

    /// A container running the WAT text `wat`.
    pub fn wat_spec(&self, name: &str, wat: &str) -> ContainerSpec {
        let path = self.dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, wat::parse_str(wat).expect("valid WAT")).expect("write module");
        self.spec(name, &path, &[])
    }

    pub fn mount(&self, host_dir: &str, container_path: &str, read_only: bool) -> Mount {
        let host_path = self.dir.path().join(host_dir);
        std::fs::create_dir_all(&host_path).expect("mount dir");
        Mount {
            host_path,
            container_path: container_path.into(),
            read_only,
        }
    }

    pub async fn run(&self, spec: &ContainerSpec) -> ExitStatus {
        self.sandbox
            .start_container(&self.id, spec)
            .await
            .expect("start container");
        self.wait(&spec.name).await
    }

    pub async fn wait(&self, name: &str) -> ExitStatus {
        tokio::time::timeout(TIMEOUT, self.sandbox.wait_container(&self.id, name))
            .await
            .expect("container did not exit in time")
            .expect("wait container")
    }

    /// Polls the log of `spec` until a line contains `needle`.
    pub async fn wait_for_log(&self, spec: &ContainerSpec, needle: &str) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !lines(spec, Stream::Stdout)
            .iter()
            .chain(&lines(spec, Stream::Stderr))
            .any(|l| l.contains(needle))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub fn new_sandbox(cache_dir: &Path) -> WasmtimeSandbox {
    WasmtimeSandbox::new(WasmtimeConfig {
        cache_dir: cache_dir.to_path_buf(),
        max_instances: 16,
    })
    .expect("wasmtime sandbox")
}

/// Not a real image digest: a stand-in unique to the module's contents.
fn digest_of(module: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(module).expect("read module");
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:064x}", h.finish())
}

/// Every entry of the container's CRI log, each line checked to be well-formed.
pub fn entries(spec: &ContainerSpec) -> Vec<Entry> {
    LogFile::generations(&spec.log_path)
        .iter()
        .flat_map(|p| {
            std::fs::read(p)
                .expect("read log")
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    Entry::parse(l).unwrap_or_else(|| {
                        panic!("not a CRI log line: {:?}", String::from_utf8_lossy(l))
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn lines(spec: &ContainerSpec, stream: Stream) -> Vec<String> {
    if !spec.log_path.exists() {
        return Vec::new();
    }
    entries(spec)
        .into_iter()
        .filter(|e| e.stream == stream)
        .map(|e| String::from_utf8_lossy(&e.content).into_owned())
        .collect()
}

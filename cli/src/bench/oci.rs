//! `skiff bench oci`: container pod start latency. A busybox image (built here from the host's
//! busybox-static, pushed to a local registry and pulled once by a warm-up pod), then pods
//! created one after another, each timed from the create request to `Running` seen on a watch:
//! network namespace and CNI, overlay rootfs, runtime spec, shim and runc included. The floor,
//! measured in the same run: plain `runc run --detach` of the same root filesystem.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use skiff_sandbox::cgroups::{Cgroup, Hierarchy};

use super::api::{client_for, wait_ready};
use super::percentile_ms;
use super::process::{join_node, start_registry, start_skiff_as};
use super::wasm::{StartWatch, namespace, wait_node_ready};

/// The node's bridge and cgroup root, apart from any `skiff up` on the same host.
const BRIDGE: &str = "skbench0";
const CGROUP_ROOT: &str = "skiff-bench";
const CLUSTER_CIDR: &str = "10.41.0.0/16";

#[derive(Debug, Serialize)]
pub struct OciReport {
    pub pods: usize,
    pub oci_start_p50_ms: f64,
    pub oci_start_p99_ms: f64,
    pub runc_run_p50_ms: f64,
    pub runc_run_p99_ms: f64,
    /// Skiff's p50 over plain runc's (target ≤ 2).
    pub ratio_p50: f64,
}

impl OciReport {
    pub fn print(&self) {
        println!(
            "Container pod start, {} busybox pods one after another (create → Running on a watch):",
            self.pods
        );
        println!(
            "  p50 {:.1} ms   p99 {:.1} ms",
            self.oci_start_p50_ms, self.oci_start_p99_ms
        );
        println!(
            "  plain `runc run --detach`, same rootfs: p50 {:.1} ms   p99 {:.1} ms (the floor)",
            self.runc_run_p50_ms, self.runc_run_p99_ms
        );
        println!(
            "  Skiff p50 / runc p50 = {:.2} (target ≤ 2)",
            self.ratio_p50
        );
    }
}

/// The busybox root filesystem as a gzip layer, and its uncompressed digest (the diff ID).
fn busybox_layer() -> anyhow::Result<(Vec<u8>, String)> {
    let busybox = std::fs::read("/bin/busybox")
        .context("/bin/busybox is missing: apt-get install busybox-static")?;
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: usize| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header
    };
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, d, std::io::empty())?;
    }
    let files: [(&str, u32, &[u8]); 3] = [
        ("bin/busybox", 0o755, &busybox),
        ("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", 0o644, b"root:x:0:\n"),
    ];
    for (path, mode, bytes) in files {
        let mut h = header(tar::EntryType::Regular, mode, bytes.len());
        tar.append_data(&mut h, path, bytes)?;
    }
    for applet in ["sh", "sleep", "true", "echo"] {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    let raw = tar.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw)?;
    Ok((gz.finish()?, diff_id))
}

async fn push_busybox(reference: &str) -> anyhow::Result<Vec<u8>> {
    let (layer, diff_id) = busybox_layer()?;
    let config = serde_json::to_vec(&json!({
        "architecture": match std::env::consts::ARCH { "aarch64" => "arm64", _ => "amd64" },
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))?;
    let image = oci_client::Reference::from_str(reference)?;
    skiff_node::images::push_image(
        &image,
        ("application/vnd.oci.image.config.v1+json", &config),
        &[("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
        &[],
    )
    .await?;
    Ok(layer)
}

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            // `sleep` as PID 1 ignores SIGTERM: one second, then SIGKILL.
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": image, "command": ["sleep", "3600"]}],
        }
    }))
    .expect("a well-formed pod")
}

/// A runc bundle of the same root filesystem, from runc's own default spec.
fn runc_bundle(dir: &Path, layer: &[u8]) -> anyhow::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    tar::Archive::new(flate2::read::GzDecoder::new(layer)).unpack(&rootfs)?;
    let status = Command::new("runc")
        .arg("spec")
        .current_dir(dir)
        .status()
        .context("runc is missing: apt-get install runc")?;
    anyhow::ensure!(status.success(), "runc spec failed");
    let path = dir.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["sleep", "3600"]);
    spec["root"]["readonly"] = json!(false);
    std::fs::write(&path, serde_json::to_vec(&spec)?)?;
    Ok(dir.to_path_buf())
}

/// Times `runc run --detach` of the bundle `runs` times (each container removed untimed after).
fn runc_runs(bundle: &Path, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let root = bundle.join("state");
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let id = format!("skiff-bench-{}-{i}", std::process::id());
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
        // An absolute path: this process may sit in a cgroup of its own.
        spec["linux"]["cgroupsPath"] = json!(format!("/{CGROUP_ROOT}-runc/{id}"));
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec)?)?;
        let t = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .status()?;
        times.push(t.elapsed());
        anyhow::ensure!(status.success(), "runc run failed");
        let delete = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &id])
            .status()?;
        anyhow::ensure!(delete.success(), "runc delete failed");
    }
    remove_cgroups(&format!("{CGROUP_ROOT}-runc"));
    Ok(times)
}

/// Removes the node's masquerade rule for the bench's pods, with its bridge gone.
fn remove_masquerade_rules() {
    let Ok(out) = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
        .output()
    else {
        return;
    };
    let marker = format!("pods on {BRIDGE} ");
    for rule in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(spec) = rule.strip_prefix("-A ").filter(|r| r.contains(&marker)) else {
            continue;
        };
        // The comment is quoted in -S output; split it back into one argument.
        let mut args: Vec<String> = Vec::new();
        let mut quoted: Option<String> = None;
        for word in spec.split(' ') {
            match quoted.as_mut() {
                Some(q) => {
                    q.push(' ');
                    q.push_str(word.trim_end_matches('"'));
                    if word.ends_with('"') {
                        args.extend(quoted.take());
                    }
                }
                None if word.starts_with('"') && !word[1..].ends_with('"') => {
                    quoted = Some(word.trim_start_matches('"').to_string());
                }
                None => args.push(word.trim_matches('"').to_string()),
            }
        }
        let _ = Command::new("iptables")
            .args(["-w", "-t", "nat", "-D"])
            .args(&args)
            .status();
    }
}

/// Removes the cgroup `name` with everything below it from every hierarchy (runc leaves
/// parents behind).
fn remove_cgroups(name: &str) {
    let removed = Hierarchy::detect().and_then(|h| Cgroup::new(h, name).remove());
    if let Err(e) = removed {
        eprintln!("removing the bench's cgroups {name}: {e}");
    }
}

/// Starts from the same kernel state each run: cgroup v1 keeps removed memory cgroups alive
/// until their page cache is reclaimed, and hundreds of them (any earlier run leaves one per
/// container) slow every later container start, Skiff's and plain runc's alike.
fn drop_page_cache() -> anyhow::Result<()> {
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .context("dropping the page cache (the benchmark runs as root)")
}

pub async fn run(pods: usize) -> anyhow::Result<OciReport> {
    if !Path::new("/usr/lib/cni/bridge").exists() {
        bail!("the CNI plugins are missing: apt-get install containernetworking-plugins");
    }
    drop_page_cache()?;
    let registry = start_registry()?;
    let image = format!("127.0.0.1:{}/bench/busybox:v1", registry.port);
    let layer = push_busybox(&image).await?;

    let control = start_skiff_as("control", &["--cluster-cidr", CLUSTER_CIDR])?;
    let client = client_for(&control).await?;
    wait_ready(&client).await?;
    let node = join_node(
        &control,
        "bench-oci",
        (pods + 10) as u32,
        &["--bridge", BRIDGE, "--cgroup-root", CGROUP_ROOT],
    )?;
    wait_node_ready(&client, "bench-oci").await?;

    let api = namespace(&client, "bench-oci").await?;
    let watch = StartWatch::spawn(api.clone());
    // The warm-up pod pulls and unpacks the image, which no start afterwards repeats.
    let warm = watch.wait("warm-up").await;
    api.create(&PostParams::default(), &pod("warm-up", &image))
        .await?;
    tokio::time::timeout(Duration::from_secs(120), warm)
        .await
        .context("the warm-up pod did not start within 120 s")??;
    let mut latencies = Vec::with_capacity(pods);
    for i in 0..pods {
        let name = format!("busybox-{i:04}");
        let started = watch.wait(&name).await;
        let t = Instant::now();
        api.create(&PostParams::default(), &pod(&name, &image))
            .await?;
        let at = tokio::time::timeout(Duration::from_secs(60), started)
            .await
            .with_context(|| format!("pod {name} did not start within 60 s"))??;
        latencies.push(at.saturating_duration_since(t));
    }
    latencies.sort();

    // Removing the pods through the node leaves the host as it was.
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let t = Instant::now();
    while !api.list(&ListParams::default()).await?.items.is_empty() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "pods were not removed within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The node deletes each pod only after tearing it down; wait for the last namespaces too.
    let netns = node.dir.join("network/netns");
    while std::fs::read_dir(&netns).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "pod networks were not torn down within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(node);
    drop(control);
    drop(registry);
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    remove_masquerade_rules();
    remove_cgroups(CGROUP_ROOT);

    let scratch = std::env::temp_dir().join(format!("skiff-bench-runc-{}", std::process::id()));
    let bundle = runc_bundle(&scratch, &layer)?;
    let runs = pods.max(20);
    let floor = tokio::task::spawn_blocking(move || runc_runs(&bundle, runs)).await?;
    let _ = std::fs::remove_dir_all(&scratch);
    let mut floor = floor?;
    floor.sort();

    let p50 = percentile_ms(&latencies, 50.0);
    let runc_p50 = percentile_ms(&floor, 50.0);
    Ok(OciReport {
        pods,
        oci_start_p50_ms: p50,
        oci_start_p99_ms: percentile_ms(&latencies, 99.0),
        runc_run_p50_ms: runc_p50,
        runc_run_p99_ms: percentile_ms(&floor, 99.0),
        ratio_p50: p50 / runc_p50,
    })
}

//! Child processes the benchmarks start and measure: a fresh `skiff up` and a peer etcd.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process killed (and its data directory removed) on drop.
pub struct Server {
    pub child: Child,
    pub dir: PathBuf,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// Resident memory in MiB, from /proc.
    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc status")?;
        Ok(kib / 1024.0)
    }
}

/// The log filter of the processes a benchmark starts: warnings, unless `SKIFF_BENCH_LOG` says
/// otherwise (to see why a run went wrong).
fn child_log_filter() -> String {
    std::env::var("SKIFF_BENCH_LOG")
        .unwrap_or_else(|_| "warn,kube_client::client::tls=error".to_string())
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn temp_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), free_port()?));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Starts this binary as `skiff up` (control plane and a local node, its server on a free port)
/// or `skiff control` (control plane alone) on a fresh data dir; waits for its kubeconfig.
pub fn start_skiff_as(command: &str, extra: &[&str]) -> anyhow::Result<Server> {
    let dir = temp_dir("skiff-bench")?;
    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args([command, "--data-dir"])
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra);
    if command == "up" {
        cmd.args(["--kubelet-port", &free_port()?.to_string()]);
    }
    let child = cmd
        .env("SKIFF_LOG", child_log_filter())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting skiff {command}"))?;
    let server = Server { child, dir, port };
    wait_for(&server.dir.join("kubeconfig"))?;
    wait_for(&server.dir.join("token"))?;
    Ok(server)
}

/// Starts `skiff node` joined to `control` as `name` (its own process, so its memory is its own),
/// with `extra` flags.
pub fn join_node(
    control: &Server,
    name: &str,
    max_pods: u32,
    extra: &[&str],
) -> anyhow::Result<Server> {
    let dir = temp_dir("skiff-bench-node")?;
    let port = free_port()?;
    let token = std::fs::read_to_string(control.dir.join("token"))?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "node",
            "--server",
            &format!("https://127.0.0.1:{}", control.port),
        ])
        .args(["--token", token.trim(), "--data-dir"])
        .arg(&dir)
        .args(["--node-name", name, "--node-ip", "127.0.0.1"])
        .args(["--kubelet-port", &port.to_string()])
        .args(["--max-pods", &max_pods.to_string()])
        .args(extra)
        .env("SKIFF_LOG", child_log_filter())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting skiff node")?;
    Ok(Server { child, dir, port })
}

/// Starts Debian's `docker-registry` on loopback, storing in a fresh directory.
pub fn start_registry() -> anyhow::Result<Server> {
    let bin = Path::new("/usr/bin/docker-registry");
    if !bin.exists() {
        bail!("docker-registry is not installed: apt-get install docker-registry");
    }
    let dir = temp_dir("skiff-bench-registry")?;
    let port = free_port()?;
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting docker-registry")?;
    let server = Server { child, dir, port };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("docker-registry did not listen on port {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

fn wait_for(path: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("{} did not appear within 60 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts Debian's etcd on loopback (the peer store).
pub fn start_etcd() -> anyhow::Result<Server> {
    let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("etcd is not installed: apt-get install etcd-server")?;
    let dir = temp_dir("skiff-bench-etcd")?;
    let port = free_port()?;
    let peer = free_port()?;
    let child = Command::new(etcd)
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("bench=http://127.0.0.1:{peer}"),
        ])
        .args(["--log-level", "error"])
        .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd")?;
    Ok(Server { child, dir, port })
}

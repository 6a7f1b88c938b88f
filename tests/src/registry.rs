//! A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution) serving plain
//! HTTP on `127.0.0.1:<free port>` with its storage in a temporary directory, optionally behind
//! htpasswd basic auth. Killed and removed when the [`Registry`] is dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Where Debian's `docker-registry` package installs the registry.
const REGISTRY_BIN: &str = "docker-registry";
const READY_BOUND: Duration = Duration::from_secs(30);

pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> anyhow::Result<Registry> {
        Registry::spawn(None)
    }

    /// A registry that answers only requests carrying `user`/`password` (HTTP basic auth).
    pub fn start_with_htpasswd(user: &str, password: &str) -> anyhow::Result<Registry> {
        Registry::spawn(Some((user, password)))
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file the registry serves blob `digest` (`sha256:…`) from: tests tamper with it.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or(hex))
            .join(hex)
            .join("data")
    }

    /// Pushes the built sample module `name` ([`crate::sample_module`]) as `samples/NAME:v1`
    /// and returns its reference.
    pub fn push_sample(&self, name: &str) -> anyhow::Result<String> {
        self.push_sample_tagged(name, "v1")
    }

    /// [`Registry::push_sample`] as `samples/NAME:TAG`: each tag is a different image to roll
    /// out, of the same module.
    pub fn push_sample_tagged(&self, name: &str, tag: &str) -> anyhow::Result<String> {
        let repo_tag = format!("samples/{name}:{tag}");
        self.push_wasm(&crate::sample_module(name), &repo_tag)?;
        Ok(format!("{}/{repo_tag}", self.addr()))
    }

    /// `skiff push FILE ADDR/REPO_TAG` through the library call it makes; returns the digest.
    pub fn push_wasm(&self, file: &Path, repo_tag: &str) -> anyhow::Result<String> {
        let reference = format!("{}/{repo_tag}", self.addr());
        // A runtime of its own on a thread of its own: callable from sync and async tests alike.
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("starting a runtime for the push")?;
                    runtime
                        .block_on(skiff_node::images::push_wasm(file, &reference, &[]))
                        .with_context(|| format!("pushing {file:?} to {reference}"))
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the push thread panicked"))?
        })
    }

    /// What the registry printed, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn spawn(htpasswd: Option<(&str, &str)>) -> anyhow::Result<Registry> {
        let bin = which(REGISTRY_BIN).with_context(|| {
            format!("`{REGISTRY_BIN}` is not installed: install the Debian package `docker-registry` (scripts/test.sh does)")
        })?;
        let dir = tempfile::Builder::new()
            .prefix("skiff-registry-")
            .tempdir()
            .context("creating the registry's directory")?;
        let auth = match htpasswd {
            Some((user, password)) => {
                let hash = bcrypt::hash(password, 5).context("hashing the password")?;
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{user}:{hash}\n"))
                    .with_context(|| format!("writing {path:?}"))?;
                format!(
                    "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        // Another process may take the port between our probe and the registry's bind: retry.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n{auth}",
                    dir.path().join("storage").display()
                ),
            )
            .with_context(|| format!("writing {config:?}"))?;
            let log_path = dir.path().join("registry.log");
            let log = File::create(&log_path).context("creating the log")?;
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("cloning the log handle")?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {bin:?}"))?;
            match wait_ready(&mut child, port) {
                Ok(()) => return Ok(Registry { child, port, dir }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!(
                        "{e:#}\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
            if !last.contains("address already in use") {
                break;
            }
        }
        bail!("docker-registry did not start: {last}")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET /v2/` until it answers 200 (or 401 behind auth).
fn wait_ready(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_BOUND;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().context("checking the registry")? {
            bail!("docker-registry exited with {status}");
        }
        match http_status(port, "/v2/") {
            Ok(200 | 401) => return Ok(()),
            Ok(code) => last = format!("GET /v2/ answered {code}"),
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("no answer on /v2/ within {READY_BOUND:?}; last: {last}")
}

/// The status code of a plain `GET path` on `127.0.0.1:port`.
fn http_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {head:?}")))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

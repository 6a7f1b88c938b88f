//! Container images for tests, built locally (the tests have no internet): a busybox image made
//! from the host's static busybox with `umoci`, pushed to a test [`Registry`] with `skopeo`,
//! as an OCI image ([`Registry::push_busybox`]) or a Docker schema 2 one
//! ([`Registry::push_busybox_v2s2`]).
//!
//! The OCI layout is built once per busybox binary and recipe, shared by every test process:
//! under `$TMPDIR/skiff-e2e-images/`, built in a private directory and renamed into place, so
//! concurrent builders never see a half-built layout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use anyhow::{Context, bail};

use crate::Registry;

/// Changes whenever the recipe below does, so a stale shared layout is never reused.
const RECIPE: &str = "busybox-v1";
/// The image's name inside its OCI layout.
const LAYOUT_TAG: &str = "busybox";
const BUSYBOX: &str = "/bin/busybox";

impl Registry {
    /// Pushes the busybox image (an OCI manifest) as `repo_tag` (`repo:tag`) and returns its
    /// reference, `127.0.0.1:PORT/repo:tag`. The image runs `sh` by default, with `PATH=/bin`,
    /// busybox's applets in `/bin`, and `root` and `nobody` in `/etc/passwd`.
    pub fn push_busybox(&self, repo_tag: &str) -> anyhow::Result<String> {
        self.push_layout(repo_tag, None)
    }

    /// [`Registry::push_busybox`] as a Docker image manifest, schema 2 (Docker media types).
    pub fn push_busybox_v2s2(&self, repo_tag: &str) -> anyhow::Result<String> {
        self.push_layout(repo_tag, Some(&["--format", "v2s2"]))
    }

    /// [`Registry::push_busybox`] with its layer compressed with zstd.
    pub fn push_busybox_zstd(&self, repo_tag: &str) -> anyhow::Result<String> {
        self.push_layout(repo_tag, Some(&["--dest-compress-format", "zstd"]))
    }

    /// Pushes busybox as `repo:tag`, then an OCI image index as `repo:index_tag` that lists it
    /// for this host's platform after an entry for another (`linux/s390x`) naming a manifest
    /// that does not run here; returns the index's reference.
    pub fn push_busybox_index(
        &self,
        repo: &str,
        tag: &str,
        index_tag: &str,
    ) -> anyhow::Result<String> {
        self.push_layout(&format!("{repo}:{tag}"), None)?;
        let manifest = self.get(&format!("/v2/{repo}/manifests/{tag}"))?;
        let digest = format!("sha256:{}", sha256_hex(&manifest));
        let arch = match std::env::consts::ARCH {
            "aarch64" => "arm64",
            _ => "amd64",
        };
        let entry = |arch: &str| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": manifest.len(),
                "platform": {"architecture": arch, "os": "linux"},
            })
        };
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry("s390x"), entry(arch)],
        }))?;
        self.put(
            &format!("/v2/{repo}/manifests/{index_tag}"),
            "application/vnd.oci.image.index.v1+json",
            &index,
        )?;
        Ok(format!("{}/{repo}:{index_tag}", self.addr()))
    }

    fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        self.http(&format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
            self.addr()
        ), &[])
    }

    fn put(&self, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.http(&format!(
            "PUT {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.addr(),
            body.len()
        ), body)
    }

    /// One plain HTTP/1.0 exchange with the registry; the body of a 2xx answer.
    fn http(&self, head: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.addr())?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("a registry answer without a head")?;
        let status = String::from_utf8_lossy(&answer[..split]).to_string();
        anyhow::ensure!(
            status
                .split_whitespace()
                .nth(1)
                .is_some_and(|c| c.starts_with('2')),
            "the registry answered {status}"
        );
        Ok(answer[split + 4..].to_vec())
    }

    fn push_layout(&self, repo_tag: &str, extra: Option<&[&str]>) -> anyhow::Result<String> {
        let layout = busybox_layout()?;
        let skopeo = tool("skopeo", "skopeo")?;
        let reference = format!("{}/{repo_tag}", self.addr());
        let mut command = Command::new(skopeo);
        command.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(extra) = extra {
            command.args(extra);
        }
        command
            .arg(format!("oci:{}:{LAYOUT_TAG}", layout.display()))
            .arg(format!("docker://{reference}"));
        run(&mut command).with_context(|| format!("pushing busybox to {reference}"))?;
        Ok(reference)
    }
}

/// The shared busybox OCI layout, built on first use in this process.
fn busybox_layout() -> anyhow::Result<&'static Path> {
    static LAYOUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| build_shared_layout().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow::anyhow!("building the busybox image: {e}"))
}

/// `$TMPDIR/skiff-e2e-images/<recipe>-<busybox size>-<mtime>`, built unless another process
/// already has.
fn build_shared_layout() -> anyhow::Result<PathBuf> {
    let busybox = std::fs::metadata(BUSYBOX).with_context(|| {
        format!("`busybox` is not installed ({BUSYBOX}): install the Debian package busybox-static (scripts/test.sh does)")
    })?;
    let mtime = busybox
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let parent = std::env::temp_dir().join("skiff-e2e-images");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {parent:?}"))?;
    let done = parent.join(format!("{RECIPE}-{}-{mtime}", busybox.len()));
    if done.join("index.json").exists() {
        return Ok(done);
    }
    let work = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(&parent)
        .context("creating a build directory")?;
    let layout = work.path().join("layout");
    build_layout(&layout, &work.path().join("bundle"))?;
    // Renaming onto a directory another builder already put in place fails: theirs is as good.
    if std::fs::rename(&layout, &done).is_err() && !done.join("index.json").exists() {
        bail!("could not move the built layout to {done:?}");
    }
    Ok(done)
}

/// The recipe: an empty image, busybox and its applet links in `/bin`, minimal passwd and
/// group files, `sh` as the command.
fn build_layout(layout: &Path, bundle: &Path) -> anyhow::Result<()> {
    let umoci = tool("umoci", "umoci")?;
    let image = format!("{}:{LAYOUT_TAG}", layout.display());
    let umoci_run = |args: &[&str]| run(Command::new(&umoci).args(args));
    umoci_run(&["init", "--layout", &layout.to_string_lossy()])?;
    umoci_run(&["new", "--image", &image])?;
    umoci_run(&["unpack", "--image", &image, &bundle.to_string_lossy()])?;
    let rootfs = bundle.join("rootfs");
    for dir in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir)).with_context(|| format!("creating /{dir}"))?;
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).context("copying busybox")?;
    run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/busybox", "--install", "-s", "/bin"]))
    .context("installing busybox's applet links")?;
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .context("writing /etc/passwd")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")
        .context("writing /etc/group")?;
    umoci_run(&["repack", "--image", &image, &bundle.to_string_lossy()])?;
    umoci_run(&[
        "config",
        "--image",
        &image,
        "--config.cmd=sh",
        "--config.env",
        "PATH=/bin",
        "--architecture",
        oci_architecture(),
        "--os",
        "linux",
    ])?;
    umoci_run(&["gc", "--layout", &layout.to_string_lossy()])?;
    Ok(())
}

/// This host's architecture as OCI spells it (GOARCH).
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The path of `tool` on `PATH`, or an error naming it and the Debian package that has it.
fn tool(tool: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!("`{tool}` is not installed: install the Debian package {package} (scripts/test.sh does)")
        })
}

/// Runs `command`; an error with its stderr unless it succeeds.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} exited with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The SHA-256 of `bytes` in hex (a manifest's digest).
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

//! Container probes, as the kubelet's prober workers run them: one task per probe of a running
//! container, waiting `initialDelaySeconds`, then probing every `periodSeconds` with
//! `timeoutSeconds`; `failureThreshold` consecutive failures (or `successThreshold` successes)
//! flip the result. Readiness decides the container's `ready`; a startup probe holds the other
//! two back until it succeeds; liveness (or startup) failing kills the container, which its
//! restart policy then restarts. Results are written to the run's [`Health`] and wake the pod's
//! worker so its status follows.
//!
//! httpGet, tcpSocket and grpc probes reach the pod's IP from the node, as the kubelet's do;
//! exec probes run in the container through its runtime.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_api::events::EventType;
use skiff_sandbox::{ContainerId, PodSandbox, SandboxId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use super::Context;
use super::state::PodState;

/// What probes have found about one run of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The readiness probe's verdict (true without one, once started).
    pub ready: bool,
    /// The startup probe has succeeded (true without one).
    pub started: bool,
}

impl Health {
    pub fn initial(container: &Container) -> Health {
        let started = container.startup_probe.is_none();
        Health {
            ready: started && container.readiness_probe.is_none(),
            started,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// Where probes of one run go, and what they may act on.
#[derive(Clone)]
pub(super) struct Target {
    pub pod: Arc<Pod>,
    pub container: Container,
    pub run: ContainerId,
    pub runtime: Arc<dyn PodSandbox>,
    pub sandbox: SandboxId,
    pub state: Arc<tokio::sync::Mutex<PodState>>,
}

/// Starts the probes `container` declares for the run `target.run`; the handles stop them.
pub(super) fn start(target: Target, ctx: &Context) -> Vec<AbortHandle> {
    let probes = [
        (Kind::Startup, target.container.startup_probe.clone()),
        (Kind::Liveness, target.container.liveness_probe.clone()),
        (Kind::Readiness, target.container.readiness_probe.clone()),
    ];
    probes
        .into_iter()
        .filter_map(|(kind, probe)| Some((kind, probe?)))
        .map(|(kind, probe)| {
            let worker = Worker {
                kind,
                probe,
                target: target.clone(),
                events: ctx.events.clone(),
                wake: ctx.exits.clone(),
            };
            tokio::spawn(worker.run()).abort_handle()
        })
        .collect()
}

struct Worker {
    kind: Kind,
    probe: Probe,
    target: Target,
    events: super::EventRecorder,
    wake: tokio::sync::mpsc::UnboundedSender<kube::runtime::reflector::ObjectRef<Pod>>,
}

fn seconds(value: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(min) as u64)
}

impl Worker {
    async fn run(self) {
        let period = seconds(self.probe.period_seconds, 10, 1);
        let timeout = seconds(self.probe.timeout_seconds, 1, 1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1) as u32;
        // Liveness and startup need one success (the API insists); readiness may ask more.
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1) as u32;
        tokio::time::sleep(seconds(self.probe.initial_delay_seconds, 0, 0)).await;
        let (mut successes, mut failures) = (0u32, 0u32);
        loop {
            let health = self.health().await;
            let Some(health) = health else { return };
            let gated = self.kind != Kind::Startup && !health.started;
            if self.kind == Kind::Startup && health.started {
                return;
            }
            if !gated {
                match tokio::time::timeout(timeout, self.probe_once()).await {
                    Ok(Ok(())) => {
                        successes += 1;
                        failures = 0;
                        if successes >= success_threshold && !self.succeeded().await {
                            return;
                        }
                    }
                    result => {
                        let why = match result {
                            Ok(Err(why)) => why,
                            _ => format!("probe timed out after {}s", timeout.as_secs()),
                        };
                        successes = 0;
                        failures += 1;
                        self.event(
                            EventType::Warning,
                            "Unhealthy",
                            format!("{} probe failed: {why}", self.kind.name()),
                        );
                        if failures >= failure_threshold && !self.failed().await {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    fn event(&self, kind: EventType, reason: &str, message: String) {
        self.events.pod(
            &self.target.pod,
            Some((&self.target.container.name, false)),
            kind,
            reason,
            message,
        );
    }

    /// The run's health, `None` once the run is over (the worker then ends).
    async fn health(&self) -> Option<Health> {
        let mut state = self.target.state.lock().await;
        let run = state.container(&self.target.container.name).run.as_ref()?;
        (run.id == self.target.run && run.exit.is_none()).then_some(run.health)
    }

    /// Applies `change` to the run's health and wakes the pod worker if it changed; false
    /// once the run is over.
    async fn update(&self, change: impl FnOnce(&mut Health)) -> bool {
        let changed = {
            let mut state = self.target.state.lock().await;
            let Some(run) = state
                .container(&self.target.container.name)
                .run
                .as_mut()
                .filter(|r| r.id == self.target.run && r.exit.is_none())
            else {
                return false;
            };
            let before = run.health;
            change(&mut run.health);
            run.health != before
        };
        if changed {
            let _ = self
                .wake
                .send(kube::runtime::reflector::ObjectRef::from_obj(
                    &*self.target.pod,
                ));
        }
        true
    }

    /// Records a success; false when the worker should stop.
    async fn succeeded(&self) -> bool {
        match self.kind {
            Kind::Readiness => self.update(|h| h.ready = true).await,
            Kind::Startup => {
                let readiness = self.target.container.readiness_probe.is_none();
                self.update(|h| {
                    h.started = true;
                    h.ready = readiness;
                })
                .await;
                false
            }
            Kind::Liveness => true,
        }
    }

    /// Acts on a failure that reached the threshold; false when the worker should stop.
    async fn failed(&self) -> bool {
        match self.kind {
            Kind::Readiness => self.update(|h| h.ready = false).await,
            Kind::Liveness | Kind::Startup => {
                let name = &self.target.container.name;
                self.event(
                    EventType::Normal,
                    "Killing",
                    format!(
                        "Container {name} failed {} probe, will be restarted",
                        self.kind.name().to_lowercase()
                    ),
                );
                let grace = self
                    .probe
                    .termination_grace_period_seconds
                    .or(self
                        .target
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds))
                    .unwrap_or(30)
                    .max(0) as u64;
                if let Err(e) = self
                    .target
                    .runtime
                    .stop_container(&self.target.sandbox, name, Duration::from_secs(grace))
                    .await
                {
                    tracing::warn!(container = %name, error = %e, "killing an unhealthy container failed");
                }
                false
            }
        }
    }

    async fn probe_once(&self) -> Result<(), String> {
        let ip = {
            let state = self.target.state.lock().await;
            state.network.as_ref().and_then(|n| n.ips.first().copied())
        };
        let port_of = |port: &IntOrString| resolve_port(&self.target.container, port);
        if let Some(http) = &self.probe.http_get {
            let scheme = http.scheme.as_deref().unwrap_or("HTTP");
            if scheme != "HTTP" {
                return Err(format!("{scheme} probes are not supported yet"));
            }
            return http_get_action(http, &self.target.container, ip).await;
        }
        if let Some(tcp) = &self.probe.tcp_socket {
            let host = host_or_pod_ip(tcp.host.as_deref(), ip)?;
            let port = port_of(&tcp.port)?;
            return TcpStream::connect((host.as_str(), port))
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
        }
        if let Some(grpc) = &self.probe.grpc {
            let ip = ip.ok_or("the pod has no IP")?;
            let port = u16::try_from(grpc.port).map_err(|_| "invalid port".to_string())?;
            return super::grpc_probe::check(ip, port, grpc.service.as_deref().unwrap_or("")).await;
        }
        if let Some(exec) = &self.probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            let timeout = seconds(self.probe.timeout_seconds, 1, 1);
            let t = &self.target;
            return run_exec(
                &*t.runtime,
                &t.sandbox,
                &t.container.name,
                &command,
                timeout,
            )
            .await;
        }
        Err("the probe names no action".into())
    }
}

/// Runs `command` in the target's container (exec probes and hooks): success is exit 0; a
/// failure says what the command printed, as the kubelet's events do.
pub(super) async fn run_exec(
    runtime: &dyn PodSandbox,
    sandbox: &SandboxId,
    container: &str,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let out = skiff_sandbox::exec_sync(runtime, sandbox, container, command, timeout)
        .await
        .map_err(|e| e.to_string())?;
    if out.exit_code == 0 {
        return Ok(());
    }
    let printed = String::from_utf8_lossy(&out.output).trim_end().to_string();
    Err(if printed.is_empty() {
        format!("command {command:?} exited with {}", out.exit_code)
    } else {
        printed
    })
}

/// The host an action names, else the pod's IP.
fn host_or_pod_ip(host: Option<&str>, pod_ip: Option<IpAddr>) -> Result<String, String> {
    match host.filter(|h| !h.is_empty()) {
        Some(host) => Ok(host.to_string()),
        None => Ok(pod_ip.ok_or("the pod has no IP")?.to_string()),
    }
}

/// An `httpGet` probe or hook: its host (the pod's IP unless it names one), port, path and
/// headers, answered by [`http_get`].
pub(super) async fn http_get_action(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: Option<IpAddr>,
) -> Result<(), String> {
    let host = host_or_pod_ip(action.host.as_deref(), pod_ip)?;
    let port = resolve_port(container, &action.port)?;
    let headers: Vec<(String, String)> = action
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    http_get(&host, port, action.path.as_deref().unwrap_or("/"), &headers).await
}

/// A probe's port: a number, or the name of one of the container's ports.
pub(super) fn resolve_port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("couldn't find port {name:?} in the container's ports")),
    }
}

/// The kubelet's HTTP probe: success for a status from 200 to 399.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: {e}"))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("User-Agent") {
        request.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("Accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        if n == 0 {
            return Err(format!("Get \"{url}\": EOF"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_probes_succeed_below_400_and_quote_the_status_otherwise() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            for code in [200, 302, 500] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut req = vec![0u8; 1024];
                let n = s.read(&mut req).await.expect("read");
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
                assert!(req.contains("User-Agent: kube-probe/1.33"), "{req}");
                assert!(req.contains("X-Probe: yes"), "{req}");
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let headers = [("X-Probe".to_string(), "yes".to_string())];
        assert_eq!(
            http_get("127.0.0.1", port, "/healthz", &headers).await,
            Ok(())
        );
        assert_eq!(
            http_get("127.0.0.1", port, "/healthz", &headers).await,
            Ok(())
        );
        assert_eq!(
            http_get("127.0.0.1", port, "/healthz", &headers).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[test]
    fn named_ports_resolve_through_the_container() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .expect("container");
        assert_eq!(resolve_port(&container, &IntOrString::Int(81)), Ok(81));
        assert_eq!(
            resolve_port(&container, &IntOrString::String("http".into())),
            Ok(8080)
        );
        assert!(resolve_port(&container, &IntOrString::String("grpc".into())).is_err());
    }
}

//! The node's streaming sessions, once the API server has relayed `pods/exec`, `pods/attach` or
//! `pods/portforward` here (`logs::server` routes them): [`exec`], [`attach`], [`port_forward`].
//!
//! Exec and attach speak remotecommand: WebSocket channels (`v5.channel.k8s.io`, `v4`;
//! [`channel`]) as kubectl does first, or SPDY streams ([`spdy_exec`]) as its fallback does; both
//! relay the runtime's [`ContainerIo`] through one [`session`]. Port forwarding speaks SPDY/3.1
//! ([`spdy`], [`spdy_conn`]), plain or tunnelled in WebSocket ([`port_forward`]).
//!
//! Everything that can be refused is refused before the 101: an unknown pod or container, a
//! runtime that cannot exec or attach (Wasm modules), a pod without a network, an unknown
//! protocol. The answer is then a `Status`; after the 101 a failure is one on the error stream.

pub mod channel;
pub mod port_forward;
mod request;
pub mod session;
pub mod spdy;
pub mod spdy_conn;
pub mod spdy_exec;
pub mod websocket;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use skiff_api::ApiError;
use skiff_sandbox::{ContainerIo, PodSandbox, SandboxError, SandboxId, StreamOptions};
use tracing::debug;

use crate::logs::ContainerLocator;
use request::{Upgrade, query_values, stream_options, switching, upgrade_of};

/// A running container as exec and attach reach it.
#[derive(Clone)]
pub struct ContainerTarget {
    /// The RuntimeClass handler running it (`runc`, `wasmtime`).
    pub handler: String,
    /// The runtime and the pod's sandbox in it; `None` from a locator that reaches no runtime,
    /// whose containers refuse exec and attach.
    pub runtime: Option<(Arc<dyn PodSandbox>, SandboxId)>,
}

/// Where a pod's ports are, for port forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodPorts {
    /// `hostNetwork: true`: the node's own.
    Host,
    /// The pod's network namespace (a bind-mounted nsfs file).
    Namespace(PathBuf),
    /// The pod has no network (yet, or at all: pods of Wasm modules get none).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Exec,
    Attach,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Exec => "exec",
            Verb::Attach => "attach",
        }
    }
}

/// Why `verb` cannot reach a container that `handler` runs.
fn unsupported(handler: &str, verb: Verb, container: &str) -> ApiError {
    let name = verb.name();
    if handler != "wasmtime" {
        return ApiError::bad_request(format!(
            "{name} is not supported for container {container:?}: its runtime, {handler}, cannot {name}"
        ));
    }
    let why = match verb {
        Verb::Exec => "which has no shell or processes to run commands in",
        Verb::Attach => {
            "which has no terminal or stdin to attach to; its output is in `kubectl logs -f`"
        }
    };
    ApiError::bad_request(format!(
        "{name} is not supported for container {container:?}: it is a WebAssembly module run by wasmtime, {why}"
    ))
}

/// Why the runtime refused to exec or attach, as the client should read it.
fn refusal(e: SandboxError, verb: Verb, container: &str) -> ApiError {
    match e {
        SandboxError::Unsupported { handler, .. } => unsupported(handler, verb, container),
        SandboxError::UnknownSandbox(_) | SandboxError::UnknownContainer { .. } => ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("container {container:?} not found: {e}"),
            details: None,
            retry_after_seconds: None,
        },
        SandboxError::NotRunning { .. } => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(match verb {
            Verb::Exec => format!("error executing command in container {container:?}: {e}"),
            Verb::Attach => format!("error attaching to container {container:?}: {e}"),
        }),
    }
}

/// `pods/exec`: `command` (repeated), `stdin`, `stdout`, `stderr`, `tty` in the query.
pub async fn exec(
    locator: &dyn ContainerLocator,
    namespace: &str,
    pod: &str,
    container: &str,
    req: Request,
) -> Result<Response, ApiError> {
    remote_command(locator, namespace, pod, container, req, Verb::Exec).await
}

/// `pods/attach`: `stdin`, `stdout`, `stderr`, `tty` in the query.
pub async fn attach(
    locator: &dyn ContainerLocator,
    namespace: &str,
    pod: &str,
    container: &str,
    req: Request,
) -> Result<Response, ApiError> {
    remote_command(locator, namespace, pod, container, req, Verb::Attach).await
}

async fn remote_command(
    locator: &dyn ContainerLocator,
    namespace: &str,
    pod: &str,
    container: &str,
    mut req: Request,
    verb: Verb,
) -> Result<Response, ApiError> {
    let query = req.uri().query().map(str::to_string);
    let options = stream_options(query.as_deref())?;
    let command = query_values(query.as_deref(), "command");
    if verb == Verb::Exec && command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let target = locator
        .container_target(namespace, pod, container)
        .map_err(|e| ApiError::from(&e))?;
    let Some((runtime, sandbox)) = target.runtime else {
        return Err(unsupported(&target.handler, verb, container));
    };
    let upgrade = upgrade_of(req.headers(), channel::PROTOCOLS, spdy_exec::PROTOCOLS)?;
    let io = match verb {
        Verb::Exec => runtime.exec(&sandbox, container, &command, options).await,
        Verb::Attach => runtime.attach(&sandbox, container, options).await,
    }
    .map_err(|e| refusal(e, verb, container))?;
    let response = switching(req.headers(), upgrade)?;
    let upgrading = hyper::upgrade::on(&mut req);
    let command = (verb == Verb::Exec).then_some(command);
    tokio::spawn(async move {
        let upgraded = match upgrading.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                debug!(error = %e, "the streaming connection was not upgraded");
                return;
            }
        };
        serve_remote_command(upgraded, upgrade, options, io, command).await;
    });
    Ok(response)
}

async fn serve_remote_command(
    upgraded: hyper::upgrade::Upgraded,
    upgrade: Upgrade,
    options: StreamOptions,
    io: ContainerIo,
    command: Option<Vec<String>>,
) {
    match upgrade {
        Upgrade::WebSocket(protocol) => {
            let ws = websocket::server(upgraded).await;
            channel::serve(ws, protocol, io, command).await;
        }
        Upgrade::Spdy(_) => spdy_exec::serve(TokioIo::new(upgraded), options, io, command).await,
    }
}

/// `pods/portforward`: the ports travel in the SPDY streams' headers.
pub async fn port_forward(
    locator: &dyn ContainerLocator,
    namespace: &str,
    pod: &str,
    mut req: Request,
) -> Result<Response, ApiError> {
    let ports = locator
        .pod_ports(namespace, pod)
        .map_err(|e| ApiError::from(&e))?;
    if ports == PodPorts::None {
        return Err(no_network(locator, namespace, pod));
    }
    let upgrade = upgrade_of(
        req.headers(),
        &[port_forward::TUNNEL_PROTOCOL],
        &[port_forward::PROTOCOL],
    )?;
    let response = switching(req.headers(), upgrade)?;
    let upgrading = hyper::upgrade::on(&mut req);
    let pod = pod.to_string();
    tokio::spawn(async move {
        let upgraded = match upgrading.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                debug!(error = %e, "the port forwarding connection was not upgraded");
                return;
            }
        };
        match upgrade {
            Upgrade::WebSocket(_) => {
                let ws = websocket::server(upgraded).await;
                port_forward::serve(websocket::bridge(ws), pod, ports).await;
            }
            Upgrade::Spdy(_) => port_forward::serve(TokioIo::new(upgraded), pod, ports).await,
        }
    });
    Ok(response)
}

/// The refusal for a pod without a network: one of Wasm modules never gets one.
fn no_network(locator: &dyn ContainerLocator, namespace: &str, pod: &str) -> ApiError {
    match locator.pod_runtime_handlers(namespace, pod) {
        Ok(handlers) if !handlers.is_empty() && handlers.iter().all(|h| h == "wasmtime") => {
            ApiError::bad_request(format!(
                "port forwarding is not supported for pod {pod:?}: it has no network; its containers are WebAssembly modules run by wasmtime, which cannot listen on ports"
            ))
        }
        Ok(_) => ApiError::bad_request(format!(
            "port forwarding is not possible for pod {pod:?} yet: it has no network until its first container starts"
        )),
        Err(e) => ApiError::from(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_refusals_become_statuses() {
        let wasm = SandboxError::Unsupported {
            handler: "wasmtime",
            operation: "exec",
        };
        let e = refusal(wasm, Verb::Exec, "c");
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "exec is not supported for container \"c\": it is a WebAssembly module run by wasmtime, which has no shell or processes to run commands in"
        );
        let gone = SandboxError::UnknownContainer {
            sandbox: SandboxId("u".into()),
            container: "c".into(),
        };
        assert_eq!(refusal(gone, Verb::Attach, "c").code, 404);
        let stopped = SandboxError::NotRunning {
            container: "c".into(),
        };
        assert_eq!(refusal(stopped, Verb::Exec, "c").code, 400);
    }
}

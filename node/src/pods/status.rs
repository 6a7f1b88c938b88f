//! Pod status as the kubelet reports it, computed from [`PodState`] alone: phase, conditions,
//! and container statuses with their waiting/running/terminated states.

use std::time::SystemTime;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sContainerState, ContainerStateRunning,
    ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition,
    PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use skiff_sandbox::{ExitReason, ExitStatus};

use super::state::{ContainerState, PodState};

fn time(t: SystemTime) -> Time {
    Time(Timestamp::try_from(t).unwrap_or_else(|_| Timestamp::now()))
}

/// `reason` of a terminated state: the kubelet's words.
pub fn termination_reason(exit: &ExitStatus) -> &'static str {
    match exit.reason {
        ExitReason::OomKilled => "OOMKilled",
        _ if exit.exit_code == 0 => "Completed",
        _ => "Error",
    }
}

fn terminated(id: &str, exit: &ExitStatus) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(id.to_string()),
        exit_code: exit.exit_code,
        reason: Some(termination_reason(exit).to_string()),
        message: exit.message.clone(),
        started_at: Some(time(exit.started_at)),
        finished_at: Some(time(exit.finished_at)),
        signal: None,
    }
}

fn container_status(spec: &Container, state: Option<&ContainerState>) -> ContainerStatus {
    let default = ContainerState::default();
    let cs = state.unwrap_or(&default);
    let waiting = |reason: &str, message: Option<String>| K8sContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..K8sContainerState::default()
    };
    let current = match (&cs.waiting, &cs.run) {
        // A waiting reason (back-off, pull error) wins over the exited run it follows.
        (Some(w), _) => waiting(w.reason, w.message.clone()),
        (None, Some(run)) => match &run.exit {
            None => K8sContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(run.started_at)),
                }),
                ..K8sContainerState::default()
            },
            Some(exit) => K8sContainerState {
                terminated: Some(terminated(&run.id.0, exit)),
                ..K8sContainerState::default()
            },
        },
        (None, None) => waiting("ContainerCreating", None),
    };
    // While a restart waits, the run that just ended is the last state.
    let last = match (&cs.waiting, &cs.run) {
        (Some(_), Some(run)) if run.exit.is_some() => run.exit.as_ref().map(|e| (&run.id, e)),
        _ => cs.last_termination.as_ref().map(|(id, e)| (id, e)),
    };
    let running = cs.running();
    let health = cs.run.as_ref().map(|r| r.health);
    ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: cs
            .image_id
            .as_ref()
            .map(|digest| image_id(spec.image.as_deref().unwrap_or_default(), digest))
            .unwrap_or_default(),
        container_id: cs.run.as_ref().map(|r| r.id.0.clone()),
        restart_count: cs.restart_count as i32,
        ready: running && health.is_some_and(|h| h.ready),
        started: Some(running && health.is_some_and(|h| h.started)),
        state: Some(current),
        last_state: Some(
            last.map(|(id, e)| K8sContainerState {
                terminated: Some(terminated(&id.0, e)),
                ..K8sContainerState::default()
            })
            .unwrap_or_default(),
        ),
        ..ContainerStatus::default()
    }
}

/// `imageID` as the kubelet shows it: the repository with the manifest digest.
fn image_id(reference: &str, digest: &str) -> String {
    let repository = match reference.rsplit_once('@') {
        Some((repo, _)) => repo,
        None => match reference.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => reference,
        },
    };
    format!("{repository}@{digest}")
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(Time(Timestamp::now())),
        ..PodCondition::default()
    }
}

/// The phase the kubelet's `getPhase` would give.
fn phase(pod: &Pod, state: &PodState) -> &'static str {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let get = |name: &str| state.containers.get(name);
    if policy == "Never"
        && init.iter().any(|c| {
            get(&c.name)
                .and_then(ContainerState::exit)
                .is_some_and(|e| e.exit_code != 0)
        })
    {
        return "Failed";
    }
    if !init
        .iter()
        .all(|c| get(&c.name).is_some_and(ContainerState::succeeded))
    {
        return "Pending";
    }
    let (mut running, mut waiting, mut succeeded, mut failed) = (0, 0, 0, 0);
    for c in containers {
        match get(&c.name) {
            Some(cs) if cs.running() => running += 1,
            Some(cs) if cs.waiting.is_some() && cs.run.is_some() => running += 1,
            Some(cs) => match cs.exit() {
                Some(e) if e.exit_code == 0 => succeeded += 1,
                Some(_) => failed += 1,
                None => waiting += 1,
            },
            None => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if policy == "Always" {
        // Exited containers about to restart.
        "Running"
    } else if failed > 0 && policy == "Never" {
        "Failed"
    } else if failed > 0 {
        "Running"
    } else if succeeded > 0 {
        "Succeeded"
    } else {
        "Pending"
    }
}

/// The status to report for `pod`, keeping what others own (`PodScheduled`, `qosClass`) and the
/// transition times of conditions that did not change.
pub fn compute(pod: &Pod, state: &PodState, host_ip: &str) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let init: Vec<ContainerStatus> = init_specs
        .iter()
        .map(|c| {
            let mut s = container_status(c, state.containers.get(&c.name));
            // An init container that finished is not "ready", as the kubelet reports it.
            if s.state.as_ref().is_some_and(|st| st.terminated.is_some()) {
                s.ready = false;
            }
            s
        })
        .collect();
    let app: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, state.containers.get(&c.name)))
        .collect();
    let phase = phase(pod, state);
    let incomplete: Vec<&str> = init_specs
        .iter()
        .filter(|c| {
            !state
                .containers
                .get(&c.name)
                .is_some_and(ContainerState::succeeded)
        })
        .map(|c| c.name.as_str())
        .collect();
    let unready: Vec<&str> = app
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let terminal = phase == "Succeeded" || phase == "Failed";
    let initialized = if incomplete.is_empty() {
        condition("Initialized", true, None, None)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
        )
    };
    let ready = |kind: &str| {
        if unready.is_empty() {
            condition(kind, true, None, None)
        } else if terminal {
            condition(kind, false, Some("PodCompleted"), None)
        } else {
            condition(
                kind,
                false,
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        }
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            !state.sandboxes.is_empty() && !terminal,
            None,
            None,
        ),
        initialized,
        ready("Ready"),
        ready("ContainersReady"),
    ];
    let old_conditions = old.conditions.clone().unwrap_or_default();
    for c in &mut conditions {
        if let Some(prev) = old_conditions.iter().find(|o| o.type_ == c.type_)
            && prev.status == c.status
        {
            c.last_transition_time = prev.last_transition_time.clone();
        }
    }
    conditions.extend(
        old_conditions
            .into_iter()
            .filter(|o| o.type_ == "PodScheduled"),
    );
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: state
            .network
            .as_ref()
            .and_then(|n| n.ips.first())
            .map(|ip| ip.to_string())
            .or(old.pod_ip.clone()),
        pod_ips: state
            .network
            .as_ref()
            .map(|n| {
                n.ips
                    .iter()
                    .map(|ip| PodIP { ip: ip.to_string() })
                    .collect()
            })
            .or(old.pod_ips.clone()),
        start_time: state.start_time.map(Time).or(old.start_time.clone()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(app),
        ..old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_name_the_repository_and_digest() {
        assert_eq!(
            image_id("127.0.0.1:5000/hello:v1", "sha256:ab"),
            "127.0.0.1:5000/hello@sha256:ab"
        );
        assert_eq!(
            image_id("127.0.0.1:5000/hello", "sha256:ab"),
            "127.0.0.1:5000/hello@sha256:ab"
        );
        assert_eq!(image_id("r/x@sha256:cd", "sha256:cd"), "r/x@sha256:cd");
    }

    #[test]
    fn termination_reasons_follow_the_kubelet() {
        let exit = |code, reason| ExitStatus {
            exit_code: code,
            reason,
            message: None,
            started_at: SystemTime::now(),
            finished_at: SystemTime::now(),
        };
        assert_eq!(
            termination_reason(&exit(0, ExitReason::Exited)),
            "Completed"
        );
        assert_eq!(termination_reason(&exit(3, ExitReason::Exited)), "Error");
        assert_eq!(
            termination_reason(&exit(137, ExitReason::OomKilled)),
            "OOMKilled"
        );
    }
}

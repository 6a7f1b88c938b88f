//! The Pod printer: READY, the STATUS the kubelet's state implies (`Init:0/1`,
//! `CrashLoopBackOff`, `Completed`, `Terminating`, ...), RESTARTS with the time of the last
//! restart (`3 (5m ago)`), and the wide IP, NODE, NOMINATED NODE and READINESS GATES cells.
//! Follows `printPod` in Kubernetes' `printers.go`, sidecar (restartable init) containers included.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::format::{age, arr_at, int_at, is_deleting, name, or_none, since, str_at, time_at};
use super::{AGE, ColumnDef, Doc, NAME, Printer, col, wide};

const COLUMNS: &[ColumnDef] = &[
    NAME,
    col(
        "Ready",
        "string",
        Doc::Text("The aggregate readiness state of this pod for accepting traffic."),
    ),
    col(
        "Status",
        "string",
        Doc::Text("The aggregate status of the containers in this pod."),
    ),
    col(
        "Restarts",
        "string",
        Doc::Text(
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
    ),
    AGE,
    wide(
        "IP",
        "string",
        Doc::Field("io.k8s.api.core.v1.PodStatus", "podIP"),
    ),
    wide(
        "Node",
        "string",
        Doc::Field("io.k8s.api.core.v1.PodSpec", "nodeName"),
    ),
    wide(
        "Nominated Node",
        "string",
        Doc::Field("io.k8s.api.core.v1.PodStatus", "nominatedNodeName"),
    ),
    wide(
        "Readiness Gates",
        "string",
        Doc::Field("io.k8s.api.core.v1.PodSpec", "readinessGates"),
    ),
];

pub(super) const POD: Printer = Printer {
    conditions: Some(row_conditions),
    ..Printer::new(COLUMNS, cells)
};

/// A finished pod's row is marked Completed, so clients may hide it.
fn row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

fn has_condition(pod: &Value, type_: &str) -> bool {
    arr_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == type_ && str_at(c, "/status") == "True")
}

/// `ExitCode:1` or `Signal:9` for a terminated state without a reason.
fn exit_text(terminated: &Value) -> String {
    match int_at(terminated, "/signal") {
        0 => format!("ExitCode:{}", int_at(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

fn cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec_init = arr_at(pod, "/spec/initContainers");
    let restartable = |name: &str| {
        spec_init
            .iter()
            .any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always")
    };
    let total = arr_at(pod, "/spec/containers").len()
        + spec_init
            .iter()
            .filter(|c| str_at(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;

    let phase = str_at(pod, "/status/phase");
    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if arr_at(pod, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (i, c) in arr_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let finished = time_at(c, "/lastState/terminated/finishedAt");
        restarts += int_at(c, "/restartCount");
        last_restart = last_restart.max(finished);
        let is_sidecar = restartable(str_at(c, "/name"));
        if is_sidecar {
            sidecar_restarts += int_at(c, "/restartCount");
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = str_at(c, "/state/waiting/reason");
        match terminated {
            Some(t) if int_at(t, "/exitCode") == 0 => continue,
            _ if is_sidecar && c.get("started") == Some(&Value::Bool(true)) => {
                if c.get("ready") == Some(&Value::Bool(true)) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                reason = match str_at(t, "/reason") {
                    "" => format!("Init:{}", exit_text(t)),
                    r => format!("Init:{r}"),
                };
            }
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                reason = format!("Init:{waiting_reason}");
            }
            None => reason = format!("Init:{i}/{}", spec_init.len()),
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(c, "/restartCount");
            last_restart = last_restart.max(time_at(c, "/lastState/terminated/finishedAt"));
            let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
            let waiting_reason = str_at(c, "/state/waiting/reason");
            if c.pointer("/state/waiting").is_some_and(Value::is_object)
                && !waiting_reason.is_empty()
            {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, "/reason") {
                    "" => exit_text(t),
                    r => r.to_string(),
                };
            } else if c.get("ready") == Some(&Value::Bool(true))
                && c.pointer("/state/running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is not Completed.
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    let deleting = is_deleting(pod);
    if deleting && str_at(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    let gates = arr_at(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr_at(pod, "/status/conditions");
        let met = gates
            .iter()
            .filter(|g| {
                let wanted = str_at(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| str_at(c, "/type") == wanted)
                    .is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };

    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_text.into(),
        age(pod, now),
        or_none(str_at(pod, "/status/podIPs/0/ip")),
        or_none(str_at(pod, "/spec/nodeName")),
        or_none(str_at(pod, "/status/nominatedNodeName")),
        readiness_gates.into(),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{part, row};

    fn pod(spec: serde_json::Value, status: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2025-01-01T11:00:00Z"},
            "spec": spec, "status": status,
        })
    }

    fn containers(names: &[&str]) -> serde_json::Value {
        names
            .iter()
            .map(|n| json!({"name": n, "image": "nginx"}))
            .collect()
    }

    #[test]
    fn running_pod_with_wide_cells() {
        let p = pod(
            json!({"containers": containers(&["app", "log"]), "nodeName": "node-1"}),
            json!({
                "phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-01-01T11:00:05Z"}}},
                    {"name": "log", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-01-01T11:00:05Z"}}},
                ],
            }),
        );
        assert_eq!(
            row("pods", &p),
            json!([
                "web", "2/2", "Running", "0", "60m", "10.0.0.5", "node-1", "<none>", "<none>"
            ])
        );
    }

    #[test]
    fn crash_looping_pod_shows_reason_and_last_restart() {
        let p = pod(
            json!({"containers": containers(&["app"]), "nodeName": "node-1"}),
            json!({
                "phase": "Running", "podIPs": [{"ip": "10.0.0.6"}],
                "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2025-01-01T11:55:00Z"}},
                }],
            }),
        );
        assert_eq!(
            part(row("pods", &p), 0..5),
            json!(["web", "0/1", "CrashLoopBackOff", "3 (5m ago)", "60m"])
        );
    }

    #[test]
    fn init_containers_in_progress_and_failing() {
        let spec = json!({"initContainers": containers(&["migrate", "seed"]), "containers": containers(&["app"])});
        let waiting = pod(
            spec.clone(),
            json!({
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "migrate", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "seed", "ready": false, "restartCount": 0, "state": {"running": {}}},
                ],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
            }),
        );
        assert_eq!(
            part(row("pods", &waiting), 1..4),
            json!(["0/1", "Init:1/2", "0"])
        );

        let failing = pod(
            spec.clone(),
            json!({
                "phase": "Pending",
                "initContainerStatuses": [{
                    "name": "migrate", "ready": false, "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T11:59:30Z"}},
                }],
            }),
        );
        assert_eq!(
            part(row("pods", &failing), 2..4),
            json!(["Init:CrashLoopBackOff", "2 (30s ago)"])
        );

        let exited = pod(
            spec,
            json!({"phase": "Failed", "initContainerStatuses": [
                {"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}},
            ]}),
        );
        assert_eq!(row("pods", &exited)[2], json!("Init:ExitCode:2"));
    }

    #[test]
    fn sidecars_count_towards_ready_and_total() {
        let p = pod(
            json!({
                "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
                "containers": containers(&["app"]),
            }),
            json!({
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                    "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 137, "finishedAt": "2025-01-01T11:58:00Z"}}}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}],
            }),
        );
        assert_eq!(
            part(row("pods", &p), 1..4),
            json!(["2/2", "Running", "1 (2m ago)"])
        );
    }

    #[test]
    fn terminating_completed_and_failed_pods() {
        let mut running = pod(
            json!({"containers": containers(&["app"])}),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        running["metadata"]["deletionTimestamp"] = json!("2025-01-01T11:59:00Z");
        assert_eq!(row("pods", &running)[2], json!("Terminating"));

        let completed = pod(
            json!({"containers": containers(&["job"])}),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"name": "job", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(
            part(row("pods", &completed), 1..3),
            json!(["0/1", "Completed"])
        );

        let oom = pod(
            json!({"containers": containers(&["app"])}),
            json!({"phase": "Failed", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(row("pods", &oom)[2], json!("OOMKilled"));
        let killed = pod(
            json!({"containers": containers(&["app"])}),
            json!({"phase": "Failed", "containerStatuses": [
                {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
        );
        assert_eq!(row("pods", &killed)[2], json!("Signal:9"));
    }

    #[test]
    fn pending_gated_and_readiness_gates() {
        let p = pod(
            json!({"containers": containers(&["app"]), "readinessGates": [{"conditionType": "lb/ready"}, {"conditionType": "x/ok"}]}),
            json!({"phase": "Pending", "nominatedNodeName": "node-2", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                {"type": "lb/ready", "status": "True"}]}),
        );
        assert_eq!(
            row("pods", &p),
            json!([
                "web",
                "0/1",
                "SchedulingGated",
                "0",
                "60m",
                "<none>",
                "<none>",
                "node-2",
                "1/2"
            ])
        );
    }

    #[test]
    fn finished_pods_carry_a_completed_row_condition() {
        let done = pod(json!({"containers": []}), json!({"phase": "Succeeded"}));
        assert_eq!(
            super::row_conditions(&done),
            Some(
                json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                         "message": "The pod has completed successfully."}])
            )
        );
        assert_eq!(
            super::row_conditions(&pod(json!({}), json!({"phase": "Running"}))),
            None
        );
    }
}

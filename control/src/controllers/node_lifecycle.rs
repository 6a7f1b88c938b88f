//! The node lifecycle controller: a Node whose Lease in `kube-node-lease` has not been renewed
//! for the grace period (40 s, kube-controller-manager's `--node-monitor-grace-period`) gets its
//! conditions set to `Unknown` ("Kubelet stopped posting node status.") and the taints
//! `node.kubernetes.io/unreachable` `NoSchedule` and `NoExecute`; a Ready=False node gets
//! `node.kubernetes.io/not-ready` instead. Once the Lease is renewed and the agent reports Ready
//! again, the taints go. Pods on a NoExecute-tainted node are not evicted yet (no taint manager).
//!
//! Like Kubernetes, staleness is judged by when this controller saw a Lease's `renewTime`
//! change, not by comparing the agent's clock with ours. A Node without a Lease is left alone
//! for the grace period from its creation (or from this controller's start, if later).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(40);
/// Overrides the grace period, in seconds (`5`, `5s` or `2.5`): tests use it to not wait 40 s.
pub const GRACE_PERIOD_ENV: &str = "SKIFF_NODE_MONITOR_GRACE_PERIOD";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const EFFECTS: [&str; 2] = ["NoSchedule", "NoExecute"];

#[derive(Debug, thiserror::Error)]
pub enum NodeLifecycleError {
    #[error("updating node {node}: {source}")]
    Update {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// The grace period from [`GRACE_PERIOD_ENV`], else [`DEFAULT_GRACE_PERIOD`].
pub fn grace_period_from_env() -> Duration {
    let Ok(value) = std::env::var(GRACE_PERIOD_ENV) else {
        return DEFAULT_GRACE_PERIOD;
    };
    match value.trim().trim_end_matches('s').parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => Duration::from_secs_f64(secs),
        _ => {
            warn!(%value, "{GRACE_PERIOD_ENV} is not a number of seconds; using 40 s");
            DEFAULT_GRACE_PERIOD
        }
    }
}

/// When a Lease's `renewTime` was last seen to change.
struct Observed {
    renew_time: Option<MicroTime>,
    at: Instant,
}

struct Context {
    client: Client,
    grace: Duration,
    started: Instant,
    leases: Mutex<HashMap<String, Observed>>,
}

impl Context {
    fn observe(&self, lease: &Lease) {
        let renew_time = lease.spec.as_ref().and_then(|s| s.renew_time.clone());
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let observed = leases.entry(lease.name_any()).or_insert(Observed {
            renew_time: None,
            at: Instant::now(),
        });
        if observed.renew_time != renew_time {
            observed.renew_time = renew_time;
            observed.at = Instant::now();
        }
    }

    /// How long since the node last showed life: its Lease renewed, or (without a Lease) its
    /// creation or this controller's start, whichever is later.
    fn silence(&self, node: &Node) -> Duration {
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(observed) = leases.get(&node.name_any()) {
            return observed.at.elapsed();
        }
        let age = node
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| Timestamp::now().duration_since(t.0).try_into().ok())
            .unwrap_or(Duration::ZERO);
        age.min(self.started.elapsed())
    }
}

pub async fn run(client: Client, grace: Duration) {
    let ctx = Arc::new(Context {
        client: client.clone(),
        grace,
        started: Instant::now(),
        leases: Mutex::new(HashMap::new()),
    });
    let observer = ctx.clone();
    Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<Lease>::namespaced(client, LEASE_NAMESPACE),
            watcher::Config::default(),
            move |lease| {
                observer.observe(&lease);
                Some(ObjectRef::<Node>::new(&lease.name_any()))
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, NodeLifecycleError> {
    let name = node.name_any();
    let api: Api<Node> = Api::all(ctx.client.clone());
    let update = |source| NodeLifecycleError::Update {
        node: name.clone(),
        source,
    };
    let silence = ctx.silence(&node);
    let stale = silence > ctx.grace;
    let mut node = (*node).clone();
    if stale && let Some(conditions) = unknown_conditions(&node, Timestamp::now()) {
        info!(node = %name, silent_for = ?silence, "node stopped posting status; marking it Unknown");
        node.status.get_or_insert_default().conditions = Some(conditions);
        node = api
            .replace_status(&name, &PostParams::default(), &node)
            .await
            .map_err(update)?;
    }
    if let Some(taints) = wanted_taints(&node, Timestamp::now()) {
        node.spec.get_or_insert_default().taints = Some(taints);
        api.replace(&name, &PostParams::default(), &node)
            .await
            .map_err(update)?;
    }
    Ok(if stale {
        Action::requeue(ctx.grace)
    } else {
        Action::requeue(ctx.grace - silence + Duration::from_millis(100))
    })
}

fn error_policy(node: Arc<Node>, err: &NodeLifecycleError, _ctx: Arc<Context>) -> Action {
    warn!(node = %node.name_any(), error = %err, "node lifecycle update failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Every condition set to `Unknown`, or `None` if they all are already. A node that never
/// reported Ready gets a Ready condition saying so.
fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_heartbeat_time: node.metadata.creation_timestamp.clone(),
            last_transition_time: Some(Time(now)),
        });
        changed = true;
    }
    for c in conditions.iter_mut().filter(|c| c.status != "Unknown") {
        c.status = "Unknown".into();
        c.reason = Some("NodeStatusUnknown".into());
        c.message = Some("Kubelet stopped posting node status.".into());
        c.last_transition_time = Some(Time(now));
        changed = true;
    }
    changed.then_some(conditions)
}

/// The node's taints with `unreachable`/`not-ready` matching its Ready condition, or `None`
/// if they already do.
fn wanted_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let wanted = match ready {
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        Some("False") => Some(NOT_READY_TAINT),
        _ => None,
    };
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let managed = |t: &Taint| t.key == UNREACHABLE_TAINT || t.key == NOT_READY_TAINT;
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || Some(t.key.as_str()) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in EFFECTS {
            if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                taints.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    (taints != current).then_some(taints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn node(ready: Option<&str>, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|status| {
                    vec![
                        NodeCondition {
                            type_: "Ready".into(),
                            status: status.into(),
                            reason: Some("KubeletReady".into()),
                            ..Default::default()
                        },
                        NodeCondition {
                            type_: "MemoryPressure".into(),
                            status: "False".into(),
                            ..Default::default()
                        },
                    ]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn stale_node_reports_every_condition_unknown_once() {
        let now = Timestamp::now();
        let marked = unknown_conditions(&node(Some("True"), vec![]), now).expect("changed");
        assert!(marked.iter().all(|c| c.status == "Unknown"));
        assert_eq!(marked[0].reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            marked[0].message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let mut again = node(None, vec![]);
        again.status.get_or_insert_default().conditions = Some(marked);
        assert_eq!(unknown_conditions(&again, now), None, "already Unknown");

        let never = unknown_conditions(&node(None, vec![]), now).expect("changed");
        assert_eq!(never[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(
            never[0].message.as_deref(),
            Some("Kubelet never posted node status.")
        );
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = Timestamp::now();
        let keys = |t: Option<Vec<Taint>>| {
            t.map(|t| {
                t.into_iter()
                    .map(|t| format!("{}:{}", t.key, t.effect))
                    .collect::<Vec<_>>()
            })
        };
        let user = taint("dedicated", "NoSchedule");
        assert_eq!(
            keys(wanted_taints(
                &node(Some("Unknown"), vec![user.clone()]),
                now
            )),
            Some(vec![
                "dedicated:NoSchedule".to_string(),
                format!("{UNREACHABLE_TAINT}:NoSchedule"),
                format!("{UNREACHABLE_TAINT}:NoExecute"),
            ])
        );
        let unreachable = vec![
            user.clone(),
            taint(UNREACHABLE_TAINT, "NoSchedule"),
            taint(UNREACHABLE_TAINT, "NoExecute"),
        ];
        assert_eq!(
            wanted_taints(&node(Some("Unknown"), unreachable.clone()), now),
            None
        );
        assert_eq!(
            keys(wanted_taints(&node(Some("True"), unreachable.clone()), now)),
            Some(vec!["dedicated:NoSchedule".to_string()]),
            "Ready again: the taints go, the user's stays"
        );
        assert_eq!(
            keys(wanted_taints(&node(Some("False"), unreachable), now)),
            Some(vec![
                "dedicated:NoSchedule".to_string(),
                format!("{NOT_READY_TAINT}:NoSchedule"),
                format!("{NOT_READY_TAINT}:NoExecute"),
            ])
        );
        assert_eq!(
            wanted_taints(&node(None, vec![]), now),
            None,
            "no Ready yet"
        );
    }
}

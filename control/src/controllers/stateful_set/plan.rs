//! What one pass of the StatefulSet controller does, decided from its pods alone
//! (`updateStatefulSet`): replace failed pods and create missing ones in ordinal order, then
//! delete pods beyond `replicas` from the highest ordinal, then (`RollingUpdate`) delete the
//! highest-ordinal pod at an old revision down to the partition. Under `OrderedReady` each step
//! waits until every pod before it is Running, Ready and available, and a pass takes one step;
//! under `Parallel` creation and deletion do not wait, but updates still go one at a time.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::controllers::pods;

/// What the plan needs of the set.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `OrderedReady`: one step at a time, each after its predecessors are healthy.
    pub monotonic: bool,
    /// `RollingUpdate`'s partition; `None` under `OnDelete`.
    pub partition: Option<i32>,
    pub min_ready: Duration,
    /// The pods have claims of their own.
    pub claims: bool,
    /// `whenScaled: Delete`: a pod's claims go when it is scaled away.
    pub delete_claims_when_scaled: bool,
}

/// The set's pods by place.
#[derive(Debug, Default)]
pub struct Members {
    /// The first ordinal (`spec.ordinals.start`).
    pub start: i32,
    /// Ordinals `start..start + replicas`: the pod of each, if it exists.
    pub replicas: Vec<Option<Arc<Pod>>>,
    /// Pods with ordinals outside that range, highest first.
    pub condemned: Vec<Arc<Pod>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the pod of `ordinal` (its claims first), at the current revision if `current`
    /// (below the partition), else at the update revision.
    Create { ordinal: i32, current: bool },
    /// Delete a failed or finished pod, to be created again.
    Recreate(Arc<Pod>),
    /// Create the claims a pending pod waits for (deleted since it was made).
    CreateClaims(Arc<Pod>),
    /// Make a pod's claims its own, so they are deleted with it (`whenScaled: Delete`).
    HandClaimsTo(Arc<Pod>),
    /// Delete a pod beyond `replicas`.
    ScaleDown(Arc<Pod>),
    /// Delete a pod at an old revision, to be created at the update revision.
    Update(Arc<Pod>),
}

#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// A pod the next step waits for becomes available after this long.
    pub wake: Option<Duration>,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pods::is_ready(pod)
}

pub fn is_running_and_available(pod: &Pod, min_ready: Duration, now: Timestamp) -> bool {
    phase(pod) == "Running" && pods::is_available(pod, min_ready, now)
}

/// Running, ready and not being deleted.
fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !deleting(pod)
}

impl Members {
    /// This pass's steps. `update_revision` names the revision pods should be at.
    pub fn plan(
        &self,
        policy: &Policy,
        ordinal_of: impl Fn(&Pod) -> Option<i32>,
        update_revision: &str,
        revision_of: impl Fn(&Pod) -> Option<&str>,
        now: Timestamp,
    ) -> Plan {
        let mut plan = Plan::default();
        let monotonic = policy.monotonic;
        let available = |p: &Pod| is_running_and_available(p, policy.min_ready, now);
        let waiting = |plan: &mut Plan, pod: &Pod| {
            plan.wake = pods::until_available(pod, policy.min_ready, now);
        };
        // The lowest ordinal that is missing or unhealthy may be scaled down before it is
        // healthy; any other must wait for it.
        let first_unhealthy = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, p)| p.as_deref().is_none_or(|p| !is_healthy(p)))
            .map(|(i, _)| self.start + i as i32)
            .chain(
                self.condemned
                    .iter()
                    .filter(|p| !is_healthy(p))
                    .filter_map(|p| ordinal_of(p)),
            )
            .min();

        for (i, slot) in self.replicas.iter().enumerate() {
            let ordinal = self.start + i as i32;
            let Some(pod) = slot else {
                let current = policy.partition.is_some_and(|p| (i as i32) < p);
                plan.steps.push(Step::Create { ordinal, current });
                if monotonic {
                    return plan;
                }
                continue;
            };
            if matches!(phase(pod), "Failed" | "Succeeded") {
                if !deleting(pod) {
                    plan.steps.push(Step::Recreate(pod.clone()));
                }
                if monotonic {
                    return plan;
                }
                continue;
            }
            if phase(pod) == "Pending" && policy.claims {
                plan.steps.push(Step::CreateClaims(pod.clone()));
            }
            if monotonic && (deleting(pod) || !is_running_and_ready(pod)) {
                return plan;
            }
            if monotonic && !available(pod) {
                waiting(&mut plan, pod);
                return plan;
            }
        }

        if policy.claims && policy.delete_claims_when_scaled {
            plan.steps.extend(
                self.condemned
                    .iter()
                    .filter(|p| !deleting(p))
                    .map(|p| Step::HandClaimsTo(p.clone())),
            );
        }
        for pod in &self.condemned {
            if deleting(pod) {
                if monotonic {
                    return plan;
                }
                continue;
            }
            let first = ordinal_of(pod) == first_unhealthy;
            if monotonic && !first && !is_running_and_ready(pod) {
                return plan;
            }
            if monotonic && !first && !available(pod) {
                waiting(&mut plan, pod);
                return plan;
            }
            plan.steps.push(Step::ScaleDown(pod.clone()));
            if monotonic {
                return plan;
            }
        }

        let Some(partition) = policy.partition else {
            return plan;
        };
        let lowest = partition.max(0) as usize;
        for slot in self.replicas.iter().skip(lowest).rev() {
            let Some(pod) = slot else { return plan };
            if revision_of(pod) != Some(update_revision) && !deleting(pod) {
                plan.steps.push(Step::Update(pod.clone()));
                return plan;
            }
            if !is_healthy(pod) {
                return plan;
            }
        }
        plan
    }
}

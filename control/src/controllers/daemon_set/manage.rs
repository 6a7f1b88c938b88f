//! The DaemonSet's core loop (`manage`, `podsShouldBeOnNode`) and its status
//! (`updateDaemonSetStatus`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::daemon::Daemon;
use crate::controllers::pods;
use crate::scheduler::cache::NodeInfo;

/// What one pass decides: pods to create on nodes, pods to delete, failed pods to replace (each
/// with its node, subject to back-off) and pods on nodes that are gone.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    pub failed: Vec<(Arc<Pod>, String)>,
    pub gone: Vec<Arc<Pod>>,
}

impl Daemon {
    /// The core loop (`manage` and `podsShouldBeOnNode`): a pod where one is missing, none
    /// where none belongs, failed and finished ones replaced, and with surge off, one per node.
    pub(super) fn manage(
        &self,
        nodes: &[NodeInfo],
        by_node: &HashMap<String, Vec<Arc<Pod>>>,
    ) -> Plan {
        let mut plan = Plan::default();
        let surge = self.surge(1) > 0;
        for node in nodes {
            let placement = self.placement(node);
            let pods = by_node
                .get(&node.name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if placement.should_run && pods.is_empty() {
                plan.create.push(node.name.clone());
            } else if placement.may_stay {
                let mut running = Vec::new();
                for pod in pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                        Some("Failed") => plan.failed.push((pod.clone(), node.name.clone())),
                        Some("Succeeded") => plan.delete.push(pod.clone()),
                        _ => running.push(pod.clone()),
                    }
                }
                if !surge {
                    // The oldest stays.
                    plan.delete.extend(running.into_iter().skip(1));
                } else if running.is_empty() {
                    if placement.should_run {
                        plan.create.push(node.name.clone());
                    }
                } else {
                    plan.delete.extend(self.surplus_while_surging(&running));
                }
            } else {
                plan.delete.extend(
                    pods.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .cloned(),
                );
            }
        }
        let known: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        plan.gone = by_node
            .iter()
            .filter(|(node, _)| !known.contains(node.as_str()))
            .flat_map(|(_, pods)| pods.iter().cloned())
            .collect();
        plan
    }

    /// With surge, a node keeps at most its oldest updated pod and its oldest old one, and the
    /// old one only while it is ready and the updated one is not yet available.
    fn surplus_while_surging(&self, running: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
        let now = Timestamp::now();
        let mut surplus = Vec::new();
        let (mut oldest_new, mut oldest_old) = (None, None);
        for pod in running {
            let slot = if self.is_updated(pod) {
                &mut oldest_new
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(pod.clone());
            } else {
                surplus.push(pod.clone());
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old)
            && (!pods::is_ready(&old) || pods::is_available(&new, self.min_ready, now))
        {
            surplus.push(old);
        }
        surplus
    }

    /// `updateDaemonSetStatus`: per node that wants a pod, whether it has one and whether its
    /// oldest is ready, available and updated; pods on nodes that do not want one are
    /// misscheduled. `observedGeneration` moves only once the controller acted on it.
    pub(super) fn status(
        &self,
        ds: &DaemonSet,
        nodes: &[NodeInfo],
        by_node: &HashMap<String, Vec<Arc<Pod>>>,
        observed: bool,
        collision_count: Option<i32>,
        now: Timestamp,
    ) -> DaemonSetStatus {
        let previous = ds.status.clone().unwrap_or_default();
        let mut status = DaemonSetStatus {
            observed_generation: if observed {
                ds.metadata.generation
            } else {
                previous.observed_generation
            },
            collision_count,
            conditions: previous.conditions,
            ..DaemonSetStatus::default()
        };
        let (mut ready, mut available, mut updated) = (0, 0, 0);
        for node in nodes {
            let oldest = by_node.get(&node.name).and_then(|pods| pods.first());
            if self.placement(node).should_run {
                status.desired_number_scheduled += 1;
                let Some(pod) = oldest else { continue };
                status.current_number_scheduled += 1;
                if pods::is_ready(pod) {
                    ready += 1;
                    if pods::is_available(pod, self.min_ready, now) {
                        available += 1;
                    }
                }
                if self.is_updated(pod) {
                    updated += 1;
                }
            } else if oldest.is_some() {
                status.number_misscheduled += 1;
            }
        }
        status.number_ready = ready;
        status.number_available = Some(available);
        status.number_unavailable = Some(status.desired_number_scheduled - available);
        status.updated_number_scheduled = Some(updated);
        status
    }
}

//! The DaemonSet `RollingUpdate` (`pkg/controller/daemon/update.go`): without surge, old pods are
//! deleted while fewer than `maxUnavailable` nodes lack an available pod, and the core loop puts
//! updated ones in their place; with `maxSurge`, an updated pod is first added beside the old one
//! on up to `maxSurge` nodes, and the old one goes once the new one is available. Both counts are
//! of the nodes that want a pod, percentages rounded up.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::daemon::Daemon;
use super::manage::Plan;
use crate::controllers::pods;
use crate::scheduler::cache::NodeInfo;

/// A node's updated pod and old pod, either possibly absent.
type Split = (Option<Arc<Pod>>, Option<Arc<Pod>>);

impl Daemon {
    /// The pods to delete (and, with surge, the nodes to add an updated pod to) in this step of
    /// the update. `by_node` is [`super::by_node`]'s map of the claimed pods.
    pub(super) fn rolling_update(
        &self,
        nodes: &[NodeInfo],
        mut by_node: HashMap<String, Vec<Arc<Pod>>>,
        now: Timestamp,
    ) -> Plan {
        // Nodes that want a pod and have none count as unavailable too.
        let mut desired = 0;
        for node in nodes {
            if self.placement(node).should_run {
                desired += 1;
                by_node.entry(node.name.clone()).or_default();
            }
        }
        let (mut surge, mut unavailable) = (self.surge(desired), self.unavailable(desired));
        if desired > 0 && surge == 0 && unavailable == 0 {
            // Validation refuses both zero; should they be, the update still moves.
            unavailable = 1;
        }
        surge = surge.max(0);
        let available = |p: &Pod| pods::is_available(p, self.min_ready, now);
        let mut names: Vec<&String> = by_node.keys().collect();
        // Map order would make which node goes first random from one pass to the next.
        names.sort();
        if surge == 0 {
            self.replace(&names, &by_node, unavailable, &available)
        } else {
            self.surge_onto(nodes, &names, &by_node, surge, desired, &available)
        }
    }

    /// Without surge: delete just enough old pods to stay within `max_unavailable`.
    fn replace(
        &self,
        names: &[&String],
        by_node: &HashMap<String, Vec<Arc<Pod>>>,
        max_unavailable: i32,
        available: &dyn Fn(&Pod) -> bool,
    ) -> Plan {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for name in names {
            let Some((new, old)) = self.split(&by_node[*name]) else {
                // The core loop prunes the excess first.
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(&old) {
                        // An old pod that is down anyway is replaced at no cost.
                        replace.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        replace.extend(candidates.into_iter().take(room));
        Plan {
            delete: replace,
            ..Plan::default()
        }
    }

    /// With surge: add updated pods beside old ones on up to `max_surge` nodes, and delete old
    /// pods whose replacement is available.
    fn surge_onto(
        &self,
        nodes: &[NodeInfo],
        names: &[&String],
        by_node: &HashMap<String, Vec<Arc<Pod>>>,
        max_surge: i32,
        desired: i32,
        available: &dyn Fn(&Pod) -> bool,
    ) -> Plan {
        let should_run = |name: &str| {
            nodes
                .iter()
                .find(|n| n.name == name)
                .is_some_and(|n| self.placement(n).should_run)
        };
        let mut plan = Plan::default();
        let mut surging = 0;
        let mut available_count = 0;
        let mut allowed = Vec::new();
        let mut candidates = Vec::new();
        // Old pods on nodes that no longer want one go once enough others are available.
        let mut unwanted = Vec::new();
        for name in names {
            let Some((new, old)) = self.split(&by_node[*name]) else {
                surging += 1;
                continue;
            };
            if old.as_deref().or(new.as_deref()).is_some_and(available) {
                available_count += 1;
            }
            match (new, old) {
                (_, None) => {}
                (None, Some(old)) if !available(&old) => {
                    if should_run(name) {
                        allowed.push((*name).clone());
                    } else {
                        plan.delete.push(old);
                    }
                }
                (None, Some(old)) => {
                    if !should_run(name) {
                        unwanted.push(old);
                    } else if surging < max_surge {
                        candidates.push((*name).clone());
                    }
                }
                (Some(new), Some(old)) => {
                    if available(&new) {
                        plan.delete.push(old);
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        let deletable = (available_count - desired).clamp(0, unwanted.len() as i32) as usize;
        plan.delete.extend(unwanted.into_iter().take(deletable));
        let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
        plan.create = allowed;
        plan.create.extend(candidates.into_iter().take(room));
        plan
    }

    /// A node's live pods as (updated, old), at most one of each (`findUpdatedPodsOnNode`);
    /// `None` when there are more, which the core loop prunes first.
    fn split(&self, pods: &[Arc<Pod>]) -> Option<Split> {
        let (mut new, mut old) = (None, None);
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let slot = if self.is_updated(pod) {
                &mut new
            } else {
                &mut old
            };
            if slot.replace(pod.clone()).is_some() {
                return None;
            }
        }
        Some((new, old))
    }
}

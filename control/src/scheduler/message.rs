//! The words of an unschedulable pod's `PodScheduled` condition and `FailedScheduling` Event,
//! exactly as kube-scheduler 1.33 writes them (`framework.FitError.Error()`): a sorted histogram
//! of the filters' reasons, then the preemption attempt's own histogram. Nothing is preempted
//! here, so a resource shortage reads "No preemption victims found for incoming pod" (every pod
//! has the same priority) and any other rejection "Preemption is not helpful for scheduling".

use std::collections::BTreeMap;

use super::filters::Reason;

/// `ErrNoNodesAvailable`.
pub const NO_NODES: &str = "no nodes available to schedule pods";

const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// "3 Insufficient cpu, 1 node(s) were unschedulable": counts first, sorted as strings, the
/// way kube-scheduler sorts them.
fn histogram<'a>(reasons: impl Iterator<Item = String> + 'a) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

fn with_preemption(total: usize, filters: &str, preemption: &str) -> String {
    format!(
        "0/{total} nodes are available: {filters}. preemption: 0/{total} nodes are available: {preemption}.."
    )
}

/// Every node rejected the pod; `rejections` holds each node's reasons.
pub fn fit_error(rejections: &[Vec<Reason>]) -> String {
    let filters = histogram(rejections.iter().flatten().map(Reason::message));
    let preemption = histogram(rejections.iter().map(|reasons| {
        if reasons.iter().any(Reason::preemption_might_help) {
            NO_VICTIMS.to_string()
        } else {
            NOT_HELPFUL.to_string()
        }
    }));
    with_preemption(rejections.len(), &filters, &preemption)
}

/// The pod was rejected before any node was looked at (kube-scheduler's PreFilter), for
/// `why` on all `total` nodes.
pub fn pre_filter_error(total: usize, why: &str) -> String {
    let preemption = format!("{total} {NOT_HELPFUL}");
    with_preemption(total, why, &preemption)
}

/// `why` for a RuntimeClass that does not exist, in the API's NotFound wording.
pub fn runtime_class_not_found(name: &str) -> String {
    format!("runtimeclass.node.k8s.io \"{name}\" not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_short_of_cpu() {
        assert_eq!(
            fit_error(&[vec![Reason::InsufficientCpu]]),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
             1 No preemption victims found for incoming pod.."
        );
    }

    #[test]
    fn mixed_reasons_are_counted_and_sorted_like_kube_scheduler() {
        let taint = Reason::UntoleratedTaint {
            key: "k".into(),
            value: "v".into(),
        };
        let msg = fit_error(&[
            vec![Reason::InsufficientCpu],
            vec![Reason::NodeAffinity],
            vec![taint],
            vec![Reason::Unschedulable],
            vec![Reason::NodeAffinity],
        ]);
        assert_eq!(
            msg,
            "0/5 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: v}, \
             1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/5 nodes are available: 1 No preemption victims found for incoming pod, \
             4 Preemption is not helpful for scheduling.."
        );
    }

    #[test]
    fn one_node_with_two_shortages_counts_each() {
        let msg = fit_error(&[vec![Reason::InsufficientCpu, Reason::InsufficientMemory]]);
        assert!(
            msg.starts_with("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."),
            "{msg}"
        );
        assert!(
            msg.ends_with("1 No preemption victims found for incoming pod.."),
            "{msg}"
        );
    }

    #[test]
    fn missing_runtime_class_rejects_every_node_at_once() {
        assert_eq!(
            pre_filter_error(3, &runtime_class_not_found("gvisor")),
            "0/3 nodes are available: runtimeclass.node.k8s.io \"gvisor\" not found. preemption: \
             0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
    }

    #[test]
    fn runtime_handler_reason_names_the_handler() {
        assert_eq!(
            fit_error(&[vec![Reason::RuntimeHandler("wasmtime".into())]]),
            "0/1 nodes are available: 1 node(s) didn't support runtime handler \"wasmtime\". \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
        );
    }
}

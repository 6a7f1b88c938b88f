//! One reconcile's view of a DaemonSet ([`Daemon`]): which nodes want its pod
//! (`NodeShouldRunDaemonPod`), the pod it puts on a node (`CreatePodTemplate`, with the
//! tolerations every daemon pod gets and the node affinity that pins it), its rolling-update
//! bounds, and its pods grouped by node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::template;
use crate::controllers::deployment::scaled_value;
use crate::controllers::history::REVISION_HASH_LABEL;
use crate::controllers::pods;
use crate::scheduler::cache::NodeInfo;
use crate::scheduler::filters::PodFacts;

/// The legacy label with the DaemonSet generation a pod was made at.
pub(super) const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
const NODE_NAME_FIELD: &str = "metadata.name";

/// What `AddOrUpdateDaemonPodTolerations` adds to every daemon pod: it stays on a node that is
/// not ready or unreachable, and lands on nodes under pressure or cordoned; the last only for
/// `hostNetwork` pods, which need no pod network.
const DAEMON_TOLERATIONS: [(&str, &str); 7] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ("node.kubernetes.io/network-unavailable", "NoSchedule"),
];

/// Adds the [`DAEMON_TOLERATIONS`] the pod lacks (`AddOrUpdateDaemonPodTolerations`).
pub(super) fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let count = if host_network {
        DAEMON_TOLERATIONS.len()
    } else {
        DAEMON_TOLERATIONS.len() - 1
    };
    for (key, effect) in &DAEMON_TOLERATIONS[..count] {
        let toleration = Toleration {
            key: Some(key.to_string()),
            operator: Some("Exists".into()),
            effect: Some(effect.to_string()),
            ..Toleration::default()
        };
        if !tolerations.iter().any(|t| {
            t.key == toleration.key
                && t.effect == toleration.effect
                && t.operator == toleration.operator
                && t.value.as_deref().unwrap_or("").is_empty()
        }) {
            tolerations.push(toleration);
        }
    }
}

/// Makes the pod's required node affinity select `node` alone
/// (`ReplaceDaemonSetPodNodeNameNodeAffinity`): the controller has already checked the
/// template's own terms against it.
pub(super) fn place_on(spec: &mut PodSpec, node: &str) {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
}

/// The node a daemon pod is on or is meant for (`GetTargetNodeName`).
pub(super) fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([node]) => Some(node.as_str()),
            _ => None,
        })
}

/// The owned pods by target node, scheduled first then oldest first on each
/// (`podByCreationTimestampAndPhase`); a deleted pod that has finished is no longer counted.
pub(super) fn by_node(owned: &[Arc<Pod>]) -> HashMap<String, Vec<Arc<Pod>>> {
    let mut nodes: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in owned {
        if pod.metadata.deletion_timestamp.is_some() && pods::is_terminal(pod) {
            continue;
        }
        if let Some(node) = target_node(pod) {
            nodes.entry(node.to_string()).or_default().push(pod.clone());
        }
    }
    for pods in nodes.values_mut() {
        pods.sort_by(|a, b| oldest_first(a, b));
    }
    nodes
}

fn oldest_first(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(b)
        .cmp(&scheduled(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Whether a daemon pod belongs on a node (`NodeShouldRunDaemonPod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placement {
    /// A pod should run there.
    pub should_run: bool,
    /// A pod already there may stay: it tolerates the node's NoExecute taints.
    pub may_stay: bool,
}

/// One reconcile's view of a DaemonSet.
pub(super) struct Daemon {
    /// The current revision's hash.
    pub hash: String,
    /// The template as a pod on any node would be, with the daemon tolerations.
    pub facts: PodFacts,
    /// The template's `nodeName`, if set: only that node is eligible.
    pub node_name: Option<String>,
    pub min_ready: Duration,
    /// `RollingUpdate`'s `(maxSurge, maxUnavailable)`; `None` under `OnDelete`.
    pub rolling: Option<(Option<IntOrString>, Option<IntOrString>)>,
}

impl Daemon {
    pub(super) fn new(ds: &DaemonSet, hash: String) -> Daemon {
        let spec = ds.spec.as_ref();
        let mut pod_spec = template(ds).spec.unwrap_or_default();
        add_daemon_tolerations(&mut pod_spec);
        // Eligibility is about nodes, not runtimes (Kubernetes' predicates ignore the class).
        pod_spec.runtime_class_name = None;
        let pod = Pod {
            spec: Some(pod_spec),
            ..Pod::default()
        };
        let strategy = spec.and_then(|s| s.update_strategy.as_ref());
        let rolling = match strategy.and_then(|s| s.type_.as_deref()) {
            Some("OnDelete") => None,
            _ => {
                let ru = strategy.and_then(|s| s.rolling_update.as_ref());
                Some((
                    ru.and_then(|r| r.max_surge.clone()),
                    ru.and_then(|r| r.max_unavailable.clone()),
                ))
            }
        };
        Daemon {
            hash,
            facts: PodFacts::new(&pod, &HashMap::new()).unwrap_or_default(),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            min_ready: Duration::from_secs(
                spec.and_then(|s| s.min_ready_seconds).unwrap_or(0).max(0) as u64,
            ),
            rolling,
        }
    }

    pub(super) fn placement(&self, node: &NodeInfo) -> Placement {
        let nowhere = Placement {
            should_run: false,
            may_stay: false,
        };
        if self.node_name.as_ref().is_some_and(|n| *n != node.name)
            || !self.facts.matches_node(node)
        {
            return nowhere;
        }
        // NodeInfo keeps only NoSchedule and NoExecute taints.
        let mut untolerated = node.taints.iter().filter(|t| !self.facts.tolerates(t));
        match untolerated.next() {
            None => Placement {
                should_run: true,
                may_stay: true,
            },
            Some(first) => Placement {
                should_run: false,
                may_stay: std::iter::once(first)
                    .chain(untolerated)
                    .all(|t| t.effect != "NoExecute"),
            },
        }
    }

    pub(super) fn is_updated(&self, pod: &Pod) -> bool {
        !self.hash.is_empty() && pod.labels().get(REVISION_HASH_LABEL) == Some(&self.hash)
    }

    /// `maxSurge` resolved against `desired` nodes, rounded up; 0 under `OnDelete`.
    pub(super) fn surge(&self, desired: i32) -> i32 {
        self.rolling
            .as_ref()
            .map_or(0, |(surge, _)| scaled_value(surge.as_ref(), desired, true))
    }

    /// `maxUnavailable` resolved against `desired` nodes, rounded up; 0 under `OnDelete`.
    pub(super) fn unavailable(&self, desired: i32) -> i32 {
        self.rolling.as_ref().map_or(0, |(_, unavailable)| {
            scaled_value(unavailable.as_ref(), desired, true)
        })
    }

    /// The pod template with the daemon tolerations and the revision's labels
    /// (`CreatePodTemplate`).
    pub(super) fn pod_template(&self, ds: &DaemonSet) -> PodTemplateSpec {
        let mut template = template(ds);
        add_daemon_tolerations(template.spec.get_or_insert_with(PodSpec::default));
        let labels = template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default);
        labels.insert(
            TEMPLATE_GENERATION_LABEL.into(),
            ds.metadata.generation.unwrap_or(1).to_string(),
        );
        labels.insert(REVISION_HASH_LABEL.into(), self.hash.clone());
        template
    }
}

//! The scheduler's filters, in kube-scheduler's plugin order: NodeUnschedulable, TaintToleration,
//! NodeAffinity (nodeSelector and required node affinity), the runtime handler, NodeResourcesFit,
//! VolumeBinding ([`super::volumes`]).
//! [`PodFacts`] is what one scheduling attempt needs from a Pod (and its RuntimeClass), computed
//! once per attempt so that checking a node is a few comparisons.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, NodeSelectorRequirement, NodeSelectorTerm, Pod, ResourceRequirements, Taint,
    Toleration,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use skiff_api::quantity::Quantity;

use super::cache::{NodeInfo, Usage};
use super::volumes::ClaimFacts;

/// Taint key that `kubectl cordon` stands for: tolerating it lets a pod onto a cordoned node.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Requests in the scheduler's units: millicores and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Resources {
    pub fn add(&mut self, other: Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
    }

    pub fn sub(&mut self, other: Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
    }

    fn max(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
        }
    }
}

/// Kubernetes' defaults for a container that requests nothing, used only for scoring
/// (`schedutil.DefaultMilliCPURequest`, `DefaultMemoryRequest`) so that request-less pods spread.
const NONZERO_DEFAULT: Resources = Resources {
    milli_cpu: 100,
    memory: 200 * 1024 * 1024,
};

/// A pod's effective request: the larger of its containers' sum and its largest init
/// container, plus `spec.overhead`. `nonzero` is the same with [`NONZERO_DEFAULT`] for what a
/// container leaves unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub exact: Resources,
    pub nonzero: Resources,
}

fn quantity(q: Option<&K8sQuantity>, milli: bool) -> Option<i64> {
    let q: Quantity = q?.0.parse().ok()?;
    let v = if milli { q.as_millis() } else { q.as_bytes() };
    Some(i64::try_from(v).unwrap_or(i64::MAX))
}

fn container_requests(c: &Container) -> PodRequests {
    let requests = c
        .resources
        .as_ref()
        .and_then(|r: &ResourceRequirements| r.requests.as_ref());
    let cpu = quantity(requests.and_then(|r| r.get("cpu")), true);
    let memory = quantity(requests.and_then(|r| r.get("memory")), false);
    PodRequests {
        exact: Resources {
            milli_cpu: cpu.unwrap_or(0),
            memory: memory.unwrap_or(0),
        },
        nonzero: Resources {
            milli_cpu: cpu.unwrap_or(NONZERO_DEFAULT.milli_cpu),
            memory: memory.unwrap_or(NONZERO_DEFAULT.memory),
        },
    }
}

pub fn pod_requests(pod: &Pod) -> PodRequests {
    let Some(spec) = pod.spec.as_ref() else {
        return PodRequests::default();
    };
    let mut total = PodRequests::default();
    for c in &spec.containers {
        let r = container_requests(c);
        total.exact.add(r.exact);
        total.nonzero.add(r.nonzero);
    }
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        total.exact = total.exact.max(r.exact);
        total.nonzero = total.nonzero.max(r.nonzero);
    }
    if let Some(overhead) = spec.overhead.as_ref() {
        let o = Resources {
            milli_cpu: quantity(overhead.get("cpu"), true).unwrap_or(0),
            memory: quantity(overhead.get("memory"), false).unwrap_or(0),
        };
        total.exact.add(o);
        total.nonzero.add(o);
    }
    total
}

/// Why one node cannot take the pod, worded as kube-scheduler's filter plugins word it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Unschedulable,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    RuntimeHandler(String),
    TooManyPods,
    InsufficientCpu,
    InsufficientMemory,
    /// A bound claim's volume is missing.
    VolumeMissing,
    /// A bound claim's volume (or a claim's selected node) is elsewhere.
    VolumeNodeConflict,
    /// A waiting claim has no volume to bind here and no class that provisions.
    VolumeBindConflict,
}

impl Reason {
    pub fn message(&self) -> String {
        match self {
            Reason::Unschedulable => "node(s) were unschedulable".into(),
            Reason::UntoleratedTaint { key, value } => {
                format!("node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Reason::RuntimeHandler(h) => format!("node(s) didn't support runtime handler \"{h}\""),
            Reason::TooManyPods => "Too many pods".into(),
            Reason::InsufficientCpu => "Insufficient cpu".into(),
            Reason::InsufficientMemory => "Insufficient memory".into(),
            Reason::VolumeMissing => {
                "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)".into()
            }
            Reason::VolumeNodeConflict => "node(s) had volume node affinity conflict".into(),
            Reason::VolumeBindConflict => {
                "node(s) didn't find available persistent volumes to bind".into()
            }
        }
    }

    /// Whether evicting pods could make room (kube-scheduler's `Unschedulable` as opposed to
    /// `UnschedulableAndUnresolvable`); only resource shortages qualify.
    pub fn preemption_might_help(&self) -> bool {
        matches!(
            self,
            Reason::TooManyPods | Reason::InsufficientCpu | Reason::InsufficientMemory
        )
    }
}

/// What a scheduling attempt needs from a Pod, with its RuntimeClass's `scheduling` merged in
/// as the RuntimeClass admission plugin merges it.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub requests: PodRequests,
    pub node_selector: BTreeMap<String, String>,
    /// `None`: no required node affinity. `Some(terms)`: any term must match.
    pub required_terms: Option<Vec<NodeSelectorTerm>>,
    pub tolerations: Vec<Toleration>,
    pub runtime_handler: Option<String>,
    /// The controller owner's uid: pods of one ReplicaSet spread across nodes.
    pub owner: Option<String>,
    /// What the pod's claims ask of a node (set by the scheduler after [`PodFacts::new`], from
    /// its storage cache); `None` for a pod without claims.
    pub claims: Option<ClaimFacts>,
}

/// A RuntimeClass the pod names but the cluster lacks: every node is rejected at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRuntimeClass(pub String);

impl PodFacts {
    pub fn new(
        pod: &Pod,
        runtime_classes: &HashMap<String, RuntimeClass>,
    ) -> Result<PodFacts, MissingRuntimeClass> {
        // Only the fields filters read are copied: a whole PodSpec per attempt would cost more
        // than the filtering.
        let spec = pod.spec.as_ref();
        let mut facts = PodFacts {
            requests: pod_requests(pod),
            node_selector: spec
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default(),
            required_terms: spec
                .and_then(|s| s.affinity.as_ref()?.node_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|s| s.node_selector_terms.clone()),
            tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
            runtime_handler: None,
            owner: pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            claims: None,
        };
        if let Some(name) = spec
            .and_then(|s| s.runtime_class_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            let rc = runtime_classes
                .get(name)
                .ok_or_else(|| MissingRuntimeClass(name.to_string()))?;
            if let Some(scheduling) = &rc.scheduling {
                facts
                    .node_selector
                    .extend(scheduling.node_selector.clone().unwrap_or_default());
                facts
                    .tolerations
                    .extend(scheduling.tolerations.clone().unwrap_or_default());
            }
            facts.runtime_handler = Some(rc.handler.clone());
        }
        Ok(facts)
    }

    /// Every filter in order; the first failing filter's reasons, as kube-scheduler stops at
    /// the first plugin that rejects a node. VolumeBinding comes after NodeResourcesFit.
    pub fn filter(&self, node: &NodeInfo, usage: &Usage) -> Result<(), Vec<Reason>> {
        self.fits_without_volumes(node, usage)?;
        match &self.claims {
            Some(claims) => claims.filter(node),
            None => Ok(()),
        }
    }

    fn fits_without_volumes(&self, node: &NodeInfo, usage: &Usage) -> Result<(), Vec<Reason>> {
        if node.unschedulable && !self.tolerates_unschedulable() {
            return Err(vec![Reason::Unschedulable]);
        }
        if let Some(taint) = node.taints.iter().find(|t| !self.tolerates(t)) {
            return Err(vec![Reason::UntoleratedTaint {
                key: taint.key.clone(),
                value: taint.value.clone().unwrap_or_default(),
            }]);
        }
        if !self.matches_node(node) {
            return Err(vec![Reason::NodeAffinity]);
        }
        if let Some(handler) = &self.runtime_handler
            && !node.runtime_handlers.iter().any(|h| h == handler)
        {
            return Err(vec![Reason::RuntimeHandler(handler.clone())]);
        }
        self.fits(node, usage)
    }

    /// Whether a toleration of the pod tolerates `taint` (the DaemonSet controller asks too).
    pub fn tolerates(&self, taint: &Taint) -> bool {
        self.tolerations.iter().any(|t| tolerates(t, taint))
    }

    fn tolerates_unschedulable(&self) -> bool {
        self.tolerates(&Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        })
    }

    /// The node selector and the required node affinity (the DaemonSet controller asks too).
    pub fn matches_node(&self, node: &NodeInfo) -> bool {
        let selector_ok = self
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v));
        selector_ok
            && self
                .required_terms
                .as_ref()
                .is_none_or(|terms| any_term_matches(terms, node))
    }

    fn fits(&self, node: &NodeInfo, usage: &Usage) -> Result<(), Vec<Reason>> {
        let mut reasons = Vec::new();
        if usage.pods + 1 > node.allocatable_pods {
            reasons.push(Reason::TooManyPods);
        }
        let want = self.requests.exact;
        let free = |alloc: i64, used: i64| alloc - used;
        if want.milli_cpu > 0
            && want.milli_cpu > free(node.allocatable.milli_cpu, usage.requested.milli_cpu)
        {
            reasons.push(Reason::InsufficientCpu);
        }
        if want.memory > 0 && want.memory > free(node.allocatable.memory, usage.requested.memory) {
            reasons.push(Reason::InsufficientMemory);
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// `v1.Toleration.ToleratesTaint`.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let nonempty = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    if nonempty(&t.effect).is_some_and(|e| e != taint.effect) {
        return false;
    }
    if nonempty(&t.key).is_some_and(|k| k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// A required node selector (of a pod's node affinity or a volume's): any term must match.
pub fn any_term_matches(terms: &[NodeSelectorTerm], node: &NodeInfo) -> bool {
    terms.iter().any(|t| term_matches(t, node))
}

/// A node selector term: every expression and field requirement holds. An empty term matches
/// no node, as Kubernetes documents.
fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node.name.as_str())))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [bound]) = (value.and_then(int), values) else {
                return false;
            };
            let Some(bound) = int(bound) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;

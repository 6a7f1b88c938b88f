//! `spec.podFailurePolicy` (`pod_failure_policy.go`): the first rule matching a failed pod decides
//! whether the failure fails the Job, is ignored, or counts towards `backoffLimit`.

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};

/// What a failed pod means to its Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Counts towards `backoffLimit` (no rule matched, or a `Count` rule did).
    Count,
    /// An `Ignore` rule matched: the pod is replaced without counting.
    Ignore,
    /// A `FailJob` rule matched; the message becomes the Job's `Failed` condition.
    FailJob(String),
}

impl Verdict {
    pub fn counts(&self) -> bool {
        !matches!(self, Verdict::Ignore)
    }
}

/// `matchPodFailurePolicy` for a failed pod; with no policy every failure counts.
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let failed_because = if let Some(codes) = &rule.on_exit_codes {
            match matching_container(pod, codes) {
                Some((container, code)) => format!(
                    "Container {container} for pod {namespace}/{name} failed with exit code {code}"
                ),
                None => continue,
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            match matching_condition(pod, patterns) {
                Some(c) => format!("Pod {namespace}/{name} has condition {}", c.type_),
                None => continue,
            }
        } else {
            continue;
        };
        match rule.action.as_str() {
            "Ignore" => return Verdict::Ignore,
            "Count" => return Verdict::Count,
            "FailJob" => {
                return Verdict::FailJob(format!(
                    "{failed_because} matching FailJob rule at index {index}"
                ));
            }
            // FailIndex acts only with backoffLimitPerIndex, which Skiff does not run; like
            // Kubernetes without that feature, the rule is passed over.
            _ => continue,
        }
    }
    Verdict::Count
}

/// The first terminated container (app containers before init containers) whose non-zero exit
/// code the requirement matches, and that code.
fn matching_container<'a>(
    pod: &'a Pod,
    requirement: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(&'a str, i32)> {
    let status = pod.status.as_ref()?;
    let statuses: [&[ContainerStatus]; 2] = [
        status.container_statuses.as_deref().unwrap_or_default(),
        status
            .init_container_statuses
            .as_deref()
            .unwrap_or_default(),
    ];
    statuses.into_iter().flatten().find_map(|c| {
        let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
        let named = requirement
            .container_name
            .as_ref()
            .is_none_or(|n| *n == c.name);
        let listed = requirement.values.contains(&code);
        let matched = match requirement.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        (named && code != 0 && matched).then_some((c.name.as_str(), code))
    })
}

fn matching_condition<'a>(
    pod: &'a Pod,
    patterns: &[PodFailurePolicyOnPodConditionsPattern],
) -> Option<&'a PodCondition> {
    let conditions = pod.status.as_ref()?.conditions.as_deref()?;
    conditions.iter().find(|c| {
        patterns
            .iter()
            .any(|p| p.type_ == c.type_ && p.status == c.status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: serde_json::Value) -> Pod {
        let statuses: Vec<_> = exit_codes
            .iter()
            .map(|(name, code)| {
                json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                       "state": {"terminated": {"exitCode": code}}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": statuses, "conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn exit_codes_decide_by_the_first_matching_rule() {
        let p = policy(json!([
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1, 2]}},
            {"action": "Count", "onExitCodes": {"operator": "In", "values": [5]}},
        ]));
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("main", 42)], json!([]))),
            Verdict::Ignore
        );
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("side", 0), ("main", 3)], json!([]))),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 3 matching FailJob rule at index 1"
                    .into()
            )
        );
        // NotIn never matches exit code 0, and a rule for another container does not apply.
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("other", 5)], json!([]))),
            Verdict::Count
        );
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("main", 1)], json!([]))),
            Verdict::Count
        );
        assert_eq!(
            judge(None, &failed_pod(&[("main", 42)], json!([]))),
            Verdict::Count
        );
    }

    #[test]
    fn pod_conditions_match_type_and_status() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]},
        ]));
        let disrupted = failed_pod(&[], json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert!(!judge(Some(&p), &disrupted).counts());
        let not_really = failed_pod(
            &[],
            json!([{"type": "DisruptionTarget", "status": "False"}]),
        );
        assert!(judge(Some(&p), &not_really).counts());
        let broken = failed_pod(&[], json!([{"type": "ConfigIssue", "status": "True"}]));
        assert_eq!(
            judge(Some(&p), &broken),
            Verdict::FailJob(
                "Pod ns/p has condition ConfigIssue matching FailJob rule at index 1".into()
            )
        );
    }
}

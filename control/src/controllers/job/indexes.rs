//! Completion indexes of Indexed Jobs (`indexed_job_utils.go`): which index a pod runs, the
//! compressed ranges `status.completedIndexes` holds ("1,3-5,7"), the lowest indexes still to
//! start, and the index a pod is given (annotation and label, `JOB_COMPLETION_INDEX` in every
//! container, hostname `<job>-<index>`, name `<job>-<index>-…`).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};

/// The annotation (and, since Kubernetes 1.28, label) holding a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// A generated name keeps room for the API server's five random characters.
const MAX_GENERATE_NAME: usize = 63 - 5;

/// A set of indexes as ordered, disjoint, inclusive ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Indexes(BTreeSet<i32>);

impl Indexes {
    /// `status.completedIndexes`; what does not parse or lies outside `[0, completions)` is
    /// dropped, as Kubernetes drops it.
    pub fn parse(text: &str, completions: i32) -> Indexes {
        let mut set = BTreeSet::new();
        for term in text.split(',').filter(|t| !t.is_empty()) {
            let (first, last) = match term.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (term.parse(), term.parse()),
            };
            if let (Ok(first), Ok(last)) = (first, last) {
                set.extend((first.max(0)..=last.min(completions - 1)).filter(|i| *i >= 0));
            }
        }
        Indexes(set)
    }

    pub fn insert(&mut self, index: i32) {
        self.0.insert(index);
    }

    pub fn contains(&self, index: i32) -> bool {
        self.0.contains(&index)
    }

    pub fn total(&self) -> i32 {
        self.0.len() as i32
    }
}

impl fmt::Display for Indexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ranges: Vec<(i32, i32)> = Vec::new();
        for &i in &self.0 {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == i => *last = i,
                _ => ranges.push((i, i)),
            }
        }
        let terms: Vec<String> = ranges
            .into_iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

/// The pod's completion index, from its annotation (or label); `None` when absent or invalid.
pub fn index_of(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|i| *i >= 0)
}

/// Up to `count` of the lowest indexes below `completions` that neither succeeded nor have an
/// active pod (`firstPendingIndexes`).
pub fn first_pending(
    count: usize,
    completions: i32,
    succeeded: &Indexes,
    active: &[Arc<Pod>],
) -> Vec<i32> {
    let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
    (0..completions)
        .filter(|i| !succeeded.contains(*i) && !running.contains(i))
        .take(count)
        .collect()
}

/// Active pods beyond the first of each index, and those without a valid index: they are
/// deleted before any other (`appendDuplicatedIndexPodsForRemoval`).
pub fn duplicates(active: &[Arc<Pod>], completions: i32) -> Vec<Arc<Pod>> {
    let mut seen = BTreeSet::new();
    active
        .iter()
        .filter(|p| match index_of(p) {
            Some(i) if i < completions => !seen.insert(i),
            _ => true,
        })
        .cloned()
        .collect()
}

/// Gives a pod made from the Job's template its completion `index`.
pub fn assign(pod: &mut Pod, job_name: &str, index: i32) {
    let value = index.to_string();
    let meta = &mut pod.metadata;
    meta.annotations
        .get_or_insert_default()
        .insert(COMPLETION_INDEX.into(), value.clone());
    meta.labels
        .get_or_insert_default()
        .insert(COMPLETION_INDEX.into(), value);
    meta.generate_name = Some(generate_name(job_name, index));
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            let env = c.env.get_or_insert_default();
            if !env.iter().any(|e| e.name == INDEX_ENV) {
                env.push(index_env());
            }
        }
    }
}

/// The variable reads the annotation, so it cannot disagree with it.
fn index_env() -> EnvVar {
    EnvVar {
        name: INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// `<job>-<index>-`, the job's name shortened if the whole would be too long
/// (`podGenerateNameWithIndex`).
fn generate_name(job_name: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let keep = MAX_GENERATE_NAME
        .saturating_sub(suffix.len())
        .min(job_name.len());
    format!("{}{suffix}", &job_name[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod_with_index(index: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                annotations: Some([(COMPLETION_INDEX.to_string(), index.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        })
    }

    #[test]
    fn completed_indexes_round_trip_as_compressed_ranges() {
        let set = Indexes::parse("1,3-5,7", 10);
        assert_eq!(set.total(), 5);
        assert_eq!(set.to_string(), "1,3-5,7");
        let mut set = Indexes::parse("0-2,9,12,x", 10);
        assert_eq!(
            set.to_string(),
            "0-2,9",
            "out of range and garbage are dropped"
        );
        set.insert(3);
        assert_eq!(set.to_string(), "0-3,9");
        assert_eq!(Indexes::parse("", 3).to_string(), "");
    }

    #[test]
    fn pending_indexes_skip_succeeded_and_running_ones() {
        let succeeded = Indexes::parse("0,2", 6);
        let active = vec![pod_with_index("1"), pod_with_index("4")];
        assert_eq!(first_pending(2, 6, &succeeded, &active), vec![3, 5]);
        assert_eq!(first_pending(5, 6, &succeeded, &active), vec![3, 5]);
        assert!(first_pending(0, 6, &succeeded, &active).is_empty());
    }

    #[test]
    fn duplicated_and_invalid_indexes_go_first() {
        let active = vec![
            pod_with_index("0"),
            pod_with_index("0"),
            pod_with_index("7"),
            pod_with_index("-1"),
            pod_with_index("1"),
        ];
        let extra = duplicates(&active, 3);
        assert_eq!(extra.len(), 3);
        assert!(Arc::ptr_eq(&extra[0], &active[1]));
    }

    #[test]
    fn an_assigned_pod_knows_its_index_everywhere() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ..Container::default()
                }],
                init_containers: Some(vec![Container {
                    name: "init".into(),
                    ..Container::default()
                }]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assign(&mut pod, "sum", 2);
        assert_eq!(index_of(&pod), Some(2));
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("sum-2-"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("sum-2"));
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let env = &c.env.as_ref().unwrap()[0];
            assert_eq!(env.name, INDEX_ENV);
            assert_eq!(
                env.value_from
                    .as_ref()
                    .unwrap()
                    .field_ref
                    .as_ref()
                    .unwrap()
                    .field_path,
                "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            );
        }
        assert_eq!(generate_name(&"j".repeat(70), 12).len(), MAX_GENERATE_NAME);
    }
}

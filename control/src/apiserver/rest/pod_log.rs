//! What the API server decides itself about `pods/log` and the other streaming subresources
//! before proxying to the node (`node_proxy.rs`): the `PodLogOptions` query validated as
//! Kubernetes validates it, and which container a request means (`validateContainer` in
//! Kubernetes' `pkg/registry/core/pod/strategy.go`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use skiff_api::{ApiError, FieldError, ObjectRef};

use crate::apiserver::codec::Query;

/// `PodLogOptions` as a query carries them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PodLogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<DateTime<Utc>>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

impl PodLogOptions {
    /// Parses and validates the query; a bad value is `PodLogOptions "POD" is invalid: …`.
    pub fn parse(query: &Query, pod: &str) -> Result<Self, ApiError> {
        let since_time = match query.get("sinceTime").filter(|s| !s.is_empty()) {
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| {
                        ApiError::bad_request(format!(
                            "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {t:?}"
                        ))
                    })?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        let opts = PodLogOptions {
            container: query
                .get("container")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            follow: query.flag("follow"),
            previous: query.flag("previous"),
            timestamps: query.flag("timestamps"),
            since_seconds: query.number("sinceSeconds")?,
            since_time,
            tail_lines: query.number("tailLines")?,
            limit_bytes: query.number("limitBytes")?,
        };
        let causes = opts.validate();
        if causes.is_empty() {
            return Ok(opts);
        }
        let r = ObjectRef {
            group: String::new(),
            resource: "pods".into(),
            kind: "PodLogOptions".into(),
            name: pod.into(),
        };
        Err(ApiError::invalid(&r, causes))
    }

    /// Kubernetes' `ValidatePodLogOptions`.
    fn validate(&self) -> Vec<FieldError> {
        let mut causes = Vec::new();
        if let Some(n) = self.tail_lines.filter(|n| *n < 0) {
            causes.push(FieldError::invalid(
                "tailLines",
                &json!(n),
                "must be greater than or equal to 0",
            ));
        }
        if let Some(n) = self.limit_bytes.filter(|n| *n < 1) {
            causes.push(FieldError::invalid(
                "limitBytes",
                &json!(n),
                "must be greater than 0",
            ));
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => causes.push(FieldError::forbidden(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(s), None) if s < 1 => causes.push(FieldError::invalid(
                "sinceSeconds",
                &json!(s),
                "must be greater than 0",
            )),
            _ => {}
        }
        causes
    }

    /// The node's query (`?…` or empty), built as Kubernetes' `LogLocation` builds it.
    pub fn node_query(&self) -> String {
        let mut params: Vec<String> = Vec::new();
        for (name, on) in [
            ("follow", self.follow),
            ("previous", self.previous),
            ("timestamps", self.timestamps),
        ] {
            if on {
                params.push(format!("{name}=true"));
            }
        }
        if let Some(s) = self.since_seconds {
            params.push(format!("sinceSeconds={s}"));
        }
        if let Some(t) = self.since_time {
            let t = t.to_rfc3339_opts(SecondsFormat::Secs, true);
            params.push(format!("sinceTime={}", t.replace(':', "%3A")));
        }
        if let Some(n) = self.tail_lines {
            params.push(format!("tailLines={n}"));
        }
        if let Some(n) = self.limit_bytes {
            params.push(format!("limitBytes={n}"));
        }
        if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        }
    }
}

/// The container a request means: the one named (which must exist among the pod's init,
/// regular and ephemeral containers), else the pod's only container.
pub(crate) fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names_in = |list: &str| -> Vec<&str> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    };
    let containers = names_in("containers");
    let all: Vec<&str> = names_in("initContainers")
        .into_iter()
        .chain(containers.iter().copied())
        .chain(names_in("ephemeralContainers"))
        .collect();
    match requested {
        Some(name) if all.contains(&name) => Ok(name.to_string()),
        Some(name) => Err(ApiError::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        ))),
        None => match containers.as_slice() {
            [only] => Ok(only.to_string()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}"
            ))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                all.join(" ")
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(raw: &str) -> Result<PodLogOptions, ApiError> {
        PodLogOptions::parse(&Query::parse(Some(raw)), "p")
    }

    #[test]
    fn invalid_options_are_refused_as_kubernetes_words_them() {
        let e = opts("tailLines=-1").unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(e.details.unwrap().causes[0].field, "tailLines");
        let e = opts("limitBytes=0").unwrap_err();
        assert!(
            e.message
                .ends_with("limitBytes: Invalid value: 0: must be greater than 0")
        );
        let e = opts("sinceSeconds=0").unwrap_err();
        assert!(
            e.message
                .ends_with("sinceSeconds: Invalid value: 0: must be greater than 0")
        );
        let e = opts("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z").unwrap_err();
        assert!(
            e.message.ends_with(
                ": Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
            ),
            "{}",
            e.message
        );
        assert_eq!(opts("tailLines=ten").unwrap_err().code, 400);
        assert_eq!(opts("sinceTime=yesterday").unwrap_err().code, 400);
    }

    #[test]
    fn the_node_query_carries_what_was_asked() {
        let o = opts(
            "container=c&follow=true&tailLines=10&sinceTime=2024-05-01T10%3A00%3A00Z&timestamps=1",
        )
        .unwrap();
        assert_eq!(o.container.as_deref(), Some("c"));
        assert_eq!(
            o.node_query(),
            "?follow=true&timestamps=true&sinceTime=2024-05-01T10%3A00%3A00Z&tailLines=10"
        );
        assert_eq!(opts("").unwrap().node_query(), "");
    }

    fn pod(init: &[&str], containers: &[&str]) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        json!({"metadata": {"name": "p"}, "spec": {"initContainers": list(init), "containers": list(containers)}})
    }

    #[test]
    fn the_container_defaults_to_the_only_one_and_must_exist() {
        assert_eq!(choose_container(&pod(&[], &["app"]), None).unwrap(), "app");
        assert_eq!(
            choose_container(&pod(&["init"], &["app"]), None).unwrap(),
            "app"
        );
        assert_eq!(
            choose_container(&pod(&["init"], &["a", "b"]), Some("init")).unwrap(),
            "init"
        );
        let e = choose_container(&pod(&["init"], &["a", "b"]), None).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        let e = choose_container(&pod(&[], &["a"]), Some("x")).unwrap_err();
        assert_eq!(e.message, "container x is not valid for pod p");
    }
}

//! The `autoscaling/v2` HorizontalPodAutoscaler printer: REFERENCE, TARGETS (`cpu: 35%/80%`),
//! MINPODS, MAXPODS, REPLICAS, after `printHorizontalPodAutoscaler` and `formatHPAMetrics` in
//! Kubernetes' `printers.go`.

use serde_json::Value;

use super::format::{age, arr_at, int_at, name, str_at};
use super::{AGE, Doc, NAME, Printer, col};

pub(super) fn printer(kind: &str) -> Option<&'static Printer> {
    (kind == "HorizontalPodAutoscaler").then_some(&HPA)
}

const HPA_SPEC: &str = "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec";

const HPA: Printer = Printer::new(
    &[
        NAME,
        col(
            "Reference",
            "string",
            Doc::Field(HPA_SPEC, "scaleTargetRef"),
        ),
        col("Targets", "string", Doc::Field(HPA_SPEC, "metrics")),
        col("MinPods", "string", Doc::Field(HPA_SPEC, "minReplicas")),
        col("MaxPods", "string", Doc::Field(HPA_SPEC, "maxReplicas")),
        col(
            "Replicas",
            "string",
            Doc::Field(
                "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
                "currentReplicas",
            ),
        ),
        AGE,
    ],
    |hpa, now| {
        let reference = format!(
            "{}/{}",
            str_at(hpa, "/spec/scaleTargetRef/kind"),
            str_at(hpa, "/spec/scaleTargetRef/name")
        );
        let min_pods = match hpa.pointer("/spec/minReplicas").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => "<unset>".to_string(),
        };
        vec![
            name(hpa),
            reference.into(),
            format_hpa_metrics(
                arr_at(hpa, "/spec/metrics"),
                arr_at(hpa, "/status/currentMetrics"),
            )
            .into(),
            min_pods.into(),
            int_at(hpa, "/spec/maxReplicas").into(),
            int_at(hpa, "/status/currentReplicas").into(),
            age(hpa, now),
        ]
    },
);

/// A quantity as stored, or `<nil>` as Go prints a nil `*Quantity`.
fn quantity(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("<nil>")
        .to_string()
}

fn percent(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .map(|p| format!("{p}%"))
}

/// `formatHPAMetrics`: `current/target` per metric, two at most, then ` + N more...`.
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            // The status of the same metric, when it has one of the right source.
            let status_of = |source: &str| {
                statuses
                    .get(i)
                    .and_then(|s| s.get(source))
                    .filter(|s| s.is_object())
            };
            match str_at(spec, "/type") {
                source @ ("External" | "Object") => {
                    let key = if source == "External" {
                        "external"
                    } else {
                        "object"
                    };
                    let target = spec.get(key).unwrap_or(&Value::Null);
                    let current = status_of(key);
                    if target
                        .pointer("/target/averageValue")
                        .is_some_and(Value::is_string)
                    {
                        let cur = current
                            .and_then(|c| c.pointer("/current/averageValue")?.as_str())
                            .unwrap_or("<unknown>");
                        format!("{cur}/{} (avg)", quantity(target, "/target/averageValue"))
                    } else {
                        let cur = current
                            .map_or("<unknown>".to_string(), |c| quantity(c, "/current/value"));
                        format!("{cur}/{}", quantity(target, "/target/value"))
                    }
                }
                "Pods" => {
                    let cur = status_of("pods").map_or("<unknown>".to_string(), |c| {
                        quantity(c, "/current/averageValue")
                    });
                    format!("{cur}/{}", quantity(spec, "/pods/target/averageValue"))
                }
                source @ ("Resource" | "ContainerResource") => {
                    let key = if source == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let target = spec.get(key).unwrap_or(&Value::Null);
                    let resource = str_at(target, "/name");
                    let current = status_of(key);
                    if target
                        .pointer("/target/averageValue")
                        .is_some_and(Value::is_string)
                    {
                        let cur = current.map_or("<unknown>".to_string(), |c| {
                            quantity(c, "/current/averageValue")
                        });
                        format!(
                            "{resource}: {cur}/{}",
                            quantity(target, "/target/averageValue")
                        )
                    } else {
                        let cur = current
                            .and_then(|c| percent(c, "/current/averageUtilization"))
                            .unwrap_or_else(|| "<unknown>".to_string());
                        let goal = percent(target, "/target/averageUtilization")
                            .unwrap_or_else(|| "<auto>".to_string());
                        format!("{resource}: {cur}/{goal}")
                    }
                }
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{part, row};

    #[test]
    fn hpa_row_formats_metrics() {
        let hpa = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:00:00Z"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 10, "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "200Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}]},
            "status": {"currentReplicas": 2, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35, "averageValue": "70m"}}}]},
        });
        assert_eq!(
            row("horizontalpodautoscalers", &hpa),
            json!([
                "web",
                "Deployment/web",
                "cpu: 35%/80%, memory: <unknown>/200Mi + 1 more...",
                "1",
                10,
                2,
                "60m"
            ])
        );
        let bare = json!({"metadata": {"name": "x"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3}});
        assert_eq!(
            part(row("horizontalpodautoscalers", &bare), 2..4),
            json!(["<none>", "<unset>"])
        );
    }
}

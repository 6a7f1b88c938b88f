//! Printers of `batch/v1`: jobs (STATUS, COMPLETIONS, DURATION) and cron jobs, after `printJob`
//! and `printCronJob` in Kubernetes' `printers.go`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::format::{
    age, arr_at, container_cells, controller_row, format_label_selector, human_duration, int_at,
    is_deleting, name, since, str_at, time_at,
};
use super::{AGE, CONTAINERS, ColumnDef, Doc, IMAGES, NAME, Printer, col, selector_col};

pub(super) fn printer(kind: &str) -> Option<&'static Printer> {
    Some(match kind {
        "Job" => &JOB,
        "CronJob" => &CRON_JOB,
        _ => return None,
    })
}

const JOB_SELECTOR: ColumnDef = selector_col("io.k8s.api.batch.v1.JobSpec");

const JOB: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", Doc::Text("Status of the job.")),
        col(
            "Completions",
            "string",
            Doc::Field("io.k8s.api.batch.v1.JobStatus", "succeeded"),
        ),
        col(
            "Duration",
            "string",
            Doc::Text("Time required to complete the job."),
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        JOB_SELECTOR,
    ],
    job_cells,
);

/// The status of the job's first condition of this type is True.
fn has_condition(job: &Value, type_: &str) -> bool {
    arr_at(job, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == type_)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int_at(job, "/status/succeeded");
    let completions = match job.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(job, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        time_at(job, "/status/startTime"),
        time_at(job, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), now),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let deleting = is_deleting(job);
    let status = if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let selector = format_label_selector(job.pointer("/spec/selector").unwrap_or(&Value::Null));
    controller_row(
        job,
        now,
        [status.into(), completions.into(), duration.into()],
        Some(selector),
    )
}

const CRON_JOB_SPEC: &str = "io.k8s.api.batch.v1.CronJobSpec";

const CRON_JOB: Printer = Printer::new(
    &[
        NAME,
        col("Schedule", "string", Doc::Field(CRON_JOB_SPEC, "schedule")),
        col("Timezone", "string", Doc::Field(CRON_JOB_SPEC, "timeZone")),
        col("Suspend", "boolean", Doc::Field(CRON_JOB_SPEC, "suspend")),
        col(
            "Active",
            "integer",
            Doc::Field("io.k8s.api.batch.v1.CronJobStatus", "active"),
        ),
        col(
            "Last Schedule",
            "string",
            Doc::Field("io.k8s.api.batch.v1.CronJobStatus", "lastScheduleTime"),
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        JOB_SELECTOR,
    ],
    |cj, now| {
        let last_schedule = match time_at(cj, "/status/lastScheduleTime") {
            Some(t) => since(Some(t), now),
            None => "<none>".to_string(),
        };
        let time_zone = cj
            .pointer("/spec/timeZone")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        // Cells of type boolean still print as Go's printBoolPtr text.
        let suspend = match cj.pointer("/spec/suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let job_spec = cj.pointer("/spec/jobTemplate/spec").unwrap_or(&Value::Null);
        let (names, images) = container_cells(arr_at(job_spec, "/template/spec/containers"));
        vec![
            name(cj),
            str_at(cj, "/spec/schedule").into(),
            time_zone.into(),
            suspend.into(),
            arr_at(cj, "/status/active").len().into(),
            last_schedule.into(),
            age(cj, now),
            names,
            images,
            format_label_selector(job_spec.get("selector").unwrap_or(&Value::Null)).into(),
        ]
    },
);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{columns_of, part, row};

    fn job(spec: serde_json::Value, status: serde_json::Value) -> serde_json::Value {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}});
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}});
        json!({"metadata": {"name": "pi", "creationTimestamp": "2025-01-01T11:50:00Z"}, "spec": spec, "status": status})
    }

    #[test]
    fn job_rows_by_state() {
        let complete = job(
            json!({"completions": 1, "parallelism": 1}),
            json!({"succeeded": 1, "startTime": "2025-01-01T11:50:00Z", "completionTime": "2025-01-01T11:50:42Z",
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            row("jobs", &complete),
            json!([
                "pi",
                "Complete",
                "1/1",
                "42s",
                "10m",
                "pi",
                "perl:5.34",
                "batch.kubernetes.io/controller-uid=u1"
            ])
        );
        let running = job(
            json!({"parallelism": 3}),
            json!({"active": 3, "startTime": "2025-01-01T11:57:00Z"}),
        );
        assert_eq!(
            part(row("jobs", &running), 1..4),
            json!(["Running", "0/1 of 3", "3m"])
        );
        let failed = job(
            json!({"completions": 2}),
            json!({"failed": 6, "startTime": "2025-01-01T11:50:00Z",
                   "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
        );
        assert_eq!(
            part(row("jobs", &failed), 1..4),
            json!(["Failed", "0/2", "10m"])
        );
        let suspended = job(
            json!({"completions": 1, "suspend": true}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
        );
        assert_eq!(
            part(row("jobs", &suspended), 1..4),
            json!(["Suspended", "0/1", ""])
        );
        // Done, waiting for its last pods to be counted.
        let met = job(
            json!({"completions": 1}),
            json!({"succeeded": 1, "startTime": "2025-01-01T11:50:00Z",
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}),
        );
        assert_eq!(
            part(row("jobs", &met), 1..3),
            json!(["SuccessCriteriaMet", "1/1"])
        );
        assert_eq!(
            columns_of("jobs"),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }

    #[test]
    fn cron_job_row() {
        let cj = json!({
            "metadata": {"name": "backup", "creationTimestamp": "2024-12-30T12:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "backup", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": "2025-01-01T11:55:00Z"},
        });
        assert_eq!(
            row("cronjobs", &cj),
            json!([
                "backup",
                "*/5 * * * *",
                "<none>",
                "False",
                1,
                "5m",
                "2d",
                "backup",
                "busybox",
                "<none>"
            ])
        );
    }
}

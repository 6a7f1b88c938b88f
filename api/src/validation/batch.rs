//! Jobs and CronJobs (`pkg/apis/batch/validation`): counts, completion mode, the generated
//! selector, restartPolicy OnFailure/Never, cron schedules (as `robfig/cron` v3 parses them,
//! with its error messages) and the fields a Job may not change.

use serde_json::Value;

use super::container::one_of;
use super::pod::validate_template;
use super::{
    get_str, go_label_selector, go_string_map, immutable, invalid_each, invalid_rendered,
    label_selector, nonnegative,
};
use crate::cron::{Schedule, ScheduleError};
use crate::status::FieldError;

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";

pub fn validate_job(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual {
        validate_generated_selector(obj, spec, errs);
    }
    validate_job_spec(spec, "spec", manual, errs);
}

fn validate_generated_selector(obj: &Value, spec: &Value, errs: &mut Vec<FieldError>) {
    let meta = obj.get("metadata");
    let uid = meta.and_then(|m| get_str(m, "uid")).unwrap_or_default();
    let name = meta.and_then(|m| get_str(m, "name")).unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required("metadata.uid"));
    }
    let labels = spec.pointer("/template/metadata/labels");
    for (key, want) in [(CONTROLLER_UID, uid), (JOB_NAME, name)] {
        let path = format!("spec.template.metadata.labels[{key}]");
        match labels.and_then(|l| get_str(l, key)) {
            None => errs.push(FieldError::required(path)),
            Some(v) if v != want => {
                invalid_each(errs, &path, v, vec![format!("must be '{want}'")]);
            }
            Some(_) => {}
        }
    }
    let expected = serde_json::json!({ "matchLabels": { CONTROLLER_UID: uid } });
    if let Some(sel) = spec.get("selector").filter(|s| **s != expected) {
        errs.push(invalid_rendered(
            "spec.selector",
            &go_label_selector(Some(sel)),
            "`selector` not auto-generated",
        ));
    }
}

/// `selector_required` for Jobs with `manualSelector: true`; CronJob templates never need one.
fn validate_job_spec(
    spec: &Value,
    path: &str,
    selector_required: bool,
    errs: &mut Vec<FieldError>,
) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(errs, spec, key, &format!("{path}.{key}"));
    }
    if let Some(mode) = get_str(spec, "completionMode") {
        match mode {
            "NonIndexed" => {}
            "Indexed" if spec.get("completions").is_none_or(Value::is_null) => {
                errs.push(super::required(
                    format!("{path}.completions"),
                    "when completion mode is Indexed",
                ))
            }
            "Indexed" => {}
            other => errs.push(FieldError::not_supported(
                format!("{path}.completionMode"),
                &Value::String(other.into()),
                &["NonIndexed", "Indexed"],
            )),
        }
    }
    if spec.get("podReplacementPolicy").is_some() {
        one_of(
            errs,
            spec,
            "podReplacementPolicy",
            &format!("{path}.podReplacementPolicy"),
            &["TerminatingOrFailed", "Failed"],
            "",
        );
    }
    let selector = match spec.get("selector") {
        None if selector_required => {
            errs.push(FieldError::required(format!("{path}.selector")));
            None
        }
        sel => label_selector(errs, sel, &format!("{path}.selector")),
    };
    let template = spec.get("template");
    if let (Some(sel), Some(t)) = (selector, template) {
        let none = serde_json::Map::new();
        let labels = t
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&none);
        if !sel.is_empty() && !sel.matches(labels) {
            errs.push(invalid_rendered(
                format!("{path}.template.metadata.labels"),
                &go_string_map(t.pointer("/metadata/labels")),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_template(template, &format!("{path}.template"), errs);
    if let Some(t) = template {
        let policy = t
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if policy != "OnFailure" && policy != "Never" {
            errs.push(FieldError::not_supported(
                format!("{path}.template.spec.restartPolicy"),
                &Value::String(policy.into()),
                &["OnFailure", "Never"],
            ));
        }
    }
}

pub fn validate_cron_job(obj: &Value, errs: &mut Vec<FieldError>) {
    // Job names get an 11-character suffix and must stay DNS-1035 labels.
    if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str)
        && name.len() > 52
    {
        invalid_each(
            errs,
            "metadata.name",
            name,
            vec!["must be no more than 52 characters".into()],
        );
    }
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    match get_str(spec, "schedule").unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.schedule")),
        schedule => {
            if let Err(e) = parse_schedule(schedule) {
                invalid_each(errs, "spec.schedule", schedule, vec![e.to_string()]);
            }
            if schedule.contains("TZ") {
                invalid_each(
                    errs,
                    "spec.schedule",
                    schedule,
                    vec!["cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into()],
                );
            }
        }
    }
    one_of(
        errs,
        spec,
        "concurrencyPolicy",
        "spec.concurrencyPolicy",
        &["Allow", "Forbid", "Replace"],
        "",
    );
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(errs, spec, key, &format!("spec.{key}"));
    }
    let job_spec = spec.pointer("/jobTemplate/spec").unwrap_or(&empty);
    if let Some(m) = job_spec
        .get("manualSelector")
        .filter(|m| m.as_bool() == Some(true))
    {
        errs.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            m,
            &["nil", "false"],
        ));
    }
    validate_job_spec(job_spec, "spec.jobTemplate.spec", false, errs);
}

pub fn validate_job_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let (ns, os) = (
        new.get("spec").unwrap_or(&empty),
        old.get("spec").unwrap_or(&empty),
    );
    let indexed = get_str(ns, "completionMode") == Some("Indexed");
    let elastic = indexed && ns.get("completions") == ns.get("parallelism");
    if !elastic {
        immutable(errs, ns, os, "completions", "spec.completions");
    }
    if ns.get("selector") != os.get("selector") {
        errs.push(invalid_rendered(
            "spec.selector",
            &go_label_selector(ns.get("selector")),
            "field is immutable",
        ));
    }
    immutable(errs, ns, os, "template", "spec.template");
    for key in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(errs, ns, os, key, &format!("spec.{key}"));
    }
}

/// `cron.ParseStandard` as validation runs it: a `TZ=`/`CRON_TZ=` prefix is skipped here (and
/// refused with its own message by the caller), the rest is [`Schedule::parse`]'s.
fn parse_schedule(spec: &str) -> Result<Schedule, ScheduleError> {
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let rest = spec.split_once(' ').map_or("", |(_, r)| r.trim());
        return Schedule::parse(rest);
    }
    Schedule::parse(spec)
}

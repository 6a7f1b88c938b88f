//! StorageClass validation (`pkg/apis/storage/validation`): a provisioner is required and the
//! policies are known ones; once created, only metadata, mount options, expansion and
//! topologies may change.

use serde_json::Value;

use crate::status::FieldError;

const RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];

pub fn validate_storage_class(obj: &Value, errs: &mut Vec<FieldError>) {
    if obj["provisioner"].as_str().is_none_or(str::is_empty) {
        errs.push(FieldError::required("provisioner"));
    }
    for (field, supported) in [
        ("reclaimPolicy", RECLAIM_POLICIES),
        ("volumeBindingMode", BINDING_MODES),
    ] {
        if let Some(value) = obj[field].as_str()
            && !supported.contains(&value)
        {
            errs.push(FieldError::not_supported(field, &obj[field], supported));
        }
    }
}

pub fn validate_storage_class_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    for field in ["parameters", "provisioner", "reclaimPolicy"] {
        if new[field] != old[field] {
            errs.push(FieldError::forbidden(
                field,
                format!("updates to {field} are forbidden."),
            ));
        }
    }
    if new["volumeBindingMode"] != old["volumeBindingMode"] {
        errs.push(FieldError::immutable(
            "volumeBindingMode",
            &new["volumeBindingMode"],
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(FieldError::display).collect()
    }

    #[test]
    fn a_class_needs_a_provisioner_and_known_policies() {
        let mut errs = Vec::new();
        validate_storage_class(
            &json!({"reclaimPolicy": "Recycle", "volumeBindingMode": "Immediate"}),
            &mut errs,
        );
        assert_eq!(
            messages(errs),
            [
                "provisioner: Required value",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\""
            ]
        );
    }

    #[test]
    fn provisioner_policies_and_parameters_are_fixed() {
        let old = json!({"provisioner": "a", "reclaimPolicy": "Delete",
                         "volumeBindingMode": "Immediate"});
        let new = json!({"provisioner": "b", "reclaimPolicy": "Delete", "parameters": {"x": "y"},
                         "volumeBindingMode": "WaitForFirstConsumer"});
        let mut errs = Vec::new();
        validate_storage_class_update(&new, &old, &mut errs);
        assert_eq!(
            messages(errs),
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable"
            ]
        );
    }
}

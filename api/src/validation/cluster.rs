//! Cluster-scoped kinds: Namespaces (`spec.finalizers`) and Nodes (taints, pod CIDRs, and the
//! fields a node may set only once).

use serde_json::Value;

use super::{get_str, invalid_each, items, names};
use crate::status::FieldError;

pub fn validate_namespace(obj: &Value, errs: &mut Vec<FieldError>) {
    let finalizers = obj.pointer("/spec/finalizers").and_then(Value::as_array);
    for f in finalizers.into_iter().flatten().filter_map(Value::as_str) {
        let msgs = names::qualified_name(f);
        if !msgs.is_empty() {
            invalid_each(errs, "spec.finalizers", f, msgs);
        } else if !f.contains('/') && f != "kubernetes" {
            invalid_each(
                errs,
                "spec.finalizers",
                f,
                vec!["name is neither a standard finalizer name nor is it fully qualified".into()],
            );
        }
    }
}

pub fn validate_node(obj: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Null;
    let spec = obj.get("spec").unwrap_or(&empty);
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (i, taint) in items(spec, "taints").iter().enumerate() {
        let p = format!("spec.taints[{i}]");
        let key = get_str(taint, "key").unwrap_or_default();
        invalid_each(errs, &format!("{p}.key"), key, names::qualified_name(key));
        let value = get_str(taint, "value").unwrap_or_default();
        let msgs = names::label_value(value);
        if !msgs.is_empty() {
            invalid_each(errs, &format!("{p}.value"), value, vec![msgs.join(";")]);
        }
        let effect = get_str(taint, "effect").unwrap_or_default();
        super::container::one_of(
            errs,
            taint,
            "effect",
            &format!("{p}.effect"),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            "",
        );
        if seen.contains(&(key, effect)) {
            errs.push(FieldError::new(
                crate::status::CauseType::FieldValueDuplicate,
                p,
                format!("Duplicate value: {taint}: taints must be unique by key and effect pair"),
            ));
        } else {
            seen.push((key, effect));
        }
    }
    let cidrs = items(spec, "podCIDRs");
    for (i, cidr) in cidrs.iter().filter_map(Value::as_str).enumerate() {
        if !is_cidr(cidr) {
            invalid_each(
                errs,
                &format!("spec.podCIDRs[{i}]"),
                cidr,
                vec!["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".into()],
            );
        }
    }
    if cidrs.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.podCIDRs",
            &Value::Array(cidrs.to_vec()),
            "may specify no more than one CIDR for each IP family",
        ));
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max)
}

/// podCIDRs and providerID may go from unset to set, never change afterwards.
pub fn validate_node_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    for (key, what) in [("podCIDRs", "podCIDR"), ("providerID", "providerID")] {
        let (n, o) = (
            new.pointer(&format!("/spec/{key}")),
            old.pointer(&format!("/spec/{key}")),
        );
        let unset = |v: Option<&Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if !unset(o) && n != o {
            errs.push(FieldError::forbidden(
                format!("spec.{key}"),
                format!("node updates may not change {what} except from \"\" to valid"),
            ));
        }
    }
}

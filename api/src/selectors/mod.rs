//! Label and field selectors: which objects a list, watch or controller selects.
//!
//! [`LabelSelector`] is both the `?labelSelector=` string form (apimachinery `labels.Parse`) and the
//! `metav1.LabelSelector` object (`matchLabels` / `matchExpressions`); [`FieldSelector`] is the
//! `?fieldSelector=` form with the per-kind fields the Kubernetes API server lets clients select on.
//! Both are pure: they parse, validate with Kubernetes' exact wording, match and print.

mod field;
mod label;
mod label_parse;

pub use field::FieldSelector;
pub use label::LabelSelector;

/// Go's `%q` for the strings selector messages quote: printable text as is, the rest escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_go() {
        assert_eq!(go_quote("a b"), "\"a b\"");
        assert_eq!(go_quote("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
        assert_eq!(go_quote("é\u{1}"), "\"é\\x01\"");
    }
}

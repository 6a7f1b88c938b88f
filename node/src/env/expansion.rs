//! `$(VAR)` references in env values, `command`, `args` and `subPathExpr`, expanded exactly as
//! Kubernetes does (`third_party/forked/golang/expansion/expand.go`): `$$` is a literal `$`
//! (so `$$(VAR)` stays `$(VAR)`), an unknown reference is left as written, and an unclosed
//! `$(` is copied through.

/// Expands `input`, asking `mapping` for each referenced name; `None` keeps the reference as
/// written.
pub fn expand(input: &str, mut mapping: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    // Every index the loop slices at is next to an ASCII `$`, `(` or `)`, so slices stay on
    // char boundaries.
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            match bytes[cursor + 1] {
                b'$' => {
                    out.push('$');
                    cursor += 1;
                    checkpoint = cursor + 1;
                }
                b'(' => match input[cursor + 2..].find(')') {
                    Some(len) => {
                        let name = &input[cursor + 2..cursor + 2 + len];
                        match mapping(name) {
                            Some(value) => out.push_str(&value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        cursor += 2 + len;
                        checkpoint = cursor + 1;
                    }
                    None => {
                        out.push_str("$(");
                        cursor += 1;
                        checkpoint = cursor + 1;
                    }
                },
                // A lone `$`: kept, and the next character is read normally.
                _ => checkpoint = cursor,
            }
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// Looks names up in resolved `NAME=value` pairs, the last definition winning.
pub fn lookup<'a>(vars: &'a [(String, String)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![
            ("VAR_A".into(), "A".into()),
            ("VAR_B".into(), "B".into()),
            ("EMPTY".into(), String::new()),
            ("VAR_A".into(), "A2".into()),
        ]
    }

    fn ex(input: &str) -> String {
        let vars = vars();
        expand(input, lookup(&vars))
    }

    #[test]
    fn expands_references_like_kubernetes() {
        // Cases from Kubernetes' expand_test.go.
        assert_eq!(ex("$(VAR_B)"), "B");
        assert_eq!(ex("___$(VAR_B)___"), "___B___");
        assert_eq!(ex("$(VAR_B)-$(VAR_B)"), "B-B");
        assert_eq!(ex("$(VAR_A)"), "A2", "the last definition wins");
        assert_eq!(ex("x$(EMPTY)y"), "xy");
        assert_eq!(ex("$(UNKNOWN)"), "$(UNKNOWN)");
        assert_eq!(ex("$(VAR_B) $(UNKNOWN)"), "B $(UNKNOWN)");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(ex("$$(VAR_B)"), "$(VAR_B)");
        assert_eq!(ex("$$$(VAR_B)"), "$B");
        assert_eq!(ex("$$$$(VAR_B)"), "$$(VAR_B)");
        assert_eq!(ex("f00$$"), "f00$");
    }

    #[test]
    fn incomplete_and_odd_syntax_is_copied_through() {
        assert_eq!(ex("$(VAR_B"), "$(VAR_B");
        assert_eq!(ex("$("), "$(");
        assert_eq!(ex("$"), "$");
        assert_eq!(ex("$VAR_B"), "$VAR_B");
        assert_eq!(ex("$$VAR_B"), "$VAR_B");
        assert_eq!(ex("$()"), "$()");
        assert_eq!(ex("€$(VAR_B)€$é"), "€B€$é");
        assert_eq!(ex("$x$(VAR_B)"), "$xB");
        assert_eq!(ex("$($(VAR_B))"), "$($(VAR_B))");
    }
}

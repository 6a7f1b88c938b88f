//! The `?labelSelector=` grammar, lexed and parsed as apimachinery's `labels.Parse` does, so that
//! every accepted string, every refused one and every error message match the Kubernetes API server.
//!
//! ```text
//! <selector>    ::= <requirement> | <requirement> "," <selector>
//! <requirement> ::= [!] KEY [ ("in" | "notin") "(" VALUES ")" | ("=" | "==" | "!=" | ">" | "<") VALUE ]
//! ```

use super::label::{Operator, Requirement};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// `in` and `notin` are keywords only where an operator may stand; elsewhere they are values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Byte lexer. As in Go, reading past the end yields NUL, so a NUL byte in the input ends the
/// current token or the whole selector just like the end of the string does.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&c) => {
                self.pos += 1;
                c
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos -= 1;
    }

    fn lex(&mut self) -> (Token, String) {
        let mut c = self.read();
        while is_whitespace(c) {
            c = self.read();
        }
        if c == 0 {
            return (Token::End, String::new());
        }
        self.unread();
        if is_special(c) {
            self.scan_symbol()
        } else {
            self.scan_identifier()
        }
    }

    /// The longest operator spelled by the run of special characters (`!=` over `!`).
    fn scan_symbol(&mut self) -> (Token, String) {
        let mut buffer = Vec::new();
        let mut last: Option<(Token, usize)> = None;
        loop {
            let c = self.read();
            if c == 0 {
                break;
            }
            if !is_special(c) {
                self.unread();
                break;
            }
            buffer.push(c);
            match keyword(&String::from_utf8_lossy(&buffer)) {
                Some(tok) => last = Some((tok, buffer.len())),
                None if last.is_some() => {
                    self.unread();
                    break;
                }
                None => {}
            }
        }
        match last {
            Some((tok, len)) => (tok, String::from_utf8_lossy(&buffer[..len]).into_owned()),
            // Unreachable with today's table (every special character alone is a keyword), kept
            // so a future table change cannot loop or panic.
            None => (
                Token::Identifier,
                String::from_utf8_lossy(&buffer).into_owned(),
            ),
        }
    }

    fn scan_identifier(&mut self) -> (Token, String) {
        let mut buffer = Vec::new();
        loop {
            let c = self.read();
            if c == 0 {
                break;
            }
            if is_special(c) || is_whitespace(c) {
                self.unread();
                break;
            }
            buffer.push(c);
        }
        let lit = String::from_utf8_lossy(&buffer).into_owned();
        (keyword(&lit).unwrap_or(Token::Identifier), lit)
    }
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn token(&self, at: usize, ctx: Context) -> (Token, &str) {
        // The item list always ends with End and parsing never consumes past it.
        let (tok, lit) = self
            .items
            .get(at)
            .or(self.items.last())
            .map(|(t, l)| (*t, l.as_str()))
            .unwrap_or((Token::End, ""));
        match tok {
            Token::In | Token::NotIn if ctx == Context::Values => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        let (t, l) = self.token(self.position, ctx);
        (t, l.to_string())
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let at = self.position;
        if at + 1 < self.items.len() {
            self.position += 1;
        }
        let (t, l) = self.token(at, ctx);
        (t, l.to_string())
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return Requirement::new(key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, op, values)
    }

    /// The key, and the operator when it is already decided: `!key` or a bare `key`.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        // labels.Parse validates the key with a nil field path, which Go prints as `<nil>`.
        if let Some(e) = super::label::key_error("<nil>", &lit) {
            return Err(e);
        }
        let (next, _) = self.lookahead(Context::Values);
        if operator.is_none() && matches!(next, Token::End | Token::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((lit, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `(a,b,,c)`: a set, so sorted and without duplicates; empty items are the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        let mut set = match tok {
            Token::Identifier | Token::Comma => {
                let s = self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    // Go reports the token seen before the list here, not the offending one.
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                s
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                vec![String::new()]
            }
            _ => return Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        };
        set.sort();
        set.dedup();
        Ok(set)
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut s = Vec::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    s.push(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if s.is_empty() {
                        s.push(String::new());
                    }
                    match self.lookahead(Context::Values).0 {
                        Token::ClosedPar => {
                            s.push(String::new());
                            return Ok(s);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            s.push(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.lookahead(Context::Values).0, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

/// Parses a selector string into requirements sorted by key; the error is the message
/// `labels.Parse` returns.
pub(super) fn parse(selector: &str) -> Result<Vec<Requirement>, String> {
    let mut lexer = Lexer {
        s: selector.as_bytes(),
        pos: 0,
    };
    let mut items = Vec::new();
    loop {
        let item = lexer.lex();
        let end = item.0 == Token::End;
        items.push(item);
        if end {
            break;
        }
    }
    let mut requirements = Parser { items, position: 0 }.parse()?;
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(requirements)
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use crate::selectors::LabelSelector;

    fn err(s: &str) -> String {
        let e = LabelSelector::parse(s).expect_err(s);
        assert_eq!((e.code, e.reason), (400, "BadRequest"), "{s}");
        e.message
    }

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parses_every_operator_into_the_canonical_form() {
        let cases = [
            (
                "x=a,y!=b,z in (d,c),w notin (e),v,!u",
                "!u,v,w notin (e),x=a,y!=b,z in (c,d)",
            ),
            ("a==b", "a==b"),
            (" a = b , c ", "a=b,c"),
            ("a=", "a="),
            ("a in (b,b,a)", "a in (a,b)"),
            ("a in ()", "a in ()"),
            ("a in (,b)", "a in (,b)"),
            ("x in (foo,,baz)", "x in (,baz,foo)"),
            (
                "in in (in),notin notin (notin)",
                "in in (in),notin notin (notin)",
            ),
            ("a>1,b<20", "a>1,b<20"),
            ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
            ("x in(a),y", "x in (a),y"),
        ];
        for (input, canonical) in cases {
            let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.to_string(), canonical, "{input}");
        }
        assert!(LabelSelector::parse("").expect("empty").is_empty());
        assert!(!LabelSelector::parse("a").expect("a").is_empty());
    }

    #[test]
    fn refuses_malformed_selectors_with_kubernetes_messages() {
        let name_msg = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let value_msg = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
        let cases = [
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt".to_string()),
            ("a!b", "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt".to_string()),
            ("a=b c", "found 'c', expected: ',' or 'end of string'".to_string()),
            ("a=b,", "found '', expected: identifier after ','".to_string()),
            ("a=b,=c", "found '=', expected: identifier after ','".to_string()),
            (",a", "found ',', expected: !, identifier, or 'end of string'".to_string()),
            ("!a=b", "found '=', expected: ',' or 'end of string'".to_string()),
            ("!", "unable to parse requirement: found '', expected: identifier".to_string()),
            ("a in x", "unable to parse requirement: found 'x' expected: '('".to_string()),
            ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'".to_string()),
            ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'".to_string()),
            ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier".to_string()),
            ("a in (,=)", "unable to parse requirement: found '=', expected: ',', or identifier".to_string()),
            ("a notin (,,)", "unable to parse requirement: found ')', expected: ',', or identifier".to_string()),
            ("a=(b)", "unable to parse requirement: found '(', expected: identifier".to_string()),
            ("-a", format!("unable to parse requirement: <nil>: Invalid value: \"-a\": {name_msg}")),
            ("a=-b", format!("unable to parse requirement: values[0][a]: Invalid value: \"-b\": {value_msg}")),
            ("a>x", "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer".to_string()),
            (
                "a>-x",
                format!("unable to parse requirement: [values[0]: Invalid value: \"-x\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][a]: Invalid value: \"-x\": {value_msg}]"),
            ),
        ];
        for (input, message) in cases {
            assert_eq!(err(input), message, "{input}");
        }
    }

    #[test]
    fn matches_as_apimachinery_does() {
        let sel = LabelSelector::parse("env in (prod,staging),tier!=db,!canary,app").expect("sel");
        assert!(sel.matches(&labels(json!({"env": "prod", "tier": "web", "app": "x"}))));
        assert!(sel.matches(&labels(json!({"env": "staging", "app": ""}))));
        assert!(!sel.matches(&labels(json!({"env": "dev", "app": "x"}))));
        assert!(!sel.matches(&labels(json!({"env": "prod", "tier": "db", "app": "x"}))));
        assert!(!sel.matches(&labels(
            json!({"env": "prod", "app": "x", "canary": "true"})
        )));
        assert!(!sel.matches(&labels(json!({"env": "prod"}))));

        let notin = LabelSelector::parse("a notin (b)").expect("notin");
        assert!(notin.matches(&Map::new()));
        assert!(!notin.matches(&labels(json!({"a": "b"}))));

        let empty_value = LabelSelector::parse("a in ()").expect("in ()");
        assert!(empty_value.matches(&labels(json!({"a": ""}))));
        assert!(!empty_value.matches(&Map::new()));

        let numeric = LabelSelector::parse("a>1,b<10").expect("gt lt");
        assert!(numeric.matches(&labels(json!({"a": "2", "b": "9"}))));
        assert!(!numeric.matches(&labels(json!({"a": "1", "b": "9"}))));
        assert!(!numeric.matches(&labels(json!({"a": "x", "b": "9"}))));
        assert!(!numeric.matches(&labels(json!({"b": "9"}))));

        assert!(
            LabelSelector::parse("")
                .expect("empty")
                .matches(&Map::new())
        );
    }
}

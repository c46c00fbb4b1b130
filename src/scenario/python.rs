//! What the CS305 grader sees, modelled: Python exceptions with their class
//! hierarchy (partial credit is given by exception class name), Python's
//! `repr` of values, and the grader's expectation check with the exact
//! exceptions it raises (`AssertionError` is a mismatch, `IndexError`,
//! `KeyError` and `TypeError` are errors), so a result scores as it would there.

use std::collections::BTreeMap;
use std::fmt;

use super::value::{pattern, Value};

/// A Python exception as the grader would catch it: its class and `repr(e)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyError {
    /// The class name, e.g. `SMTPSenderRefused`.
    pub class: &'static str,
    /// `repr(e)`, e.g. `SMTPSenderRefused(550, b'no such user', 'a@b.c')`.
    pub repr: String,
}

/// Each class mailnet can raise and its base class (Python 3.11's, and
/// `timeout_decorator.TimeoutError`, which derives from `AssertionError`).
const BASES: &[(&str, &str)] = &[
    ("SMTPSenderRefused", "SMTPResponseException"),
    ("SMTPDataError", "SMTPResponseException"),
    ("SMTPHeloError", "SMTPResponseException"),
    ("SMTPConnectError", "SMTPResponseException"),
    ("SMTPAuthenticationError", "SMTPResponseException"),
    ("SMTPResponseException", "SMTPException"),
    ("SMTPRecipientsRefused", "SMTPException"),
    ("SMTPServerDisconnected", "SMTPException"),
    ("SMTPNotSupportedError", "SMTPException"),
    ("SMTPException", "OSError"),
    ("ConnectionRefusedError", "ConnectionError"),
    ("ConnectionResetError", "ConnectionError"),
    ("ConnectionError", "OSError"),
    ("OSError", "Exception"),
    ("error_proto", "Exception"),
    ("TimeoutError", "AssertionError"),
    ("AssertionError", "Exception"),
    ("IndexError", "LookupError"),
    ("KeyError", "LookupError"),
    ("LookupError", "Exception"),
    ("UnicodeDecodeError", "UnicodeError"),
    ("UnicodeEncodeError", "UnicodeError"),
    ("UnicodeError", "ValueError"),
    ("ValueError", "Exception"),
    ("TypeError", "Exception"),
    ("NameError", "Exception"),
];

impl PyError {
    /// An exception of `class` with `repr` as Python prints it.
    pub fn new(class: &'static str, repr: impl Into<String>) -> PyError {
        PyError {
            class,
            repr: repr.into(),
        }
    }

    /// `class(message)`, the repr of an exception made from one string.
    pub fn with_message(class: &'static str, message: &str) -> PyError {
        PyError::new(class, format!("{class}({})", py_str(message)))
    }

    /// `class(code, b'text')`: smtplib's response exceptions.
    pub fn response(class: &'static str, code: i32, text: &[u8]) -> PyError {
        PyError::new(class, format!("{class}({code}, {})", py_bytes(text)))
    }

    /// The class and its bases, most derived first, up to `Exception`.
    pub fn classes(&self) -> Vec<&'static str> {
        let mut out = vec![self.class];
        let mut class = self.class;
        while let Some((_, base)) = BASES.iter().find(|(c, _)| *c == class) {
            out.push(base);
            class = base;
        }
        out
    }

    /// Whether this is, or derives from, `class`.
    pub fn is(&self, class: &str) -> bool {
        self.classes().contains(&class)
    }
}

impl fmt::Display for PyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr)
    }
}

/// Python's `repr()` of a `str`.
pub fn py_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` (and `str()`) of `bytes`: what the grader compares
/// `resp` values against (`str(conn.dele(1))` is `"b'+OK ...'"`).
pub fn py_bytes(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(quote as char);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b == quote => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote as char);
    out
}

/// Python's `repr()` of a value: what the grader prints as `Expect` and `Actual`.
pub fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.fract() == 0.0 && f.is_finite() => format!("{f:.1}"),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => py_str(s),
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", py_str(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `==` between two values (`1 == 1.0`, `True == 1`).
fn py_eq(a: &Value, b: &Value) -> bool {
    fn number(v: &Value) -> Option<f64> {
        match v {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
    match (a, b) {
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| py_eq(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::List(_) => "list",
        Value::Map(_) => "dict",
    }
}

/// `actual[key]` on a dict, as Python evaluates it.
fn index_key<'a>(actual: &'a Value, key: &str) -> Result<&'a Value, PyError> {
    match actual {
        Value::Map(map) => map
            .get(key)
            .ok_or_else(|| PyError::new("KeyError", format!("KeyError({})", py_str(key)))),
        Value::List(_) => Err(PyError::with_message(
            "TypeError",
            "list indices must be integers or slices, not str",
        )),
        other => Err(PyError::with_message(
            "TypeError",
            &format!("'{}' object is not subscriptable", type_name(other)),
        )),
    }
}

/// `actual[i]`, as Python evaluates it.
fn index_at(actual: &Value, i: usize) -> Result<&Value, PyError> {
    match actual {
        Value::List(items) => items
            .get(i)
            .ok_or_else(|| PyError::with_message("IndexError", "list index out of range")),
        Value::Map(map) => map
            .get(&i.to_string())
            .ok_or_else(|| PyError::new("KeyError", format!("KeyError({i})"))),
        other => Err(PyError::with_message(
            "TypeError",
            &format!("'{}' object is not subscriptable", type_name(other)),
        )),
    }
}

fn assertion(what: String) -> PyError {
    PyError::new("AssertionError", what)
}

/// Where an expectation and a result part: the first differing key or item.
fn mismatch(path: &str, want: &Value, got: &Value) -> PyError {
    assertion(format!(
        "{path}: expected {}, got {}",
        py_repr(want),
        py_repr(got)
    ))
}

fn text_of(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => py_repr(other),
    }
}

/// The CS305 grader's check of a step's result, raising what it raises:
/// - a map: for each key, a string must be a prefix of `actual[key]`
///   (`actual[k][:len(v)] == v`; written `/…/` it is a regular expression,
///   mailnet's extension), anything else must equal `actual[key]`;
/// - a list: `[]` means `actual` is empty; otherwise item `i` (a map: each
///   of its keys) must equal `actual[i]` — extra actual items do not matter.
///
/// A missing key is `KeyError`, a missing item `IndexError`, indexing what
/// cannot be indexed `TypeError`, and a difference `AssertionError` naming
/// the first differing key.
pub fn check(expect: &Value, actual: &Value) -> Result<(), PyError> {
    match expect {
        Value::Map(want) => {
            for (key, w) in want {
                let got = index_key(actual, key)?;
                match w {
                    Value::Str(prefix) => {
                        if let Some(re) = pattern(w) {
                            if !re.is_match(&text_of(got)) {
                                return Err(mismatch(key, w, got));
                            }
                            continue;
                        }
                        let Value::Str(text) = got else {
                            return Err(PyError::with_message(
                                "TypeError",
                                &format!("'{}' object is not subscriptable", type_name(got)),
                            ));
                        };
                        let n = prefix.chars().count();
                        if !text.chars().take(n).eq(prefix.chars()) {
                            return Err(mismatch(key, w, got));
                        }
                    }
                    _ => {
                        if !py_eq(got, w) {
                            return Err(mismatch(key, w, got));
                        }
                    }
                }
            }
            Ok(())
        }
        Value::List(want) => {
            if want.is_empty() {
                let len = match actual {
                    Value::List(items) => items.len(),
                    Value::Map(map) => map.len(),
                    Value::Str(s) => s.chars().count(),
                    other => {
                        return Err(PyError::with_message(
                            "TypeError",
                            &format!("object of type '{}' has no len()", type_name(other)),
                        ))
                    }
                };
                if len != 0 {
                    return Err(assertion(format!(
                        "expected nothing, got {}",
                        py_repr(actual)
                    )));
                }
            }
            for (i, item) in want.iter().enumerate() {
                let got = index_at(actual, i)?;
                match item {
                    Value::Map(fields) => {
                        for (key, w) in fields {
                            let g = index_key(got, key)?;
                            if let Some(re) = pattern(w) {
                                if !re.is_match(&text_of(g)) {
                                    return Err(mismatch(&format!("[{i}].{key}"), w, g));
                                }
                                continue;
                            }
                            if !py_eq(g, w) {
                                return Err(mismatch(&format!("[{i}].{key}"), w, g));
                            }
                        }
                    }
                    other => {
                        if !py_eq(got, other) {
                            return Err(mismatch(&format!("[{i}]"), other, got));
                        }
                    }
                }
            }
            Ok(())
        }
        // The grader checks only maps and lists; any other expectation passes.
        _ => Ok(()),
    }
}

/// A Python-style map from `(key, value)` pairs.
pub fn dict<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(yaml: &str) -> Value {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_hierarchy_is_pythons() {
        let e = PyError::response("SMTPSenderRefused", 550, b"no");
        assert_eq!(
            e.classes(),
            [
                "SMTPSenderRefused",
                "SMTPResponseException",
                "SMTPException",
                "OSError",
                "Exception"
            ]
        );
        assert!(PyError::with_message("TimeoutError", "x").is("AssertionError"));
        assert!(PyError::with_message("ConnectionRefusedError", "x").is("OSError"));
        assert!(!PyError::with_message("error_proto", "x").is("OSError"));
    }

    #[test]
    fn reprs_are_pythons() {
        assert_eq!(
            py_bytes(b"+OK message 1 deleted"),
            "b'+OK message 1 deleted'"
        );
        assert_eq!(py_bytes(b"+OK it's"), "b\"+OK it's\"");
        assert_eq!(py_bytes(b"+OK \xff\t"), "b'+OK \\xff\\t'");
        assert_eq!(py_str("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(
            py_repr(&v("[{mesg_num: 1, octets: 20}]")),
            "[{'mesg_num': 1, 'octets': 20}]"
        );
        assert_eq!(
            PyError::response("SMTPDataError", 554, b"no").repr,
            "SMTPDataError(554, b'no')"
        );
    }

    #[test]
    fn the_graders_rules_and_exceptions() {
        let ok = |e: &str, a: &str| check(&v(e), &v(a));
        assert!(ok("[{mesg_num: 1}]", "[{mesg_num: 1, octets: 171}]").is_ok());
        // Extra messages do not matter: only the listed items are compared.
        assert!(ok("[{mesg_num: 1}]", "[{mesg_num: 1}, {mesg_num: 2}]").is_ok());
        assert_eq!(
            ok("[{mesg_num: 1}]", "[{mesg_num: 2}]").unwrap_err().class,
            "AssertionError"
        );
        assert_eq!(ok("[{mesg_num: 1}]", "[]").unwrap_err().class, "IndexError");
        assert_eq!(
            ok("[{msg_num: 1}]", "[{mesg_num: 1}]").unwrap_err().class,
            "KeyError"
        );
        assert!(ok("[]", "[]").is_ok());
        assert_eq!(
            ok("[]", "[{count: 1}]").unwrap_err().class,
            "AssertionError"
        );
        // Strings in a map are prefixes; within list items they must be equal.
        assert!(ok("{resp: \"b'+OK\"}", "{resp: \"b'+OK message 1 deleted'\"}").is_ok());
        assert_eq!(
            ok("[{s: ab}]", "[{s: abc}]").unwrap_err().class,
            "AssertionError"
        );
        assert_eq!(ok("{from: a}", "{from: ~}").unwrap_err().class, "TypeError");
        assert_eq!(ok("{resp: x}", "~").unwrap_err().class, "TypeError");
        assert!(ok("[{count: 1}]", "[{count: 1.0}]").is_ok());
        assert!(ok("{code: '/^25[0-9]$/'}", "{code: 250}").is_ok());
        let e = ok(
            "{from: usr1@gmail.com, subject: Hi}",
            "{from: usr1@gmail.com, subject: Ho}",
        )
        .unwrap_err();
        assert_eq!(e.repr, "subject: expected 'Hi', got 'Ho'");
    }
}

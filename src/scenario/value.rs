//! A YAML value with the CS305 grader's matching rules.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Any YAML value (serde-saphyr has no DOM of its own).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// Text.
    Str(String),
    /// A sequence.
    List(Vec<Value>),
    /// A mapping.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A number, from an integer, a float or numeric text.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A string, or each string of a list.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Value::Str(s) => vec![s.clone()],
            Value::List(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl fmt::Display for Value {
    /// JSON, as the seeds' grader prints `Expect` and `Actual`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).unwrap_or_default())
    }
}

/// An expected string written `/…/`, as a regular expression (one that does
/// not compile matches nothing); `None` for any other value.
pub fn pattern(expect: &Value) -> Option<regex_lite::Regex> {
    let Value::Str(text) = expect else {
        return None;
    };
    let source = text.strip_prefix('/')?.strip_suffix('/')?;
    Some(regex_lite::Regex::new(source).unwrap_or_else(|_| {
        regex_lite::Regex::new("[^\\s\\S]").expect("a pattern matching nothing compiles")
    }))
}

/// Whether `actual` matches `expect` by the CS305 grader's rules: in a map,
/// only the listed keys count; a string matches as a prefix (or, written
/// `/…/`, as a regular expression); other values must be equal; a list
/// matches item by item and must have as many items (`[]` means none).
pub fn matches(expect: &Value, actual: &Value) -> bool {
    match (expect, actual) {
        (Value::Map(want), Value::Map(got)) => want
            .iter()
            .all(|(k, w)| got.get(k).is_some_and(|g| matches(w, g))),
        (Value::List(want), Value::List(got)) => {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| matches(w, g))
        }
        (Value::Str(want), got) => {
            let got_text = match got {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return false,
            };
            match pattern(expect) {
                Some(re) => re.is_match(&got_text),
                None => got_text.starts_with(want.as_str()),
            }
        }
        (Value::Int(w), Value::Float(g)) | (Value::Float(g), Value::Int(w)) => {
            (*w as f64 - g).abs() < f64::EPSILON
        }
        (w, g) => w == g,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(yaml: &str) -> Value {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn cs305_rules() {
        assert!(matches(
            &v("[{msg_num: 1}]"),
            &v("[{msg_num: 1, octets: 171}]")
        ));
        assert!(!matches(
            &v("[{msg_num: 1}]"),
            &v("[{msg_num: 2, octets: 171}]")
        ));
        assert!(!matches(&v("[{msg_num: 1}]"), &v("[]")));
        assert!(matches(&v("[]"), &v("[]")));
        assert!(matches(
            &v("{resp: \"b'+OK\"}"),
            &v("{resp: \"b'+OK message 1 deleted'\"}")
        ));
        assert!(matches(
            &v("{from: usr1@mail.sustech.edu.cn, subject: Test}"),
            &v("{from: usr1@mail.sustech.edu.cn, subject: Test Subject2}")
        ));
        assert!(!matches(&v("{count: 1}"), &v("{count: 2, size: 10}")));
        assert!(matches(&v("{code: '/^25[0-9]$/'}"), &v("{code: 250}")));
        assert!(!matches(&v("{missing: 1}"), &v("{other: 1}")));
    }
}

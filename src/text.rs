//! Wording shared by every message a person reads.

/// `1 message`, `2 messages`: a count with its noun in the right number
/// (regular plurals only, which is every noun mailnet counts).
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `file:line:column: message`, the one format of every file error
/// (`file: message` when the place is unknown, as for a file that cannot
/// be read at all).
pub fn located(file: &str, at: Option<(u64, u64)>, message: &str) -> String {
    match at {
        Some((line, column)) if line > 0 => format!("{file}:{line}:{column}: {message}"),
        _ => format!("{file}: {message}"),
    }
}

/// A YAML parser's error as `(place, message)`: the first line of its
/// words, without the `error:` and `line L column C:` it may start with.
pub fn yaml_message(error: &serde_saphyr::Error) -> (Option<(u64, u64)>, String) {
    let text = error.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut first = first.strip_prefix("error: ").unwrap_or(first);
    let at = error
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line(), l.column()));
    if let Some((line, column)) = at {
        let prefix = format!("line {line} column {column}");
        if let Some(rest) = first.strip_prefix(&prefix) {
            first = rest.trim_start_matches([':', ',', ' ']);
        }
    }
    (at, first.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_everything_else_plural() {
        assert_eq!(super::count(1u32, "message"), "1 message");
        assert_eq!(super::count(0u32, "server"), "0 servers");
        assert_eq!(super::count(2u64, "server"), "2 servers");
    }

    #[test]
    fn file_errors_have_one_format() {
        assert_eq!(
            super::located("a.yaml", Some((3, 7)), "bad"),
            "a.yaml:3:7: bad"
        );
        assert_eq!(super::located("a.yaml", Some((0, 0)), "bad"), "a.yaml: bad");
        assert_eq!(super::located("a.yaml", None, "bad"), "a.yaml: bad");
    }
}

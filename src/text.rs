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

/// Appends `n` in decimal, zero-padded to `width` digits (0: as
/// `to_string` writes it). For what is written per message (file names,
/// queue ids, transcript lines): `format!` of a padded integer costs over a
/// thousand instructions, and `itoa`'s two-digits-a-step writer about a
/// third of a digit-by-digit loop's.
pub fn push_decimal(out: &mut String, n: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n);
    out.reserve(width.max(digits.len()));
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
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
    fn decimals_are_padded_like_format() {
        for (n, width) in [
            (0, 0),
            (0, 3),
            (7, 1),
            (42, 20),
            (u64::MAX, 20),
            (u64::MAX, 5),
            (123, 2),
        ] {
            let mut out = String::from("x");
            super::push_decimal(&mut out, n, width);
            assert_eq!(out, format!("x{n:0width$}"));
        }
    }

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

/// A file error in words a user knows: `no such file` rather than
/// `No such file or directory (os error 2)`.
pub fn io_error(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound => "no such file".into(),
        ErrorKind::PermissionDenied => "permission denied: cannot read it".into(),
        ErrorKind::IsADirectory => "a folder, not a file".into(),
        ErrorKind::InvalidData => "not text (the file is not UTF-8)".into(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_string(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod io_error_tests {
    #[test]
    fn os_errors_read_as_words() {
        let missing = std::fs::read_to_string("/nonexistent/mailnet/file.yaml").unwrap_err();
        assert_eq!(super::io_error(&missing), "no such file");
        let other = std::io::Error::from_raw_os_error(28);
        assert_eq!(super::io_error(&other), "No space left on device");
    }
}

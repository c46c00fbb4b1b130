//! The exact COMP 431 (UNC) HW1/HW3 grammar, for graders who ask for it
//! (`policy: { strict: true }`):
//!
//! ```text
//! <helo-cmd>      ::= "HELO" <whitespace> <domain> <nullspace> <CRLF>
//! <mail-from-cmd> ::= "MAIL" <whitespace> "FROM:" <nullspace> <reverse-path> <nullspace> <CRLF>
//! <rcpt-to-cmd>   ::= "RCPT" <whitespace> "TO:" <nullspace> <forward-path> <nullspace> <CRLF>
//! <data-cmd>      ::= "DATA" <nullspace> <CRLF>
//! <path>          ::= "<" <mailbox> ">"        <mailbox> ::= <local-part> "@" <domain>
//! <local-part>    ::= <string>                 <string>  ::= <char> | <char> <string>
//! <char>          ::= any ASCII character except <special> or <SP>
//! <domain>        ::= <element> | <element> "." <domain>
//! <element>       ::= <letter> | <name>        <name>    ::= <letter> <let-dig-str>
//! <special>       ::= "<" | ">" | "(" | ")" | "[" | "]" | "\" | "." | "," | ";" | ":" | "@" | """
//! ```
//!
//! A line whose command token (`HELO`, `MAIL<ws>FROM:`, `RCPT<ws>TO:`, `DATA`)
//! does not match is `500`; a recognised command with a bad argument is `501`.
//! Verbs are matched case-insensitively, as RFC 5321 requires.

/// What the strict grammar says about one line (without its CRLF).
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The line follows the grammar (or is a command the grammar does not cover).
    Ok,
    /// `500`: the command is not recognised.
    Unrecognized,
    /// `501`: the command is recognised but an argument is wrong; says which.
    BadArgument(&'static str),
}

/// Checks `line` against the HW1/HW3 grammar.
pub fn check(line: &str) -> Verdict {
    let upper = line.to_ascii_uppercase();
    let verb = upper.split([' ', '\t']).next().unwrap_or("");
    match verb {
        "HELO" => {
            let Some(arg) = line.get(4..).and_then(strip_whitespace) else {
                return Verdict::Unrecognized;
            };
            let arg = arg.trim_end_matches([' ', '\t']);
            if domain(arg) {
                Verdict::Ok
            } else {
                Verdict::BadArgument("domain")
            }
        }
        "MAIL" => path_command(line, "FROM:", "reverse-path"),
        "RCPT" => path_command(line, "TO:", "forward-path"),
        "DATA"
            if !line
                .get(4..)
                .unwrap_or("")
                .trim_matches([' ', '\t'])
                .is_empty() =>
        {
            Verdict::Unrecognized
        }
        _ if upper.starts_with("MAIL") || upper.starts_with("RCPT") => Verdict::Unrecognized,
        _ => Verdict::Ok,
    }
}

fn path_command(line: &str, keyword: &str, what: &'static str) -> Verdict {
    // Slices by `get`: a multi-byte character where a keyword should be
    // is a syntax error, never a panic.
    let Some(rest) = line.get(4..).and_then(strip_whitespace) else {
        return Verdict::Unrecognized;
    };
    let Some(arg) = rest
        .get(..keyword.len())
        .filter(|k| k.eq_ignore_ascii_case(keyword))
        .and_then(|_| rest.get(keyword.len()..))
    else {
        return Verdict::Unrecognized;
    };
    let arg = arg.trim_matches([' ', '\t']);
    let Some(inner) = arg.strip_prefix('<').and_then(|a| a.strip_suffix('>')) else {
        return Verdict::BadArgument(what);
    };
    let Some((local, dom)) = inner.rsplit_once('@') else {
        return Verdict::BadArgument("mailbox");
    };
    if local.is_empty() || !local.chars().all(plain_char) {
        return Verdict::BadArgument("local-part");
    }
    if !domain(dom) {
        return Verdict::BadArgument("domain");
    }
    Verdict::Ok
}

/// `<whitespace>` is one or more SP or TAB; returns what follows it.
fn strip_whitespace(s: &str) -> Option<&str> {
    let trimmed = s.trim_start_matches([' ', '\t']);
    (trimmed.len() < s.len()).then_some(trimmed)
}

fn plain_char(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_control() && c != ' ' && !"<>()[]\\.,;:@\"".contains(c)
}

fn domain(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|element| {
            let mut chars = element.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hw1_cases() {
        assert_eq!(check("HELO snapper.cs.unc.edu"), Verdict::Ok);
        assert_eq!(check("HELO"), Verdict::Unrecognized);
        assert_eq!(check("HELO 1abc.edu"), Verdict::BadArgument("domain"));
        assert_eq!(check("MAIL FROM:<jasleen@cs.unc.edu>"), Verdict::Ok);
        assert_eq!(check("MAIL FROM: <jasleen@cs.unc.edu>  "), Verdict::Ok);
        assert_eq!(check("mail  from:<a@b>"), Verdict::Ok);
        assert_eq!(check("MAILFROM:<a@b>"), Verdict::Unrecognized);
        assert_eq!(check("MAIL FRM:<a@b>"), Verdict::Unrecognized);
        assert_eq!(check("MAIL FROM:a@b"), Verdict::BadArgument("reverse-path"));
        assert_eq!(
            check("MAIL FROM:<a.b@c>"),
            Verdict::BadArgument("local-part")
        );
        assert_eq!(check("MAIL FROM:<ab@c.1d>"), Verdict::BadArgument("domain"));
        assert_eq!(
            check("MAIL FROM:<ab@cd> x"),
            Verdict::BadArgument("reverse-path")
        );
        assert_eq!(check("RCPT TO:<smithfd@cs.unc.edu>"), Verdict::Ok);
        assert_eq!(check("RCPT TO <a@b>"), Verdict::Unrecognized);
        assert_eq!(check("DATA"), Verdict::Ok);
        assert_eq!(check("DATA  "), Verdict::Ok);
        assert_eq!(check("DATA x"), Verdict::Unrecognized);
        assert_eq!(check("QUIT"), Verdict::Ok);
    }

    #[test]
    fn multi_byte_characters_are_errors_not_panics() {
        assert_eq!(check("MAIL FRO€"), Verdict::Unrecognized);
        assert_eq!(check("RCPT T€:<a@b>"), Verdict::Unrecognized);
        assert_eq!(check("MAIL FROM:<€@b>"), Verdict::BadArgument("local-part"));
        assert_eq!(check("HELO €"), Verdict::BadArgument("domain"));
        assert_eq!(check("DATA €"), Verdict::Unrecognized);
    }

    proptest::proptest! {
        /// No line makes the grammar check panic.
        #[test]
        fn any_line_gets_a_verdict(line in "(HELO|MAIL|RCPT|DATA|mail from:|RCPT TO:)?\\PC{0,16}") {
            let _ = check(&line);
        }
    }
}

//! Mailbox address checks shared by the server, the client and the agent.

/// Splits `local@domain` and checks it loosely, as real servers do: a
/// non-empty local part without spaces or angle brackets, and a domain that is
/// a dotted name or an address literal. Returns `(local, domain)`.
pub fn split_address(address: &str) -> Option<(&str, &str)> {
    // Byte searches: '@', ' ' and '.' are ASCII, never inside a multi-byte
    // character, and the char searchers cost more than these short
    // strings take to scan.
    let at = address.bytes().rposition(|b| b == b'@')?;
    let (local, domain) = (&address[..at], &address[at + 1..]);
    if local.is_empty() || local.len() > 64 || domain.is_empty() || domain.len() > 255 {
        return None;
    }
    if local
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'<' || b == b'>')
        || (!local.starts_with('"') && local.bytes().any(|b| b == b' '))
    {
        return None;
    }
    if !valid_domain(domain) {
        return None;
    }
    Some((local, domain))
}

/// A dotted domain of letters, digits, `-` and non-ASCII (SMTPUTF8), or an
/// address literal `[...]`.
pub fn valid_domain(domain: &str) -> bool {
    if domain.starts_with('[') && domain.ends_with(']') {
        return domain.len() > 2;
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return false;
    }
    // `domain.split('.')`, by hand: a char searcher costs more than these
    // few bytes take to scan.
    let bytes = domain.as_bytes();
    let mut start = 0;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'.')
            .map_or(bytes.len(), |dot| start + dot);
        if !valid_label(&domain[start..end]) {
            return false;
        }
        if end == bytes.len() {
            return true;
        }
        start = end + 1;
    }
}

/// One label of a dotted domain: letters, digits, `-` (not first or
/// last), `_` and non-ASCII letters.
fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && (label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_'))
}

/// The domain of an address, lower-cased.
pub fn domain_of(address: &str) -> Option<String> {
    split_address(address).map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert_eq!(split_address("Usr1@Gmail.com"), Some(("Usr1", "Gmail.com")));
        assert_eq!(split_address("a@[127.0.0.1]"), Some(("a", "[127.0.0.1]")));
        assert_eq!(split_address("用户@例子.中国"), Some(("用户", "例子.中国")));
        for bad in [
            "bob", "bob@", "@x.y", "a b@x.y", "a@x..y", "a@-x.y", "a@x y",
        ] {
            assert_eq!(split_address(bad), None, "{bad}");
        }
        for odd in [
            "a@b@c.d",
            "@",
            "a@",
            "x@[]",
            "x@[1]",
            "\"a b\"@c.d",
            "a\tb@c.d",
            "a@b.",
            "a@.",
            "a@b_c.d",
            "a@é.fr",
            "a@x\u{2028}y.z",
            "a@x.y-",
            "<a>@b.c",
        ] {
            let reference = odd.rsplit_once('@').filter(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.is_empty()
                    && domain.len() <= 255
                    && !local
                        .chars()
                        .any(|c| c.is_ascii_control() || c == '<' || c == '>')
                    && (local.starts_with('"') || !local.contains(' '))
                    && valid_domain(domain)
            });
            assert_eq!(split_address(odd), reference, "{odd}");
        }
        for domain in [
            "",
            ".",
            "..",
            "a",
            "a.",
            "a..b",
            ".a",
            "a.b.c",
            "-a.b",
            "a-.b",
            "a_b.c",
            "é.fr",
            "x\u{2028}.y",
            "[1.2.3.4]",
            "[]",
            "ab.c.",
        ] {
            let stripped = domain.strip_suffix('.').unwrap_or(domain);
            let reference = if domain.starts_with('[') && domain.ends_with(']') {
                domain.len() > 2
            } else {
                !stripped.is_empty() && stripped.split('.').all(valid_label)
            };
            assert_eq!(valid_domain(domain), reference, "{domain:?}");
        }
        assert_eq!(
            domain_of("a@MAIL.Sustech.edu.cn"),
            Some("mail.sustech.edu.cn".into())
        );
    }
}

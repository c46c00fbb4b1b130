//! Turning an address into a folder name that can never escape its parent.

/// The folder name for an address: lower-cased; bytes outside
/// `[a-z0-9@._+-]` are written `%XX`; a leading `.` is escaped too (so neither
/// `..` nor a hidden name can appear); very long names keep a prefix plus a hash.
/// The result never contains `/`, `\`, NUL or `..` as a whole component.
pub fn mailbox_folder(address: &str) -> String {
    const MAX: usize = 120;
    // Nearly every address is already a folder name: one copy, no escaping.
    let plain = !address.is_empty()
        && address.len() <= MAX
        && !address.starts_with('.')
        && address.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'@' | b'_' | b'+' | b'-' | b'.')
        });
    if plain {
        return address.to_string();
    }
    let mut out = String::with_capacity(address.len());
    for (i, byte) in address.to_ascii_lowercase().bytes().enumerate() {
        let plain = byte.is_ascii_lowercase()
            || byte.is_ascii_digit()
            || matches!(byte, b'@' | b'_' | b'+' | b'-')
            || (byte == b'.' && i > 0);
        if plain {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    if out.len() > MAX {
        // FNV-1a: stable across runs and versions, unlike std's hasher.
        let hash = address
            .to_ascii_lowercase()
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
        out.truncate(MAX - 17);
        out.push_str(&format!("~{hash:016x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_stay_readable() {
        assert_eq!(mailbox_folder("Usr1@Gmail.com"), "usr1@gmail.com");
        assert_eq!(mailbox_folder("a.b+tag@x-y.cn"), "a.b+tag@x-y.cn");
    }

    #[test]
    fn nothing_escapes() {
        for hostile in [
            "../../etc/passwd",
            "/abs",
            "a/../../b",
            "..",
            ".",
            "a\0b",
            "a\\b",
            "",
            ".hidden",
        ] {
            let folder = mailbox_folder(hostile);
            assert!(
                !folder.contains('/') && !folder.contains('\\') && !folder.contains('\0'),
                "{folder}"
            );
            assert!(!folder.starts_with('.'), "{folder}");
            assert!(!folder.is_empty());
        }
        assert_eq!(mailbox_folder("../x"), "%2E.%2Fx");
    }

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let a = mailbox_folder(&format!("{}@a.test", "x".repeat(5000)));
        let b = mailbox_folder(&format!("{}@b.test", "x".repeat(5000)));
        assert!(a.len() <= 120);
        assert_ne!(a, b);
    }
}

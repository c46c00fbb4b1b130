//! TSIG keys in the BIND/nsupdate key-file format:
//! `key "<name>" { algorithm hmac-sha256; secret "<base64>"; };`

use std::path::Path;

use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};

use super::FileError;

/// A key file that cannot be used.
pub type KeyError = FileError;

/// How far apart the signer's and the hub's clocks may be (RFC 8945 §5.2.3
/// recommends 300 s).
pub const FUDGE: u16 = 300;

/// A shared secret for signing updates.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, as both sides know it (e.g. `class`).
    pub name: String,
    /// The secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("TsigKey").field("name", &self.name).finish()
    }
}

impl TsigKey {
    /// A new key with 32 random octets (the HMAC-SHA256 block's worth).
    pub fn generate(name: &str) -> TsigKey {
        let mut secret = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .expect("the system's random source works");
        TsigKey {
            name: name.trim_end_matches('.').to_string(),
            secret,
        }
    }

    /// The key in BIND's key-file format, which `nsupdate -k` reads.
    pub fn to_bind(&self) -> String {
        format!(
            "key \"{}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
            self.name,
            data_encoding::BASE64.encode(&self.secret)
        )
    }

    /// The hickory signer for this key.
    pub fn signer(&self) -> Result<TSigner, String> {
        let name = Name::from_ascii(&self.name).map_err(|e| e.to_string())?;
        TSigner::new(self.secret.clone(), TsigAlgorithm::HmacSha256, name, FUDGE)
            .map_err(|e| e.to_string())
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<TsigKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        TsigKey::parse(&text).map_err(|(offset, what)| {
            let (line, column) = line_column(&text, offset);
            KeyError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                what,
            }
        })
    }

    /// Reads the key file at `path`, or creates it (mode 0600) with a new
    /// key named `name`; the key, and whether it was created.
    pub fn load_or_create(path: &Path, name: &str) -> Result<(TsigKey, bool), KeyError> {
        if path.exists() {
            return TsigKey::load(path).map(|key| (key, false));
        }
        let key = TsigKey::generate(name);
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        std::io::Write::write_all(&mut file, key.to_bind().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok((key, true))
    }

    /// Parses BIND's key statement; on error the byte offset and what is wrong.
    pub fn parse(text: &str) -> Result<TsigKey, (usize, String)> {
        let tokens = tokens(text)?;
        let mut at = 0;
        let expect = |at: &mut usize, want: &str| -> Result<(), (usize, String)> {
            match tokens.get(*at) {
                Some((offset, token)) if token.eq_ignore_ascii_case(want) => {
                    *at += 1;
                    let _ = offset;
                    Ok(())
                }
                Some((offset, token)) => {
                    Err((*offset, format!("expected `{want}`, found `{token}`")))
                }
                None => Err((
                    text.len(),
                    format!("expected `{want}`, found the end of the file"),
                )),
            }
        };
        let word = |at: &mut usize, what: &str| -> Result<(usize, String), (usize, String)> {
            match tokens.get(*at) {
                Some((offset, token)) if !matches!(token.as_str(), "{" | "}" | ";") => {
                    *at += 1;
                    Ok((*offset, token.clone()))
                }
                Some((offset, token)) => {
                    Err((*offset, format!("expected {what}, found `{token}`")))
                }
                None => Err((
                    text.len(),
                    format!("expected {what}, found the end of the file"),
                )),
            }
        };
        expect(&mut at, "key")?;
        let (name_at, name) = word(&mut at, "the key's name")?;
        if Name::from_ascii(&name).is_err() || name.is_empty() {
            return Err((name_at, format!("`{name}` is not a valid key name")));
        }
        expect(&mut at, "{")?;
        let mut algorithm = None;
        let mut secret = None;
        loop {
            match tokens.get(at) {
                Some((_, token)) if token == "}" => {
                    at += 1;
                    break;
                }
                Some(_) => {}
                None => {
                    return Err((
                        text.len(),
                        "the key statement is not closed with `};`".into(),
                    ))
                }
            }
            let (field_at, field) = word(&mut at, "`algorithm` or `secret`")?;
            let (value_at, value) = word(&mut at, "a value")?;
            expect(&mut at, ";")?;
            match field.to_ascii_lowercase().as_str() {
                "algorithm" => {
                    if !value.eq_ignore_ascii_case("hmac-sha256") {
                        return Err((
                            value_at,
                            format!("algorithm `{value}` is not supported: use hmac-sha256"),
                        ));
                    }
                    algorithm = Some(());
                }
                "secret" => {
                    let decoded = data_encoding::BASE64
                        .decode(value.as_bytes())
                        .map_err(|e| (value_at, format!("the secret is not base64: {e}")))?;
                    if decoded.len() < 16 {
                        return Err((
                            value_at,
                            format!(
                                "the secret is {} octets; at least 16 are needed",
                                decoded.len()
                            ),
                        ));
                    }
                    secret = Some(decoded);
                }
                other => {
                    return Err((
                        field_at,
                        format!("unknown field `{other}` (expected `algorithm` or `secret`)"),
                    ))
                }
            }
        }
        expect(&mut at, ";")?;
        if let Some((offset, token)) = tokens.get(at) {
            return Err((
                *offset,
                format!("unexpected `{token}` after the key statement"),
            ));
        }
        if algorithm.is_none() {
            return Err((text.len(), "the key has no `algorithm hmac-sha256;`".into()));
        }
        let Some(secret) = secret else {
            return Err((text.len(), "the key has no `secret \"...\";`".into()));
        };
        Ok(TsigKey {
            name: name.trim_end_matches('.').to_string(),
            secret,
        })
    }
}

/// Splits BIND configuration text into (offset, token): quoted strings
/// (without quotes), words, and `{`, `}`, `;`; comments (`#`, `//`, `/* */`) skipped.
fn tokens(text: &str) -> Result<Vec<(usize, String)>, (usize, String)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' || text[i..].starts_with("//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if text[i..].starts_with("/*") {
            match text[i + 2..].find("*/") {
                Some(end) => i += end + 4,
                None => return Err((i, "a comment is not closed with `*/`".into())),
            }
        } else if matches!(c, b'{' | b'}' | b';') {
            out.push((i, (c as char).to_string()));
            i += 1;
        } else if c == b'"' {
            match text[i + 1..].find('"') {
                Some(end) => {
                    out.push((i, text[i + 1..i + 1 + end].to_string()));
                    i += end + 2;
                }
                None => return Err((i, "a quoted string is not closed".into())),
            }
        } else {
            let start = i;
            while i < bytes.len()
                && !bytes[i].is_ascii_whitespace()
                && !matches!(bytes[i], b'{' | b'}' | b';' | b'"')
            {
                i += 1;
            }
            out.push((start, text[start..i].to_string()));
        }
    }
    Ok(out)
}

/// The 1-based line and column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back() {
        let key = TsigKey::generate("class");
        assert_eq!(key.secret.len(), 32);
        assert_eq!(TsigKey::parse(&key.to_bind()).unwrap(), key);
    }

    #[test]
    fn reads_what_tsig_keygen_writes() {
        let text = "key \"class-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"9Wy8UDEtMu6ulmiaFyGk1I+GOWLCaMWmuhtjNVDi9NM=\";\n};\n";
        let key = TsigKey::parse(text).unwrap();
        assert_eq!(key.name, "class-key");
        assert_eq!(key.secret.len(), 32);
        // Comments and an unquoted name, as hand-written files have.
        let text = "# the class\nkey class. { algorithm HMAC-SHA256; /* c */ secret \"9Wy8UDEtMu6ulmiaFyGk1I+GOWLCaMWmuhtjNVDi9NM=\"; };";
        assert_eq!(TsigKey::parse(text).unwrap().name, "class");
    }

    #[test]
    fn errors_point_at_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        std::fs::write(
            &path,
            "key \"k\" {\n\talgorithm hmac-md5;\n\tsecret \"AAAA\";\n};\n",
        )
        .unwrap();
        let error = TsigKey::load(&path).unwrap_err().to_string();
        assert!(
            error.ends_with("k.key:2:12: algorithm `hmac-md5` is not supported: use hmac-sha256"),
            "{error}"
        );
        std::fs::write(
            &path,
            "key \"k\" {\n\talgorithm hmac-sha256;\n\tsecret \"!!\";\n};\n",
        )
        .unwrap();
        let error = TsigKey::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("k.key:3:9: the secret is not base64"),
            "{error}"
        );
        std::fs::write(&path, "key \"k\" {\n\talgorithm hmac-sha256;\n").unwrap();
        let error = TsigKey::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("k.key:3:1: the key statement is not closed"),
            "{error}"
        );
    }

    #[test]
    fn load_or_create_makes_a_private_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("class.key");
        let (key, created) = TsigKey::load_or_create(&path, "class").unwrap();
        assert!(created);
        let (again, created) = TsigKey::load_or_create(&path, "other").unwrap();
        assert!(!created);
        assert_eq!(key, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{key:?}").contains(&data_encoding::BASE64.encode(&key.secret)));
    }
}

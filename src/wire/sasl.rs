//! SASL responses as both servers decode them (RFC 4616 PLAIN, and the
//! base64 lines of LOGIN).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Why a SASL response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*`.
    #[error("authentication cancelled")]
    Cancelled,
    /// Not base64, or not UTF-8 once decoded.
    #[error("cannot decode response")]
    Undecodable,
    /// Not `authzid NUL user NUL password`.
    #[error("malformed PLAIN response")]
    Malformed,
}

/// A user name and password from a PLAIN response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication identity.
    pub user: String,
    /// The password.
    pub password: String,
}

/// Decodes one base64 response line to text.
pub fn decode_base64(line: &str) -> Result<String, SaslError> {
    if line.trim() == "*" {
        return Err(SaslError::Cancelled);
    }
    let bytes = B64
        .decode(line.trim())
        .map_err(|_| SaslError::Undecodable)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Undecodable)
}

/// Decodes a PLAIN response (`[authzid] NUL user NUL password`, base64).
pub fn decode_plain(line: &str) -> Result<Credentials, SaslError> {
    let decoded = decode_base64(line)?;
    let mut parts = decoded.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_authzid), Some(user), Some(password), None) => Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        }),
        _ => Err(SaslError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_responses() {
        assert_eq!(
            decode_plain(&B64.encode("\0usr1@gmail.com\0pw")),
            Ok(Credentials {
                user: "usr1@gmail.com".into(),
                password: "pw".into()
            })
        );
        assert_eq!(decode_plain("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_plain("!!"), Err(SaslError::Undecodable));
        assert_eq!(decode_plain(&B64.encode("user")), Err(SaslError::Malformed));
    }

    proptest! {
        /// Any user and password without NUL survive encoding and decoding.
        #[test]
        fn plain_round_trips(user in "[^\0]{0,20}", password in "[^\0]{0,20}") {
            let line = B64.encode(format!("\0{user}\0{password}"));
            prop_assert_eq!(decode_plain(&line), Ok(Credentials { user, password }));
        }

        /// Arbitrary input never panics.
        #[test]
        fn garbage_is_refused_not_panicked_on(line in ".{0,40}") {
            let _ = decode_plain(&line);
        }
    }
}

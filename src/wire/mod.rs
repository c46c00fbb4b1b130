//! What both protocols put on and take off the wire, with no knowledge of
//! either: command-line framing, dot-stuffing, SASL decoding, and the
//! deadline-bounded line reader the clients share. A leaf module: it depends
//! on nothing else in mailnet, so SMTP and POP3 never depend on each other.

mod dot;
mod framing;
mod line;
mod sasl;

pub use dot::stuffed;
pub use framing::{Framed, LineFramer};
pub use line::{read_line_limited, write_flushed, ClientError};
pub use sasl::{decode_base64, decode_plain, Credentials, SaslError};

/// Where `byte` first occurs in `haystack`. The C library's `memchr` looks
/// at a vector of bytes at a time, where `iter().position()` takes one per
/// step: every line of every message and command is searched for its end.
pub fn find_byte(byte: u8, haystack: &[u8]) -> Option<usize> {
    if haystack.is_empty() {
        return None;
    }
    // SAFETY: the pointer and length are those of a live slice, which
    // memchr only reads; a non-null result points into that slice.
    let found = unsafe { libc::memchr(haystack.as_ptr().cast(), i32::from(byte), haystack.len()) };
    if found.is_null() {
        None
    } else {
        Some(found as usize - haystack.as_ptr() as usize)
    }
}

/// A connection, clear or TLS: what a client session reads and writes, so
/// one session type serves both sides of a STARTTLS/STLS upgrade.
pub trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Connection for T {}

#[cfg(test)]
mod tests {
    use super::find_byte;

    #[test]
    fn find_byte_agrees_with_a_plain_search() {
        let text: Vec<u8> = (0..300u32).map(|i| (i * 7 % 13) as u8 + b'a').collect();
        for start in 0..40 {
            for end in start..text.len() {
                let slice = &text[start..end];
                for byte in [b'a', b'f', b'm', b'\n'] {
                    assert_eq!(
                        find_byte(byte, slice),
                        slice.iter().position(|&b| b == byte)
                    );
                }
            }
        }
    }
}

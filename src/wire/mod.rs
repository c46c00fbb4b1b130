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

/// A connection, clear or TLS: what a client session reads and writes, so
/// one session type serves both sides of a STARTTLS/STLS upgrade.
pub trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Connection for T {}

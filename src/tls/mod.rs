//! TLS for every protocol: the network's own certificate authority, the
//! certificates it issues to servers at boot, and the rustls configurations
//! servers (STARTTLS, STLS, implicit TLS) and clients (relay, agent) use.

mod ca;

pub use ca::{default_dir, CaError, NetworkCa};

use std::sync::Arc;

use tokio_rustls::rustls;

/// The one crypto provider (ring): no OpenSSL, no second provider to pick
/// between at run time.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a session learnt when TLS was established, for transcripts and
/// `Received:` (RFC 3848's `ESMTPS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// The cipher suite's name.
    pub cipher: String,
}

impl TlsInfo {
    /// Reads the negotiated parameters of a connection.
    pub fn of(connection: &rustls::CommonState) -> TlsInfo {
        let version = match connection.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "TLS".to_string(),
        };
        let cipher = connection
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        TlsInfo { version, cipher }
    }
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}", self.version, self.cipher)
    }
}

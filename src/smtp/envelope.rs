//! What the SMTP core hands to delivery, and how delivery can fail.

pub use crate::store::Body;
use crate::store::StoreError;

/// A message accepted by the protocol, ready to be stored or queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The name the client gave in HELO/EHLO.
    pub helo: String,
    /// Whether the client used EHLO.
    pub esmtp: bool,
    /// The user who authenticated, if any.
    pub authenticated: Option<String>,
    /// The reverse path, as typed; empty for the null sender.
    pub mail_from: String,
    /// What `MAIL` declared about the message (passed on when relaying).
    pub body: Body,
    /// The TLS the message came over, if any (`ESMTPS` in `Received:`).
    pub tls: Option<crate::tls::TlsInfo>,
    /// Recipients in this server's domains.
    pub local: Vec<String>,
    /// Recipients elsewhere, to relay.
    pub remote: Vec<String>,
    /// The message's size in octets, as stored (its bytes were handed out
    /// in parts as it arrived).
    pub size: u64,
}

/// Why an accepted message could not be stored; the client gets `451`.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The message could not be written to its spool file as it arrived.
    #[error("cannot spool the message")]
    Spool(#[source] std::io::Error),
    /// A local mailbox refused the write.
    #[error("cannot store the message")]
    Mailbox(#[source] StoreError),
    /// The outbound queue refused the write.
    #[error("cannot queue the message for relay")]
    Queue(#[source] std::io::Error),
    /// The blocking task that stored it failed.
    #[error("the delivery task failed")]
    Task(#[source] tokio::task::JoinError),
}

//! mailnet: a whole simulated mail network on one machine.
//!
//! # Layout
//! Modules depend downwards only; none depends on one above it.
//!
//! - Leaves, knowing no protocol:
//!   - [`wire`]: line framing, dot-stuffing, SASL decoding, the clients' bounded line reader.
//!   - [`id`]: the one message id generator ([`id::QueueId`]).
//!   - [`service`]: the [`service::Service`] enum that keys listeners, ports and logs.
//!   - [`date`], [`transcript`], [`mime`] (MIME inspection for `inspect` and the grader).
//!   - [`text`] (wording for people), [`fdlimit`] (the descriptor limit).
//!   - [`tls`]: the network CA and the rustls configurations it yields.
//!   - [`fault`]: scripted faults and the seeded choices they make.
//! - State:
//!   - [`network`]: the network file (servers, domains, ports, users, policy) and its checks.
//!   - [`store`]: Maildir mailboxes and, beside them, the outbound queue on disk.
//!   - [`mailhost`]: one running server's config, store, queue and logs.
//! - Protocols, each a pure core plus a thin I/O layer:
//!   - [`listener`]: the accept loop and the one session loop every protocol runs in.
//!   - [`smtp`]: the SMTP core, its server, delivery into the store, and the one SMTP client.
//!   - [`pop3`]: the POP3 core, its server, and the one POP3 client.
//! - Built on those:
//!   - [`resolve`]: MX/SRV/A lookups through the fake DNS.
//!   - [`relay`]: the relay worker, delivery to other domains, bounces.
//!   - [`agent`]: `send`/`fetch` as a mail user agent.
//!   - [`orchestrator`]: booting a network.
//!   - [`join`]: registering a running network at a class hub.
//!   - [`scenario`]: YAML scenarios and the grader.
//! - `fake-dns` (a crate of its own): the zone and the authoritative DNS server.
//! - The command line (`src/cli`) belongs to the binary, not this library.
#![warn(missing_docs)]

pub mod agent;
pub mod capture;
pub mod date;
pub mod events;
pub mod fault;
pub mod fdlimit;
pub mod id;
pub mod join;
pub mod listener;
pub mod mailhost;
pub mod mime;
pub mod network;
pub mod orchestrator;
pub mod pop3;
pub mod relay;
pub mod resolve;
pub mod scenario;
pub mod service;
pub mod smtp;
pub mod store;
pub mod text;
pub mod tls;
pub mod transcript;
pub mod web;
pub mod wire;

/// An error and its causes on one line, `outer: cause: root cause`, for
/// logs and one-line reports.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // thiserror's `#[error("...: {source}")]` already shows its cause.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

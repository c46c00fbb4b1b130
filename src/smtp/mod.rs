//! SMTP: the pure session core and the tokio server around it.
//!
//! - [`session`]: the state machine (HELO/EHLO, MAIL, RCPT, DATA, AUTH, policy).
//! - [`data`]: reading a message after DATA (dot-stuffing, limits).
//! - [`strict`]: the exact COMP 431 grammar, when a network asks for it.
//! - [`reply`], [`address`], [`trace`]: replies, address checks, trace headers.
//! - [`envelope`], [`delivery`]: what the core accepts, stored into mailboxes and the queue.
//! - [`server`]: the [`crate::listener::Protocol`] the shared session loop runs.
//! - [`client`]: the one SMTP client (relay, agent, grader, benchmarks).

pub mod address;
pub mod client;
pub mod data;
pub mod delivery;
pub mod envelope;
pub mod reply;
pub mod server;
pub mod session;
pub mod strict;
pub mod trace;

pub use reply::Reply;
pub use session::{Envelope, Event, Session, SmtpContext};

//! SMTP: the pure session core and the tokio server around it.
//!
//! - [`session`]: the state machine (HELO/EHLO, MAIL, RCPT, DATA, AUTH, policy).
//! - [`data`]: reading a message after DATA (dot-stuffing, limits).
//! - [`strict`]: the exact COMP 431 grammar, when a network asks for it.
//! - [`reply`], [`address`], [`trace`]: replies, address checks, trace headers.
//! - [`server`]: the listener and per-connection I/O.

pub mod address;
pub mod client;
pub mod data;
pub mod reply;
pub mod server;
pub mod session;
pub mod strict;
pub mod trace;

pub use reply::Reply;
pub use session::{Envelope, Event, Session, SmtpContext};

//! mailnet: a whole simulated mail network on one machine.
//!
//! # Layout
//! - [`network`]: the network file (servers, domains, ports, users, policy) and its checks.
//! - [`store`]: Maildir mailboxes shared by SMTP delivery, POP3, the grader and `inspect`.
//! - `fake-dns` (a crate of its own): the zone and the authoritative DNS server.
#![warn(missing_docs)]

pub mod agent;
pub mod cli;
pub mod date;
pub mod listener;
pub mod mailhost;
pub mod network;
pub mod orchestrator;
pub mod pop3;
pub mod relay;
pub mod resolve;
pub mod scenario;
pub mod smtp;
pub mod store;
pub mod transcript;

//! mailnet: a whole simulated mail network on one machine.
//!
//! # Layout
//! - [`network`]: the network file (servers, domains, ports, users, policy) and its checks.
//! - `fake-dns` (a crate of its own): the zone and the authoritative DNS server.
#![warn(missing_docs)]

pub mod network;

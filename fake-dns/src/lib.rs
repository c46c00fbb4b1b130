//! An authoritative, in-memory DNS server for mailnet's simulated mail domains.
//!
//! # Layout
//! - [`facts`]: what a mail network publishes (hosts, their mail domains, ports), with no DNS types.
//! - [`zone`]: the pure record table built from those facts, and its lookup rules
//!   (answer, no data, NXDOMAIN inside a zone, REFUSED outside every zone).
//! - [`server`]: the thin hickory-server layer that answers UDP and TCP queries from a [`ZoneHandle`].
//! - [`tcp`]: one DNS exchange over TCP (the hub's client, forwarding).
//! - [`hub`]: the class hub, a zone machines register at with TSIG-signed RFC 2136 updates.
//!
//! The zone is also what mailnet's own resolver reads when no DNS server is
//! running, so the records a `dig` sees and the records a relay uses come from
//! one code path.
#![warn(missing_docs)]

pub mod facts;
pub mod hub;
pub mod server;
pub mod tcp;
pub mod zone;

pub use facts::{HostFacts, NetworkFacts};
pub use server::{
    serve, serve_forwarding, serve_with_faults, DnsServerError, Injected, QueryFaults, ZoneHandle,
};
pub use zone::{Answer, Zone};

/// Re-exported so callers can name record types and data without their own hickory pin.
pub use hickory_proto as proto;

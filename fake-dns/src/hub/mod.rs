//! The class hub: one authoritative DNS that machines register their mail
//! domains at, with RFC 2136 UPDATE signed by TSIG (RFC 8945), as `nsupdate` does.
//!
//! - [`key`]: TSIG keys in BIND's key-file format.
//! - [`update`]: what an authorised update does to the zones (pure).
//! - [`zonefile`]: the zones kept across restarts, in master-file format.
//! - [`server`]: the hickory-server layer: queries, signature checks, updates.
//! - [`client`]: signing and sending updates, and registering a network's facts.

pub mod client;
pub mod key;
pub mod server;
pub mod update;
pub mod zonefile;

pub use key::{KeyError, TsigKey};

use std::path::PathBuf;

/// A hub file (key file, zone file) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is wrong: `file:line:column: what is wrong`.
    #[error("{path}:{line}:{column}: {what}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        what: String,
    },
}
pub use update::{Change, Registry};

//! POP3: the pure session core and the tokio server around it.
//!
//! - [`session`]: AUTHORIZATION / TRANSACTION / UPDATE, every command.
//! - [`content`]: byte-stuffing for RETR and the first lines for TOP.
//! - [`server`]: the listener; opens maildrops and streams messages.

pub mod client;
pub mod content;
pub mod server;
pub mod session;

pub use session::{Event, Listing, OpenError, Pop3Context, Session};

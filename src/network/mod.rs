//! The network description: which servers exist, their domains, ports, users and policy.
//!
//! A file is parsed ([`file`]) and then checked as a whole ([`Network::from_file`])
//! before anything binds, so every mistake is reported with its file, line and column.

pub mod bounds;
pub mod cs305;
pub mod duration;
pub mod faults;
mod file;
mod policy;

use crate::service::Service;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use policy::{Conflict, Policy, TlsPolicy};

/// The network `mailnet up` boots when given no file (see `src/network/default.yaml`).
pub const DEFAULT_NETWORK: &str = include_str!("default.yaml");

/// Where the default network's DNS listens, so docs and demos can name it.
pub const DEFAULT_DNS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5300);

/// A user of a server: an address and a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The address as written in the file, e.g. `usr1@gmail.com`.
    pub address: String,
    /// The password for SMTP AUTH and POP3 logins.
    pub password: String,
}

/// One mail server of the network, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Its host name, e.g. `exmail.qq.com`; also the name `--only` selects.
    pub name: String,
    /// Mail domains it hosts, lower-cased.
    pub domains: Vec<String>,
    /// The host name its domains' `MX` records point at.
    pub mx: String,
    /// The host name clients submit mail to.
    pub smtp_host: String,
    /// The host name clients read mail from.
    pub pop3_host: String,
    /// Its port for each service, at [`Service::index`]; 0 picks a free one.
    pub ports: Ports,
    /// Whether it listens on a port of its own for message submission
    /// (`submission:` in its file; always with `--standard-ports`). Without
    /// one, `SRV _submission._tcp` names its SMTP port, where it takes
    /// users' mail all the same.
    pub submission: bool,
    /// The address published in `A`/`AAAA` records for this server, if not the network's.
    pub advertise: Option<IpAddr>,
    /// The address this server listens on, if not the network's `bind`
    /// (each server has its own in [`Network::with_standard_ports`]).
    pub bind: Option<IpAddr>,
    /// Its users.
    pub users: Vec<User>,
    /// What it accepts.
    pub policy: Policy,
}

/// One port per service, at [`Service::index`].
pub type Ports = [u16; Service::ALL.len()];

impl ServerConfig {
    /// The services it listens for, in [`Service::ALL`] order.
    pub fn services(&self) -> impl Iterator<Item = Service> + '_ {
        Service::ALL
            .into_iter()
            .filter(|s| *s != Service::Submission || self.submission)
    }

    /// Its port for `service` (0: any free one).
    pub fn port(&self, service: Service) -> u16 {
        self.ports[service.index()]
    }

    /// Sets its port for `service`.
    pub fn set_port(&mut self, service: Service, port: u16) {
        self.ports[service.index()] = port;
    }

    /// Whether `domain` is one of this server's mail domains (case-insensitive).
    pub fn hosts_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.');
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The user with this address, compared case-insensitively.
    pub fn user(&self, address: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.address.eq_ignore_ascii_case(address))
    }
}

/// A whole network, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Where its file came from, for messages (`<default>` for the built-in one).
    pub source: String,
    /// The fake DNS's listen address.
    pub dns: SocketAddr,
    /// The address servers bind to.
    pub bind: IpAddr,
    /// The address published in `A` records unless a server says otherwise.
    pub advertise: Option<IpAddr>,
    /// TTL of every published record, in seconds.
    pub ttl: u32,
    /// The servers, in file order.
    pub servers: Vec<ServerConfig>,
    /// Scripted failures in force from boot (`faults:`).
    pub faults: Vec<crate::fault::Fault>,
}

/// More servers than loopback addresses for [`Network::with_standard_ports`].
#[derive(Debug, thiserror::Error)]
#[error("{0} servers: with standard ports each gets its own address in 127.0.0.2 to 127.0.0.251, so at most 250")]
pub struct TooManyServers(pub usize);

/// A network file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The file could not be read.
    #[error("{file}: {}", crate::text::io_error(error))]
    Read {
        /// The file.
        file: String,
        /// Why; shown in words by the message, not chained as a cause.
        error: std::io::Error,
    },
    /// The file is not YAML of the expected shape; the message carries line and column.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// The parser's own words, with line and column.
        message: String,
    },
    /// The file is well-formed but says something impossible.
    #[error("{}", crate::text::located(file, Some((*line, *column)), message))]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What is wrong.
        message: String,
    },
}

impl Network {
    /// The built-in network.
    pub fn default_network() -> Network {
        Network::parse(DEFAULT_NETWORK, "<default network>")
            .expect("the built-in network file is valid (tested)")
    }

    /// Reads and checks a network file: YAML, or the CS305 course's
    /// `config.toml` (with `fdns.toml` beside it).
    pub fn load(path: &Path) -> Result<Network, NetworkError> {
        if path.extension().is_some_and(|e| e == "toml") {
            return cs305::load(path);
        }
        let text = std::fs::read_to_string(path).map_err(|error| NetworkError::Read {
            file: path.display().to_string(),
            error,
        })?;
        Network::parse(&text, &path.display().to_string())
    }

    /// Parses and checks network YAML; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Network, NetworkError> {
        let parsed: file::NetworkFile =
            serde_saphyr::from_str(text).map_err(|e| yaml_error(&e, source))?;
        Network::from_file(parsed, source, text)
    }

    /// The server named `name`.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// The server hosting mail domain `domain`.
    pub fn server_for_domain(&self, domain: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.hosts_domain(domain))
    }

    /// What the fake DNS publishes, given each server's real ports
    /// (`ports[i]` for `servers[i]`).
    pub fn facts(&self, ports: &[Ports]) -> fake_dns::NetworkFacts {
        let hosts = self
            .servers
            .iter()
            .zip(ports)
            .map(|(server, ports)| fake_dns::HostFacts {
                name: server.name.clone(),
                domains: server.domains.clone(),
                mx: server.mx.clone(),
                smtp_host: server.smtp_host.clone(),
                pop3_host: server.pop3_host.clone(),
                addresses: vec![server
                    .advertise
                    .or(self.advertise)
                    .unwrap_or(self.advertised_bind())],
                smtp_port: ports[Service::Smtp.index()],
                pop3_port: ports[Service::Pop3.index()],
                smtps_port: ports[Service::Smtps.index()],
                pop3s_port: ports[Service::Pop3s.index()],
                submission_port: ports[Service::Submission.index()],
            })
            .collect();
        let dns_ip = self.dns.ip();
        let nameserver = self.advertise.unwrap_or(if dns_ip.is_unspecified() {
            self.advertised_bind()
        } else {
            dns_ip
        });
        fake_dns::NetworkFacts {
            hosts,
            ttl: self.ttl,
            nameservers: vec![nameserver],
        }
    }

    /// The bind address as clients reach it: an unspecified bind (`0.0.0.0`) is
    /// published as loopback, since it is not an address anyone can connect to.
    pub fn advertised_bind(&self) -> IpAddr {
        match self.bind {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            other => other,
        }
    }

    /// Checks what parsing cannot; `text` is the file, read again only to
    /// place an error that involves several keys.
    fn from_file(
        parsed: file::NetworkFile,
        source: &str,
        text: &str,
    ) -> Result<Network, NetworkError> {
        let invalid = |loc: &serde_saphyr::Location, message: String| NetworkError::Invalid {
            file: source.to_string(),
            line: loc.line(),
            column: loc.column(),
            message,
        };
        let check_name = |name: &serde_saphyr::Spanned<String>, what: &str| {
            fake_dns::zone::fqdn(&name.value)
                .map(|_| name.value.trim_end_matches('.').to_ascii_lowercase())
                .map_err(|e| invalid(&name.referenced, format!("{what}: {e}")))
        };

        let mut servers = Vec::new();
        let mut names_seen: HashMap<String, String> = HashMap::new();
        let mut domains_seen: HashMap<String, String> = HashMap::new();
        let mut ports_seen: HashMap<u16, String> = HashMap::new();
        let mut mx_seen: HashMap<String, String> = HashMap::new();
        if parsed.servers.is_empty() {
            return Err(invalid(
                &serde_saphyr::Location::UNKNOWN,
                "the network has no servers (add a `servers:` list)".into(),
            ));
        }

        for (index, spec) in parsed.servers.into_iter().enumerate() {
            let name = check_name(&spec.name, "server name")?;
            if let Err(conflict) = spec.policy.check() {
                let at = file::locate_policy_key(text, index, conflict.keys)
                    .unwrap_or(spec.name.referenced);
                return Err(invalid(&at, conflict.message));
            }
            if let Some(first) = names_seen.insert(name.clone(), name.clone()) {
                return Err(invalid(
                    &spec.name.referenced,
                    format!("server `{first}` is defined twice"),
                ));
            }
            if spec.domains.is_empty() {
                return Err(invalid(
                    &spec.name.referenced,
                    format!("server `{name}` hosts no mail domains (add `domains: [...]`)"),
                ));
            }
            let mut domains = Vec::new();
            for domain in &spec.domains {
                let d = check_name(domain, "mail domain")?;
                if let Some(other) = domains_seen.insert(d.clone(), name.clone()) {
                    return Err(invalid(
                        &domain.referenced,
                        format!("mail domain `{d}` is hosted twice (also by server `{other}`)"),
                    ));
                }
                domains.push(d);
            }
            let mx = match &spec.mx {
                Some(mx) => check_name(mx, "mx")?,
                None => name.clone(),
            };
            // An MX host names one server: two servers behind one name
            // would each relay the other's mail back to themselves.
            if let Some(other) = mx_seen.insert(mx.clone(), name.clone()) {
                let at = spec
                    .mx
                    .as_ref()
                    .map_or(&spec.name.referenced, |m| &m.referenced);
                return Err(invalid(
                    at,
                    format!("mx host `{mx}` is also server `{other}`'s: each server needs an MX host of its own"),
                ));
            }
            let smtp_host = match &spec.smtp.host {
                Some(h) => check_name(h, "smtp host")?,
                None => format!("smtp.{name}"),
            };
            let pop3_host = match &spec.pop3.host {
                Some(h) => check_name(h, "pop3 host")?,
                None => format!("pop.{name}"),
            };
            // The names the DNS builds from these (`smtp.<name>`,
            // `_submission._tcp.<domain>`, `ns.<zone>`) must fit in 255
            // octets too: build this server's zone now, so `check` refuses
            // what `up` could not publish.
            let probe = fake_dns::NetworkFacts {
                hosts: vec![fake_dns::HostFacts {
                    name: name.clone(),
                    domains: domains.clone(),
                    mx: mx.clone(),
                    smtp_host: smtp_host.clone(),
                    pop3_host: pop3_host.clone(),
                    addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                    smtp_port: 1,
                    pop3_port: 1,
                    smtps_port: 1,
                    pop3s_port: 1,
                    submission_port: 1,
                }],
                ttl: 1,
                nameservers: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            };
            if let Err(e) = fake_dns::Zone::build(&probe) {
                return Err(invalid(
                    &spec.name.referenced,
                    format!("server `{name}`: a name the DNS builds from it is too long: {e}"),
                ));
            }
            let smtps = spec.smtps.as_ref().map(|e| &e.port);
            let pop3s = spec.pop3s.as_ref().map(|e| &e.port);
            let submission = spec.submission.as_ref().map(|e| &e.port);
            let listed = [
                (Some(&spec.smtp.port), "SMTP"),
                (Some(&spec.pop3.port), "POP3"),
                (smtps, "SMTPS"),
                (pop3s, "POP3S"),
                (submission, "submission"),
            ];
            for (port, proto) in listed.iter().filter_map(|(p, n)| p.map(|p| (p, *n))) {
                if port.value == 0 {
                    continue;
                }
                if let Some(other) = ports_seen.insert(port.value, format!("{proto} of `{name}`")) {
                    return Err(invalid(
                        &port.referenced,
                        format!(
                            "port {} is used twice ({proto} of `{name}` and {other})",
                            port.value
                        ),
                    ));
                }
            }
            if let Some(dns) = &parsed.dns {
                for port in listed.iter().filter_map(|(p, _)| *p) {
                    if port.value != 0 && port.value == dns.value.port() {
                        return Err(invalid(
                            &port.referenced,
                            format!("port {} is also the DNS port", port.value),
                        ));
                    }
                }
            }

            let mut users: Vec<User> = Vec::new();
            for user in spec.users {
                let address = user.address.value.trim().to_string();
                let Some((local, domain)) = address.rsplit_once('@') else {
                    return Err(invalid(
                        &user.address.referenced,
                        format!("user `{address}` is not an address (expected local@domain)"),
                    ));
                };
                if local.is_empty()
                    || local
                        .chars()
                        .any(|c| c.is_whitespace() || c == '<' || c == '>')
                {
                    return Err(invalid(
                        &user.address.referenced,
                        format!("user `{address}` has an invalid local part"),
                    ));
                }
                if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                    return Err(invalid(
                        &user.address.referenced,
                        format!(
                            "user `{address}` is not in a domain server `{name}` hosts ({})",
                            domains.join(", ")
                        ),
                    ));
                }
                if users
                    .iter()
                    .any(|u| u.address.eq_ignore_ascii_case(&address))
                {
                    return Err(invalid(
                        &user.address.referenced,
                        format!("user `{address}` is listed twice"),
                    ));
                }
                users.push(User {
                    address,
                    password: user.password,
                });
            }

            servers.push(ServerConfig {
                name,
                domains,
                mx,
                smtp_host,
                pop3_host,
                ports: [
                    spec.smtp.port.value,
                    spec.pop3.port.value,
                    smtps.map_or(0, |p| p.value),
                    pop3s.map_or(0, |p| p.value),
                    submission.map_or(0, |p| p.value),
                ],
                submission: submission.is_some(),
                advertise: spec.advertise,
                bind: None,
                users,
                policy: spec.policy,
            });
        }

        let names: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
        let mut faults = Vec::with_capacity(parsed.faults.len());
        for spec in &parsed.faults {
            let fault = spec
                .value
                .check(Some(&names), spec.referenced)
                .map_err(|p| invalid(&p.at, p.message))?;
            faults.push(fault);
        }

        Ok(Network {
            source: source.to_string(),
            dns: parsed.dns.map(|d| d.value).unwrap_or(DEFAULT_DNS),
            bind: parsed.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            advertise: parsed.advertise,
            ttl: parsed.ttl,
            servers,
            faults,
        })
    }

    /// Gives every server its own loopback address (`127.0.0.2`, `127.0.0.3`,
    /// …, published in its `A` records) and the standard ports (SMTP 25,
    /// submission 587, POP3 110, SMTPS 465, POP3S 995), and puts the DNS on `127.0.0.1:53`: a real MTA finds the
    /// servers by a plain `MX` → `A` lookup through the fake DNS, and
    /// packet captures decode without per-port settings.
    pub fn with_standard_ports(mut self) -> Result<Network, TooManyServers> {
        if self.servers.len() > 250 {
            return Err(TooManyServers(self.servers.len()));
        }
        self.dns = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
        for (i, server) in self.servers.iter_mut().enumerate() {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8));
            server.bind = Some(ip);
            server.advertise = Some(ip);
            server.set_port(Service::Smtp, 25);
            server.set_port(Service::Pop3, 110);
            server.set_port(Service::Smtps, 465);
            server.set_port(Service::Pop3s, 995);
            server.set_port(Service::Submission, 587);
            server.submission = true;
        }
        Ok(self)
    }

    /// Sets every port, the DNS's included, to 0: what tests and parallel runs use.
    pub fn with_ephemeral_ports(mut self) -> Network {
        self.dns.set_port(0);
        for server in &mut self.servers {
            server.ports = [0; Service::ALL.len()];
        }
        self
    }
}

/// A YAML error as a [`NetworkError`]. A message of our own (a value out of
/// its [`bounds`]) comes with the value's place, and is reported as
/// `FILE:LINE:COLUMN: message` like every other check; the parser's own
/// errors keep their wording.
fn yaml_error(error: &serde_saphyr::Error, source: &str) -> NetworkError {
    let mut inner = error;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    if let serde_saphyr::Error::Message { msg, location } = inner {
        if location.line() > 0 {
            return NetworkError::Invalid {
                file: source.to_string(),
                line: location.line(),
                column: location.column(),
                message: msg.clone(),
            };
        }
    }
    match crate::text::yaml_message(error) {
        (Some((line, column)), message) => NetworkError::Invalid {
            file: source.to_string(),
            line,
            column,
            message,
        },
        (None, message) => NetworkError::Syntax {
            file: source.to_string(),
            message,
        },
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            self.source,
            crate::text::count(self.servers.len() as u64, "server")
        )
    }
}

/// Where `mailnet up` keeps a server's data: `<data dir>/<server name>`.
pub fn server_dir(data_dir: &Path, server: &ServerConfig) -> PathBuf {
    data_dir.join(&server.name)
}

#[cfg(test)]
mod tests;

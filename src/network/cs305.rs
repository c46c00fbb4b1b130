//! The CS305 course's own network description, read and written in exactly
//! the course's shape (its public grader's `data/config.toml` and
//! `data/fdns.toml`):
//!
//! ```toml
//! # config.toml
//! [agent]                                   # mail domain -> the hosts its users talk to
//! "mail.sustech.edu.cn" = { smtp = "smtp.exmail.qq.com", pop = "pop.exmail.qq.com" }
//! [server]                                  # server name -> its ports (integers)
//! "exmail.qq.com" = { smtp = 1125, pop = 1210 }
//! [accounts."exmail.qq.com"]                # address -> password
//! "usr1@mail.sustech.edu.cn" = "password1"
//!
//! # fdns.toml
//! [MX]                                      # "<domain>." -> "<mx host>."
//! "mail.sustech.edu.cn." = "mxbiz1.qq.com."
//! [P]                                       # "<host>." -> port, as a string
//! "smtp.exmail.qq.com." = "1125"
//! ```
//!
//! Students' servers index these tables directly (`config['agent']`,
//! `int(FDNS['P'][host + '.'])`), so what mailnet writes has the same tables
//! and the same value types as the course's files: ports are integers in
//! `[server]` and strings in `[P]`. Reading accepts either type in both places.

use crate::service::Service;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{Network, NetworkError, Policy, ServerConfig, User, DEFAULT_DNS};

#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    agent: BTreeMap<String, AgentHosts>,
    #[serde(default)]
    server: BTreeMap<String, ServerPorts>,
    #[serde(default)]
    accounts: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct AgentHosts {
    smtp: String,
    pop: String,
}

#[derive(Debug, Deserialize)]
struct ServerPorts {
    smtp: Spanned<toml::Value>,
    pop: Spanned<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Fdns {
    #[serde(rename = "MX", default)]
    mx: BTreeMap<String, String>,
    #[serde(rename = "P", default)]
    p: BTreeMap<String, Spanned<toml::Value>>,
}

fn undot(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (u64, u64) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, column)
}

/// A file being read: its name and text, to place errors.
struct Source {
    file: String,
    text: String,
}

impl Source {
    fn read(path: &Path) -> Result<Source, NetworkError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| NetworkError::Read {
            file: file.clone(),
            error,
        })?;
        Ok(Source { file, text })
    }

    fn error_at(&self, span: Option<Range<usize>>, message: String) -> NetworkError {
        let (line, column) = line_column(&self.text, span.map_or(0, |s| s.start));
        NetworkError::Invalid {
            file: self.file.clone(),
            line,
            column,
            message,
        }
    }

    /// Parses the whole file; a TOML error keeps its whole cause
    /// (`invalid type: string "2125", expected u16`), placed by line and column.
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, NetworkError> {
        toml::from_str(&self.text)
            .map_err(|e| self.error_at(e.span(), e.message().trim().replace('\n', "; ")))
    }

    /// A port written as an integer (`1125`) or as text (`"1125"`), as the course does.
    fn port(&self, value: &Spanned<toml::Value>) -> Result<u16, NetworkError> {
        let parsed = match value.get_ref() {
            toml::Value::Integer(n) => u16::try_from(*n).ok(),
            toml::Value::String(s) => s.trim().parse::<u16>().ok(),
            _ => None,
        };
        match parsed {
            Some(port) if port > 0 => Ok(port),
            _ => Err(self.error_at(
                Some(value.span()),
                format!(
                    "a port must be a whole number from 1 to 65535 (written 1125 or \"1125\"), not {}",
                    value.get_ref()
                ),
            )),
        }
    }
}

/// Reads `config.toml` and the `fdns.toml` beside it as a network.
pub fn load(config_path: &Path) -> Result<Network, NetworkError> {
    let config_src = Source::read(config_path)?;
    let config: Config = config_src.parse()?;
    let fdns_src = Source::read(&config_path.with_file_name("fdns.toml"))?;
    let fdns: Fdns = fdns_src.parse()?;

    let mut published: BTreeMap<String, u16> = BTreeMap::new();
    for (host, port) in &fdns.p {
        published.insert(undot(host), fdns_src.port(port)?);
    }
    let mx_of: BTreeMap<String, String> = fdns
        .mx
        .iter()
        .map(|(domain, host)| (undot(domain), undot(host)))
        .collect();

    let mut servers = Vec::new();
    for (name, ports) in &config.server {
        let name_key = undot(name);
        let smtp_port = config_src.port(&ports.smtp)?;
        let pop3_port = config_src.port(&ports.pop)?;
        // A domain is this server's when its agent's SMTP host is this server's
        // (the host minus its first label is the server name, or its published
        // port is the server's), or when one of its accounts lives in it.
        let serves = |smtp_host: &str| {
            let host = undot(smtp_host);
            host.split_once('.')
                .is_some_and(|(_, rest)| rest == name_key)
                || published.get(&host) == Some(&smtp_port)
        };
        let mut domains: Vec<String> = config
            .agent
            .iter()
            .filter(|(_, hosts)| serves(&hosts.smtp))
            .map(|(domain, _)| undot(domain))
            .collect();
        let accounts = config.accounts.get(name).cloned().unwrap_or_default();
        for address in accounts.keys() {
            if let Some((_, domain)) = address.rsplit_once('@') {
                let domain = undot(domain);
                if !domains.contains(&domain) {
                    domains.push(domain);
                }
            }
        }
        if domains.is_empty() {
            domains.push(name_key.clone());
        }
        let agent = domains.iter().find_map(|d| {
            config
                .agent
                .iter()
                .find(|(k, _)| undot(k) == *d)
                .map(|(_, h)| h)
        });
        servers.push(ServerConfig {
            name: name_key.clone(),
            mx: domains
                .iter()
                .find_map(|d| mx_of.get(d).cloned())
                .unwrap_or_else(|| name_key.clone()),
            smtp_host: agent.map_or_else(|| format!("smtp.{name_key}"), |h| undot(&h.smtp)),
            pop3_host: agent.map_or_else(|| format!("pop.{name_key}"), |h| undot(&h.pop)),
            domains,
            ports: [smtp_port, pop3_port, 0, 0, 0],
            submission: false,
            advertise: None,
            bind: None,
            users: accounts
                .into_iter()
                .map(|(address, password)| User { address, password })
                .collect(),
            policy: Policy::default(),
        });
    }
    if servers.is_empty() {
        return Err(NetworkError::Invalid {
            file: config_src.file,
            line: 1,
            column: 1,
            message: "no servers: the course's files list them as [server] \"<name>\" = { smtp = <port>, pop = <port> }".into(),
        });
    }
    Ok(Network {
        source: config_src.file,
        dns: DEFAULT_DNS,
        bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        advertise: None,
        ttl: 5,
        servers,
        faults: Vec::new(),
    })
}

/// The ports a server is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoursePorts {
    /// Where it listens for SMTP (`[server]`).
    pub smtp: u16,
    /// Where it listens for POP3 (`[server]` and the POP host in `[P]`).
    pub pop: u16,
    /// What `[P]` publishes for its SMTP and MX hosts: its SMTP port, or a
    /// port in front of it that watches the relay sessions other servers open.
    pub published_smtp: u16,
}

/// Each server's ports as its network file gives them (none published in
/// front of another): what `mailnet up` on the written files would bind.
pub fn configured_ports(network: &Network) -> Vec<CoursePorts> {
    network
        .servers
        .iter()
        .map(|s| CoursePorts {
            smtp: s.port(Service::Smtp),
            pop: s.port(Service::Pop3),
            published_smtp: s.port(Service::Smtp),
        })
        .collect()
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The text of `config.toml` and `fdns.toml` for `network` (`ports[i]` are
/// those of `network.servers[i]`), in the course's exact shape.
pub fn render(network: &Network, ports: &[CoursePorts]) -> (String, String) {
    let mut agent = String::from("[agent]\n");
    let mut server = String::from("[server]\n");
    let mut accounts = String::new();
    let mut mx = String::from("[MX]\n");
    let mut p = String::from("[P]\n");
    for (s, ports) in network.servers.iter().zip(ports) {
        for domain in &s.domains {
            let _ = writeln!(
                agent,
                "{} = {{ smtp = {}, pop = {} }}",
                quoted(domain),
                quoted(&s.smtp_host),
                quoted(&s.pop3_host)
            );
            let _ = writeln!(
                mx,
                "{} = {}",
                quoted(&format!("{domain}.")),
                quoted(&format!("{}.", s.mx))
            );
        }
        let _ = writeln!(
            server,
            "{} = {{ smtp = {}, pop = {} }}",
            quoted(&s.name),
            ports.smtp,
            ports.pop
        );
        let _ = writeln!(accounts, "\n[accounts.{}]", quoted(&s.name));
        for user in &s.users {
            let _ = writeln!(
                accounts,
                "{} = {}",
                quoted(&user.address),
                quoted(&user.password)
            );
        }
        let mut hosts: Vec<(&String, u16)> = Vec::new();
        for (host, port) in [
            (&s.smtp_host, ports.published_smtp),
            (&s.pop3_host, ports.pop),
            (&s.mx, ports.published_smtp),
        ] {
            if !hosts.iter().any(|(h, _)| h.eq_ignore_ascii_case(host)) {
                hosts.push((host, port));
            }
        }
        for (host, port) in hosts {
            let _ = writeln!(
                p,
                "{} = {}",
                quoted(&format!("{host}.")),
                quoted(&port.to_string())
            );
        }
    }
    (format!("{agent}\n{server}{accounts}"), format!("{mx}\n{p}"))
}

/// Writes `data/config.toml` and `data/fdns.toml` under `dir` (see [`render`]).
pub fn write(network: &Network, ports: &[CoursePorts], dir: &Path) -> std::io::Result<()> {
    let (config, fdns) = render(network, ports);
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("config.toml"), config)?;
    std::fs::write(data.join("fdns.toml"), fdns)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The course's published files, as its grader ships them (ports in `[P]` are strings).
    const COURSE_CONFIG: &str = "[agent]\n\"mail.sustech.edu.cn\" = { smtp = \"smtp.exmail.qq.com\", pop = \"pop.exmail.qq.com\" }\n\"gmail.com\" = { smtp = \"smtp.gmail.com\", pop = \"pop.gmail.com\" }\n\n[server]\n\"exmail.qq.com\" = { smtp = 1125, pop = 1210 }\n\"gmail.com\" = { smtp = 2125, pop = 2210 }\n\n[accounts.\"exmail.qq.com\"]\n\"usr1@mail.sustech.edu.cn\" = \"password1\"\n\"usr2@mail.sustech.edu.cn\" = \"password2\"\n\n[accounts.\"gmail.com\"]\n\"usr1@gmail.com\" = \"password1\"\n";
    const COURSE_FDNS: &str = "[MX]\n\"mail.sustech.edu.cn.\" = \"mxbiz1.qq.com.\"\n\"gmail.com.\" = \"gmail-smtp-in.l.google.com.\"\n\n[P]\n\"smtp.exmail.qq.com.\" = \"1125\"\n\"smtp.gmail.com.\" = \"2125\"\n\"pop.exmail.qq.com.\" = \"1210\"\n\"pop.gmail.com.\" = \"2210\"\n\"mxbiz1.qq.com.\" = \"1125\"\n\"gmail-smtp-in.l.google.com.\" = \"2125\"\n";

    fn course_dir(config: &str, fdns: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        std::fs::write(dir.path().join("fdns.toml"), fdns).unwrap();
        dir
    }

    #[test]
    fn the_course_files_load_with_their_hosts_and_string_ports() {
        let dir = course_dir(COURSE_CONFIG, COURSE_FDNS);
        let net = load(&dir.path().join("config.toml")).unwrap();
        let qq = net.server("exmail.qq.com").unwrap();
        assert_eq!(qq.ports, [1125, 1210, 0, 0, 0]);
        assert_eq!(qq.domains, vec!["mail.sustech.edu.cn"]);
        assert_eq!(qq.mx, "mxbiz1.qq.com");
        assert_eq!(qq.smtp_host, "smtp.exmail.qq.com");
        assert_eq!(qq.pop3_host, "pop.exmail.qq.com");
        assert_eq!(
            qq.user("usr2@mail.sustech.edu.cn").unwrap().password,
            "password2"
        );
        let gmail = net.server("gmail.com").unwrap();
        assert_eq!(gmail.mx, "gmail-smtp-in.l.google.com");
        assert_eq!(gmail.domains, vec!["gmail.com"]);
    }

    #[test]
    fn written_files_have_the_course_shape_and_round_trip() {
        let dir = course_dir(COURSE_CONFIG, COURSE_FDNS);
        let net = load(&dir.path().join("config.toml")).unwrap();
        let ports = configured_ports(&net);
        let (config, fdns) = render(&net, &ports);
        assert!(config.contains("[agent]\n\"mail.sustech.edu.cn\" = { smtp = \"smtp.exmail.qq.com\", pop = \"pop.exmail.qq.com\" }\n"), "{config}");
        assert!(
            config.contains("\"exmail.qq.com\" = { smtp = 1125, pop = 1210 }\n"),
            "{config}"
        );
        assert!(
            config.contains("[accounts.\"gmail.com\"]\n\"usr1@gmail.com\" = \"password1\"\n"),
            "{config}"
        );
        assert!(
            fdns.contains("\"mail.sustech.edu.cn.\" = \"mxbiz1.qq.com.\"\n"),
            "{fdns}"
        );
        for line in [
            "\"smtp.gmail.com.\" = \"2125\"",
            "\"pop.gmail.com.\" = \"2210\"",
            "\"gmail-smtp-in.l.google.com.\" = \"2125\"",
        ] {
            assert!(fdns.contains(line), "{line} in {fdns}");
        }
        let out = tempfile::tempdir().unwrap();
        write(&net, &ports, out.path()).unwrap();
        assert_eq!(
            load(&out.path().join("data/config.toml")).unwrap().servers,
            net.servers
        );
    }

    #[test]
    fn integer_ports_in_p_are_read_too() {
        let dir = course_dir(COURSE_CONFIG, &COURSE_FDNS.replace("\"1125\"", "1125"));
        assert!(load(&dir.path().join("config.toml")).is_ok());
    }

    #[test]
    fn errors_name_file_line_column_and_the_whole_cause() {
        let dir = course_dir(
            &COURSE_CONFIG.replace("smtp = 2125", "smtp = \"twenty\""),
            COURSE_FDNS,
        );
        let e = load(&dir.path().join("config.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("config.toml:7:24: a port must be a whole number from 1 to 65535 (written 1125 or \"1125\"), not \"twenty\""), "{e}");
        let dir = course_dir(COURSE_CONFIG, &COURSE_FDNS.replace("[P]", "[P\n"));
        let e = load(&dir.path().join("config.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fdns.toml:5:3: "), "{e}");
        let dir = course_dir(
            &COURSE_CONFIG.replace("pop = 1210", "pop = [1]"),
            COURSE_FDNS,
        );
        let e = load(&dir.path().join("config.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.toml:6:40: a port must be"), "{e}");
    }
}

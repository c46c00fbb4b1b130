//! The CS305 course's own network description: `data/config.toml`
//! (`[server."<name>"]` with `smtp`/`pop` ports, `[accounts."<name>"]` with
//! address = password) and `data/fdns.toml` beside it (`[MX]`: mail domain →
//! server, `[P]`: server → SMTP port; names end with a dot). mailnet reads the
//! pair as a network, and writes it for a student's server to find the others.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Network, NetworkError, Policy, ServerConfig, User, DEFAULT_DNS};

#[derive(Debug, Default, Deserialize, Serialize)]
struct Config {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    agent: BTreeMap<String, toml::Value>,
    #[serde(default)]
    server: BTreeMap<String, Ports>,
    #[serde(default)]
    accounts: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Ports {
    smtp: u16,
    pop: u16,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct Fdns {
    #[serde(rename = "MX", default)]
    mx: BTreeMap<String, String>,
    #[serde(rename = "P", default)]
    p: BTreeMap<String, u16>,
}

fn undot(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Reads `config.toml` and the `fdns.toml` beside it as a network.
pub fn load(config_path: &Path) -> Result<Network, NetworkError> {
    let file = config_path.display().to_string();
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| NetworkError::Read {
            file: path.display().to_string(),
            source,
        })
    };
    let syntax = |file: String, e: toml::de::Error| NetworkError::Syntax {
        file,
        message: e.to_string().lines().next().unwrap_or("").to_string(),
    };
    let config: Config =
        toml::from_str(&read(config_path)?).map_err(|e| syntax(file.clone(), e))?;
    let fdns_path = config_path.with_file_name("fdns.toml");
    let fdns: Fdns = toml::from_str(&read(&fdns_path)?)
        .map_err(|e| syntax(fdns_path.display().to_string(), e))?;

    let mut servers = Vec::new();
    for (name, ports) in &config.server {
        let mut domains: Vec<String> = fdns
            .mx
            .iter()
            .filter(|(_, server)| undot(server) == undot(name))
            .map(|(d, _)| undot(d))
            .collect();
        let accounts = config.accounts.get(name).cloned().unwrap_or_default();
        // A domain of an account the fdns forgot is still this server's.
        for address in accounts.keys() {
            if let Some((_, domain)) = address.rsplit_once('@') {
                let domain = undot(domain);
                if !domains.contains(&domain) {
                    domains.push(domain);
                }
            }
        }
        if domains.is_empty() {
            domains.push(undot(name));
        }
        servers.push(ServerConfig {
            name: undot(name),
            domains,
            mx: undot(name),
            smtp_host: format!("smtp.{}", undot(name)),
            pop3_host: format!("pop.{}", undot(name)),
            smtp_port: ports.smtp,
            pop3_port: ports.pop,
            advertise: None,
            users: accounts
                .into_iter()
                .map(|(address, password)| User { address, password })
                .collect(),
            policy: Policy::default(),
        });
    }
    if servers.is_empty() {
        return Err(NetworkError::Invalid {
            file,
            line: 1,
            column: 1,
            message: "no [server.\"<name>\"] tables".into(),
        });
    }
    Ok(Network {
        source: file,
        dns: DEFAULT_DNS,
        bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        advertise: None,
        ttl: 5,
        servers,
    })
}

/// Writes `data/config.toml` and `data/fdns.toml` under `dir` for `network`,
/// with the ports given (`ports[i]` = (smtp, pop3) of `network.servers[i]`).
pub fn write(network: &Network, ports: &[(u16, u16)], dir: &Path) -> std::io::Result<()> {
    let mut config = Config::default();
    let mut fdns = Fdns::default();
    for (server, &(smtp, pop)) in network.servers.iter().zip(ports) {
        config
            .server
            .insert(server.name.clone(), Ports { smtp, pop });
        config.accounts.insert(
            server.name.clone(),
            server
                .users
                .iter()
                .map(|u| (u.address.clone(), u.password.clone()))
                .collect(),
        );
        for domain in &server.domains {
            fdns.mx
                .insert(format!("{domain}."), format!("{}.", server.name));
        }
        fdns.p.insert(format!("{}.", server.name), smtp);
    }
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let toml_text = |e: toml::ser::Error| std::io::Error::other(e.to_string());
    std::fs::write(
        data.join("config.toml"),
        toml::to_string(&config).map_err(toml_text)?,
    )?;
    std::fs::write(
        data.join("fdns.toml"),
        toml::to_string(&fdns).map_err(toml_text)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_network_round_trips_through_the_course_format() {
        let net = Network::default_network();
        let ports: Vec<(u16, u16)> = net
            .servers
            .iter()
            .map(|s| (s.smtp_port, s.pop3_port))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write(&net, &ports, dir.path()).unwrap();
        let fdns = std::fs::read_to_string(dir.path().join("data/fdns.toml")).unwrap();
        assert!(
            fdns.contains("\"mail.sustech.edu.cn.\" = \"exmail.qq.com.\""),
            "{fdns}"
        );
        assert!(fdns.contains("\"exmail.qq.com.\" = 1125"), "{fdns}");
        let config = std::fs::read_to_string(dir.path().join("data/config.toml")).unwrap();
        assert!(
            config.contains("[server.\"gmail.com\"]\nsmtp = 2125\npop = 2210"),
            "{config}"
        );
        let back = load(&dir.path().join("data/config.toml")).unwrap();
        let qq = back.server("exmail.qq.com").unwrap();
        assert_eq!((qq.smtp_port, qq.pop3_port), (1125, 1210));
        assert_eq!(qq.domains, vec!["mail.sustech.edu.cn"]);
        assert_eq!(
            qq.user("usr2@mail.sustech.edu.cn").unwrap().password,
            "password2"
        );
    }
}

//! The YAML shape of a network file. Spans are kept where a later check may
//! need to point at a line (names, domains, ports, users).

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::Policy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkFile {
    /// Listen address of the fake DNS.
    pub dns: Option<Spanned<SocketAddr>>,
    pub bind: Option<IpAddr>,
    pub advertise: Option<IpAddr>,
    pub ttl: Option<u32>,
    #[serde(default)]
    pub servers: Vec<ServerSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSpec {
    pub name: Spanned<String>,
    pub domains: Vec<Spanned<String>>,
    pub mx: Option<Spanned<String>>,
    pub smtp: Endpoint,
    pub pop3: Endpoint,
    pub advertise: Option<IpAddr>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub policy: Policy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Endpoint {
    pub host: Option<Spanned<String>>,
    pub port: Spanned<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserSpec {
    pub address: Spanned<String>,
    pub password: String,
}

//! The YAML shape of a network file. Spans are kept where a later check may
//! need to point at a line (names, domains, ports, users).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

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

/// Where a key of the `index`-th server's `policy:` is written: the first of
/// `keys` the file names. For a check that involves several keys, after the
/// typed parse has kept no places; `None` if the file names none of them
/// (they kept their defaults) or places them in a way not followed here.
pub(super) fn locate_policy_key(text: &str, index: usize, keys: &[&str]) -> Option<Location> {
    #[derive(Deserialize)]
    struct Places {
        #[serde(default)]
        servers: Vec<ServerPlaces>,
    }
    #[derive(Deserialize)]
    struct ServerPlaces {
        #[serde(default)]
        policy: HashMap<String, Spanned<IgnoredAny>>,
    }
    let places: Places = serde_saphyr::from_str(text).ok()?;
    let policy = &places.servers.get(index)?.policy;
    keys.iter()
        .find_map(|key| policy.get(*key))
        .map(|value| value.referenced)
}

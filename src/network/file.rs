//! The YAML shape of a network file. Spans are kept where a later check may
//! need to point at a line (names, domains, ports, users).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};

use super::{bounds, Policy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkFile {
    /// Listen address of the fake DNS.
    #[serde(default, deserialize_with = "dns_address")]
    pub dns: Option<Spanned<SocketAddr>>,
    pub bind: Option<IpAddr>,
    pub advertise: Option<IpAddr>,
    /// Seconds; RFC 2181 section 8 caps a TTL at 2^31 - 1.
    #[serde(
        default = "default_ttl",
        deserialize_with = "bounds::count::<_, _, 0, 2_147_483_647>"
    )]
    pub ttl: u32,
    #[serde(default)]
    pub servers: Vec<ServerSpec>,
    /// Scripted failures in force from boot.
    #[serde(default)]
    pub faults: Vec<Spanned<super::faults::FaultSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSpec {
    pub name: Spanned<String>,
    pub domains: Vec<Spanned<String>>,
    pub mx: Option<Spanned<String>>,
    pub smtp: Endpoint,
    pub pop3: Endpoint,
    /// Implicit-TLS SMTP (RFC 8314); any free port when not given.
    pub smtps: Option<TlsEndpoint>,
    /// Implicit-TLS POP3 (RFC 8314); any free port when not given.
    pub pop3s: Option<TlsEndpoint>,
    /// Message submission (RFC 6409); any free port when not given.
    pub submission: Option<TlsEndpoint>,
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
    #[serde(deserialize_with = "port")]
    pub port: Spanned<u16>,
}

/// A further port of a service (implicit TLS, submission): its host is the
/// plain service's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsEndpoint {
    #[serde(deserialize_with = "port")]
    pub port: Spanned<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserSpec {
    pub address: Spanned<String>,
    pub password: String,
}

/// Records are short-lived by default so a restarted network is seen at once.
fn default_ttl() -> u32 {
    5
}

/// A port with its place (see [`bounds::port`]).
fn port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Spanned<u16>, D::Error> {
    struct Port(u16);
    impl<'de> Deserialize<'de> for Port {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            bounds::port(deserializer).map(Port)
        }
    }
    let port = Spanned::<Port>::deserialize(deserializer)?;
    Ok(Spanned::new(port.value.0, port.referenced, port.defined))
}

/// The DNS's `address:port`, in words a user knows rather than
/// `invalid socket address syntax`.
fn dns_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Spanned<SocketAddr>>, D::Error> {
    struct Address(SocketAddr);
    impl<'de> Deserialize<'de> for Address {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text =
                bounds::scalar(deserializer, "an address and port such as `127.0.0.1:5300`")?;
            text.trim().parse().map(Address).map_err(|_| {
                D::Error::custom(format!(
                    "`{}` is not an address and port such as `127.0.0.1:5300` (ports are 0 to 65535)",
                    text.trim()
                ))
            })
        }
    }
    let address = Option::<Spanned<Address>>::deserialize(deserializer)?;
    Ok(address.map(|a| Spanned::new(a.value.0, a.referenced, a.defined)))
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

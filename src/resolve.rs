//! Finding mail servers: MX, then SRV for the port, then A/AAAA.
//!
//! Two backends answer the same questions: a real DNS server (hickory-resolver,
//! pointed at any mailnet DNS, on this machine or another), or the in-memory
//! zone itself when a server runs alone without `--dns`. Both read records
//! made by [`fake_dns::Zone`], so the answers cannot drift apart.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fake_dns::proto::rr::{RData, RecordType};
use fake_dns::{Answer, ZoneHandle};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::TokioResolver;

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name does not exist (NXDOMAIN, or outside every zone: REFUSED). Permanent.
    #[error("{name}: no such domain")]
    NoSuchDomain {
        /// The name asked.
        name: String,
    },
    /// The name exists but has no records of that type. Permanent.
    #[error("{name}: no {rtype} record")]
    NoRecords {
        /// The name asked.
        name: String,
        /// The type asked.
        rtype: String,
    },
    /// The DNS did not answer or failed. Worth retrying.
    #[error("{name}: DNS lookup failed: {reason}")]
    Temporary {
        /// The name asked.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

impl ResolveError {
    /// Whether retrying later may help.
    pub fn is_temporary(&self) -> bool {
        matches!(self, ResolveError::Temporary { .. })
    }
}

/// Resolves mail facts through one of the two backends. Cheap to clone.
#[derive(Clone)]
pub struct MailResolver {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Zone(ZoneHandle),
    Dns(Box<TokioResolver>),
}

impl MailResolver {
    /// Answers from the zone in this process.
    pub fn from_zone(zone: ZoneHandle) -> MailResolver {
        MailResolver {
            backend: Backend::Zone(zone),
        }
    }

    /// Asks the DNS server at `server` (UDP, falling back to TCP), with no
    /// cache and no hosts file: a network's ports change every boot.
    pub fn from_dns(server: SocketAddr) -> MailResolver {
        MailResolver::from_dns_waiting(server, Duration::from_secs(2), 2)
    }

    /// Like [`MailResolver::from_dns`], for a person waiting at a prompt:
    /// one attempt of 400 ms, so a DNS that is not running is reported at
    /// once instead of after retries.
    pub fn from_dns_quick(server: SocketAddr) -> MailResolver {
        MailResolver::from_dns_waiting(server, Duration::from_millis(400), 1)
    }

    fn from_dns_waiting(server: SocketAddr, timeout: Duration, attempts: usize) -> MailResolver {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
        let mut opts = ResolverOpts::default();
        opts.cache_size = 0;
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        opts.timeout = timeout;
        opts.attempts = attempts;
        opts.ndots = 0;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .expect("a resolver with one name server always builds");
        MailResolver {
            backend: Backend::Dns(Box::new(resolver)),
        }
    }

    /// The record data for `name`/`rtype`.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, ResolveError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match &self.backend {
            Backend::Zone(zone) => {
                let zone = zone.current();
                match zone.lookup_str(&fqdn, rtype) {
                    Answer::Records(records) => {
                        Ok(records.into_iter().map(|r| r.data.clone()).collect())
                    }
                    Answer::NoData(_) => Err(no_records(name, rtype)),
                    Answer::NxDomain(_) | Answer::Refused => Err(ResolveError::NoSuchDomain {
                        name: name.to_string(),
                    }),
                }
            }
            Backend::Dns(resolver) => match resolver.lookup(fqdn.as_str(), rtype).await {
                Ok(lookup) => {
                    let found: Vec<RData> = lookup
                        .answers()
                        .iter()
                        .filter(|r| r.record_type() == rtype)
                        .map(|r| r.data.clone())
                        .collect();
                    if found.is_empty() {
                        Err(no_records(name, rtype))
                    } else {
                        Ok(found)
                    }
                }
                Err(e) if e.is_nx_domain() => Err(ResolveError::NoSuchDomain {
                    name: name.to_string(),
                }),
                Err(e) if e.is_no_records_found() => Err(no_records(name, rtype)),
                // A name outside every zone of the network is refused, not
                // NXDOMAIN; for mail it is just as absent.
                Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))) => {
                    Err(ResolveError::NoSuchDomain {
                        name: name.to_string(),
                    })
                }
                Err(e) => Err(ResolveError::Temporary {
                    name: name.to_string(),
                    reason: e.to_string(),
                }),
            },
        }
    }

    /// MX hosts of `domain`, most preferred first.
    pub async fn mx(&self, domain: &str) -> Result<Vec<String>, ResolveError> {
        let mut found: Vec<(u16, String)> = self
            .query(domain, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::MX(mx) => Some((mx.preference, host_text(&mx.exchange.to_string()))),
                _ => None,
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, host)| host).collect())
    }

    /// Target host and port of an SRV name, lowest priority first.
    pub async fn srv(&self, name: &str) -> Result<(String, u16), ResolveError> {
        let mut found: Vec<(u16, String, u16)> = self
            .query(name, RecordType::SRV)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(srv) => {
                    Some((srv.priority, host_text(&srv.target.to_string()), srv.port))
                }
                _ => None,
            })
            .collect();
        found.sort();
        found
            .into_iter()
            .next()
            .map(|(_, host, port)| (host, port))
            .ok_or_else(|| no_records(name, RecordType::SRV))
    }

    /// Addresses of a host: A, then AAAA.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let mut out = Vec::new();
        let mut last_error = None;
        for rtype in [RecordType::A, RecordType::AAAA] {
            match self.query(host, rtype).await {
                Ok(data) => out.extend(data.into_iter().filter_map(|d| match d {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => last_error = Some(e),
            }
        }
        match (out.is_empty(), last_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// Where to relay mail for `domain`: each MX by preference, its port from
    /// `SRV _smtp._tcp.<mx>` (25 when there is none), its addresses.
    pub async fn relay_targets(
        &self,
        domain: &str,
    ) -> Result<Vec<(String, SocketAddr)>, ResolveError> {
        let mut targets = Vec::new();
        let mut last_error = None;
        for mx in self.mx(domain).await? {
            let port = match self.srv(&format!("_smtp._tcp.{mx}")).await {
                Ok((_, port)) => port,
                Err(e) if e.is_temporary() => {
                    last_error = Some(e);
                    continue;
                }
                Err(_) => 25,
            };
            match self.addresses(&mx).await {
                Ok(addrs) => targets.extend(
                    addrs
                        .into_iter()
                        .map(|ip| (mx.clone(), SocketAddr::new(ip, port))),
                ),
                Err(e) => last_error = Some(e),
            }
        }
        match (targets.is_empty(), last_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(targets),
        }
    }

    /// The address of an RFC 6186 service (`_submission` or `_pop3`) of a mail domain.
    pub async fn service(
        &self,
        service: &str,
        domain: &str,
    ) -> Result<(String, SocketAddr), ResolveError> {
        let (host, port) = self.srv(&format!("{service}._tcp.{domain}")).await?;
        let ip = self
            .addresses(&host)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| no_records(&host, RecordType::A))?;
        Ok((host, SocketAddr::new(ip, port)))
    }
}

fn no_records(name: &str, rtype: RecordType) -> ResolveError {
    ResolveError::NoRecords {
        name: name.to_string(),
        rtype: rtype.to_string(),
    }
}

fn host_text(name: &str) -> String {
    name.trim_end_matches('.').to_string()
}

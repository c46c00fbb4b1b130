//! Finding the server a user agent talks to: `HOST:PORT` as given, or the
//! service's SRV record in the network's DNS.

use std::net::{IpAddr, SocketAddr};

use crate::resolve::{MailResolver, ResolveError};

/// Why a server could not be found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// `--server` is not `HOST:PORT`.
    #[error("{0}: expected HOST:PORT")]
    NotHostPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("{0}: bad port")]
    BadPort(String),
    /// The host name has no address, in the network or on this machine.
    #[error("{host}: {reason}")]
    NoAddress {
        /// The name.
        host: String,
        /// What the system resolver said.
        reason: String,
    },
    /// The service's SRV record could not be resolved.
    #[error("{service}._tcp.{domain} through DNS {dns}: {source}")]
    Service {
        /// `_submission` or `_pop3`.
        service: String,
        /// The mail domain.
        domain: String,
        /// The DNS asked.
        dns: SocketAddr,
        /// Why.
        #[source]
        source: ResolveError,
    },
}

/// The address of `server` (`HOST:PORT`), or of the `service` (`_submission`,
/// `_pop3`) of `domain` through DNS.
pub async fn locate(
    server: Option<&str>,
    dns: SocketAddr,
    service: &str,
    domain: &str,
) -> Result<SocketAddr, LocateError> {
    let resolver = MailResolver::from_dns_quick(dns);
    let Some(server) = server else {
        return resolver
            .service(service, domain)
            .await
            .map(|(_, addr)| addr)
            .map_err(|source| LocateError::Service {
                service: service.to_string(),
                domain: domain.to_string(),
                dns,
                source,
            });
    };
    let (host, port) = server
        .rsplit_once(':')
        .ok_or_else(|| LocateError::NotHostPort(server.to_string()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| LocateError::BadPort(server.to_string()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    // The system's resolver first (`localhost`, a real host): with
    // --server the network's DNS is asked only for a name nothing else knows.
    let no_address = |reason: String| LocateError::NoAddress {
        host: host.to_string(),
        reason,
    };
    let system = match tokio::net::lookup_host((host, port)).await {
        Ok(mut found) => found.next().ok_or_else(|| "no address".to_string()),
        Err(e) => Err(e.to_string()),
    };
    match system {
        Ok(addr) => Ok(addr),
        Err(reason) => match resolver.addresses(host).await {
            Ok(ips) if !ips.is_empty() => Ok(SocketAddr::new(ips[0], port)),
            _ => Err(no_address(reason)),
        },
    }
}

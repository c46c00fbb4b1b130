//! Joining a class hub (`mailnet up --join HUB --key FILE`): publishing the
//! running network's facts there with signed updates, and taking them back
//! on a clean stop.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use fake_dns::hub::client::{HubClient, HubError, Registration};
use fake_dns::hub::TsigKey;

use crate::orchestrator::RunningNetwork;

/// How long one exchange with the hub may take: long enough for a busy
/// class Wi-Fi, short enough that a wrong address is reported at once.
pub const HUB_TIMEOUT: Duration = Duration::from_secs(3);

/// The DNS port a hub is reached on when none is given.
pub const HUB_PORT: u16 = 53;

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT`; a bare address means port 53.
pub fn parse_hub(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, HUB_PORT));
    }
    Err(format!(
        "`{text}` is not IP or IP:PORT (e.g. 192.168.1.10 or 192.168.1.10:5300)"
    ))
}

/// The address of this machine's interface that routes to `hub`: what the
/// hub's other machines can reach this one at. No packet is sent.
pub fn address_toward(hub: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if hub.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(hub)?;
    Ok(socket.local_addr()?.ip())
}

/// Who this machine is, as the hub's owner records say: its host name and
/// the address it publishes. A restart from the same machine and address
/// refreshes its registration; anyone else needs `--force`.
pub fn owner_name(advertised: IpAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host} {advertised}")
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The key cannot be used.
    #[error("{0}")]
    Key(String),
    /// The hub said no, or did not answer.
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// A network registered at a hub.
pub struct Joined {
    client: HubClient,
    registration: Registration,
}

impl Joined {
    /// Registers what `running` publishes at `hub`, signed with `key`, as
    /// `owner`; `force` takes over names another machine holds.
    pub async fn join(
        running: &RunningNetwork,
        hub: SocketAddr,
        key: &TsigKey,
        owner: &str,
        force: bool,
    ) -> Result<Joined, JoinError> {
        let client = HubClient::new(hub, key, HUB_TIMEOUT).map_err(JoinError::Key)?;
        let registration =
            Registration::from_facts(&running.published_facts(), owner).map_err(HubError::from)?;
        registration.register(&client, force).await?;
        Ok(Joined {
            client,
            registration,
        })
    }

    /// The zones registered.
    pub fn zones(&self) -> Vec<String> {
        self.registration
            .zones
            .iter()
            .map(|(apex, _)| apex.to_string().trim_end_matches('.').to_string())
            .collect()
    }

    /// How many records were registered, each zone's owner record included.
    pub fn record_count(&self) -> usize {
        self.registration
            .zones
            .iter()
            .map(|(_, records)| records.len() + 1)
            .sum()
    }

    /// The hub.
    pub fn hub(&self) -> SocketAddr {
        self.client.hub()
    }

    /// Takes this machine's records off the hub.
    pub async fn leave(&self) -> Result<(), HubError> {
        self.registration.deregister(&self.client).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_addresses_default_to_port_53() {
        assert_eq!(
            parse_hub("192.0.2.1").unwrap(),
            "192.0.2.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_hub("192.0.2.1:5300").unwrap(),
            "192.0.2.1:5300".parse().unwrap()
        );
        assert_eq!(
            parse_hub("[2001:db8::1]").unwrap(),
            "[2001:db8::1]:53".parse().unwrap()
        );
        assert!(parse_hub("hub.example").unwrap_err().contains("IP:PORT"));
    }

    #[test]
    fn the_route_to_loopback_is_loopback() {
        let ip = address_toward("127.0.0.1:53".parse().unwrap()).unwrap();
        assert!(ip.is_loopback());
        assert!(owner_name(ip).ends_with(" 127.0.0.1"));
    }
}

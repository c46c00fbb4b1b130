//! The I/O shell every protocol shares (after Stalwart's `SessionManager`):
//!
//! - [`accept`]: accept until shutdown, cap sessions, answer the rest busy.
//! - [`session`]: one loop for every session: deadlines, shutdown, login
//!   back-off, transcripts, and the hand-over to TLS, driven by a pure core.

mod accept;
mod session;

pub use accept::{accept_loop, Caps};
pub use session::{run_session, Flow, Limits, Observe, Outbox, Protocol, SessionEnd, TlsMode};

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mailhost::MailHost;
use crate::service::Service;

/// Serves `service` of `host` on `listener` until `shutdown`: each
/// connection gets the protocol `start` makes for its peer, run by the
/// session loop with the server's deadlines; over the session cap, `busy`.
pub async fn serve<P, F>(
    listener: TcpListener,
    host: MailHost,
    service: Service,
    busy: Vec<u8>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    start: F,
) where
    P: Protocol + 'static,
    F: Fn(SocketAddr) -> P,
{
    let config = host.config().clone();
    let stop = shutdown.clone();
    let tls = tls_mode(&host, service);
    accept_loop(
        listener,
        &config.name,
        Caps {
            sessions: config.policy.max_sessions,
            per_client: config.policy.max_sessions_per_client,
            limit_loopback: config.policy.limit_loopback_clients,
        },
        busy,
        shutdown,
        tracker,
        |stream, peer| {
            let (host, stop, tls) = (host.clone(), stop.clone(), tls.clone());
            let protocol = start(peer);
            async move {
                let policy = &host.config().policy;
                let limits = Limits {
                    idle: policy.idle_timeout,
                    write: policy.idle_timeout,
                    min_rate: policy.min_data_rate,
                    session: policy.max_session_time,
                };
                let log = host.log(service);
                let observe = Observe {
                    server: host.config().name.clone(),
                    local: stream.local_addr().unwrap_or(peer),
                    events: host.events().clone(),
                    recorder: host.recorder().cloned(),
                };
                run_session(
                    stream,
                    peer,
                    protocol,
                    log,
                    service.name(),
                    limits,
                    &stop,
                    tls,
                    observe,
                )
                .await
            }
        },
    )
    .await
}

/// How `service` of `host` meets TLS: from the first byte on an implicit
/// port, on request otherwise, never when the server has no certificate or
/// its policy turns TLS off.
pub fn tls_mode(host: &MailHost, service: Service) -> TlsMode {
    match host.tls() {
        Some(config) if host.config().policy.tls != crate::network::TlsPolicy::Off => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            if service.implicit_tls() {
                TlsMode::Implicit(acceptor)
            } else {
                TlsMode::Offered(acceptor)
            }
        }
        _ => TlsMode::Off,
    }
}

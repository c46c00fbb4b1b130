//! The I/O shell every protocol shares (after Stalwart's `SessionManager`):
//!
//! - [`accept`]: accept until shutdown, cap sessions, answer the rest busy.
//! - [`session`]: one loop for every session: deadlines, shutdown, login
//!   back-off, transcripts, and the hand-over to TLS, driven by a pure core.
//! - [`spin`]: the serving thread polls a little before it sleeps.

mod accept;
mod session;
pub mod spin;

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
            let mut protocol = start(peer);
            async move {
                // Where the server speaks first, bytes already waiting were
                // sent before the greeting (the client cannot have read it).
                if !matches!(tls, TlsMode::Implicit(_)) && bytes_waiting(&stream) {
                    protocol.spoke_first();
                }
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
                    events: host.events().clone(),
                    recorder: host
                        .recorder()
                        .map(|r| (r.clone(), stream.local_addr().unwrap_or(peer))),
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

/// Whether the peer has sent bytes that are not read yet, asked of the
/// kernel without waiting and without consuming them.
fn bytes_waiting(stream: &tokio::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer we own, on a socket that stays open for the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn bytes_a_client_sent_before_any_reply_are_seen_without_reading_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let quiet = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!bytes_waiting(&accepted), "a client that waits");
        drop((quiet, accepted));

        let mut early = tokio::net::TcpStream::connect(addr).await.unwrap();
        early.write_all(b"EHLO early\r\n").await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        // Loopback queues the bytes on the receiving socket within the
        // sender's write; wait for them with a deadline all the same.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !bytes_waiting(&accepted) {
            assert!(tokio::time::Instant::now() < deadline, "bytes never seen");
            tokio::task::yield_now().await;
        }
        // Peeking consumed nothing: the session still reads the command.
        let mut buf = [0u8; 12];
        tokio::io::AsyncReadExt::read_exact(&mut accepted, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf, b"EHLO early\r\n");
    }
}

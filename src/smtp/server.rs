//! The thin tokio layer: accept connections, move bytes between the socket and
//! a [`Session`], store what it hands out.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::reply::Reply;
use super::session::{Event, Session, SmtpContext};
use crate::listener::Input;
use crate::mailhost::MailHost;
use crate::transcript::{keep_recent, SessionTranscript};

/// Messages up to this size are stored on the session's own thread.
const INLINE_DELIVERY: usize = 256 * 1024;

/// Accepts SMTP connections until `shutdown`; each session runs on `tracker`.
pub async fn serve(
    listener: TcpListener,
    host: MailHost,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let ctx = Arc::new(SmtpContext {
        hostname: host.config().name.clone(),
        server: host.config().clone(),
    });
    let busy = Reply::new(
        421,
        "4.7.0",
        format!("{} Too many connections, try again later", ctx.hostname),
    )
    .to_wire();
    let config = host.config().clone();
    let stop = shutdown.clone();
    crate::listener::accept_loop(
        listener,
        &config.name,
        config.policy.max_sessions,
        busy,
        shutdown,
        tracker,
        |stream, peer| run_session(stream, peer, ctx.clone(), host.clone(), stop.clone()),
    )
    .await
}

/// Runs one session over any byte stream: TCP now; generic so TLS can wrap it later.
pub async fn run_session<S>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<SmtpContext>,
    host: MailHost,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let log = host.smtp_log();
    let name = log.session_name("smtp");
    let mut lines = Vec::new();
    let mut session = Session::new(ctx.clone());
    let policy = &ctx.server.policy;
    let client_ip = peer.ip().to_string();
    let mut out = session.greeting().to_wire();
    // Spare capacity, not zeroed memory: `read_buf` fills it without a memset per session.
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);

    loop {
        while let Some(event) = session.next_event() {
            match event {
                Event::Reply(reply) => {
                    if reply.code == 535 {
                        // Slow down password guessing: answer a failed login late.
                        let _ = stream.write_all(&out).await;
                        out.clear();
                        tokio::time::sleep(policy.login_delay).await;
                    }
                    out.extend_from_slice(&reply.to_wire());
                }
                Event::Deliver(envelope) => {
                    let outcome = if envelope.message.len() <= INLINE_DELIVERY && !host.fsync() {
                        // A small write to the page cache takes microseconds; a
                        // thread hand-off costs more, and many threads creating
                        // files in one Maildir contend for its directory lock.
                        host.accept(&envelope, &client_ip)
                    } else {
                        let host = host.clone();
                        let ip = client_ip.clone();
                        tokio::task::spawn_blocking(move || host.accept(&envelope, &ip))
                            .await
                            .unwrap_or_else(|e| Err(format!("delivery task failed: {e}")))
                    };
                    if let Err(reason) = &outcome {
                        tracing::error!(server = %ctx.hostname, %reason, "could not store a message");
                    }
                    out.extend_from_slice(&session.delivered(outcome).to_wire());
                }
            }
        }
        // Logged before it is sent: a client that has read a reply can
        // rely on finding it in the transcript.
        keep_recent(&mut lines, log.write(&name, session.take_transcript()));
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if session.is_closed() {
            break;
        }
        match crate::listener::next_input(&mut stream, &mut buf, policy.idle_timeout, &shutdown)
            .await
        {
            Input::Data => {
                session.push(&buf);
                buf.clear();
            }
            // The client vanished: an unfinished message is dropped, never stored.
            Input::Closed => break,
            Input::Idle => {
                let _ = stream.write_all(&session.timeout().to_wire()).await;
                break;
            }
            Input::Shutdown => {
                let _ = stream.write_all(&session.shutdown().to_wire()).await;
                break;
            }
        }
    }
    keep_recent(&mut lines, log.write(&name, session.take_transcript()));
    let _ = stream.shutdown().await;
    log.finish(SessionTranscript {
        session: name,
        peer: peer.to_string(),
        lines,
    });
}

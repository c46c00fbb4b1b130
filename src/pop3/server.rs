//! The thin tokio layer for POP3: sockets, the maildrop lock, file reads, deletions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::content;
use super::session::{Event, Listing, OpenError, Pop3Context, Session};
use crate::listener::Input;
use crate::mailhost::MailHost;
use crate::store::{MailboxLock, StoredMessage};
use crate::transcript::{keep_recent, SessionTranscript};

/// Accepts POP3 connections until `shutdown`; each session runs on `tracker`.
pub async fn serve(
    listener: TcpListener,
    host: MailHost,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let ctx = Arc::new(Pop3Context {
        hostname: host.config().name.clone(),
        server: host.config().clone(),
    });
    let busy = b"-ERR [SYS/TEMP] too many connections, try again later\r\n".to_vec();
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

/// Runs one POP3 session over any byte stream.
pub async fn run_session<S>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<Pop3Context>,
    host: MailHost,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let log = host.pop3_log();
    let name = log.session_name("pop3");
    let policy = &ctx.server.policy;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let challenge = format!("<{}.{nanos}@{}>", std::process::id(), ctx.hostname);
    let mut session = Session::new(ctx.clone(), challenge);
    let mut out = session.greeting();
    let mut buf: Vec<u8> = Vec::with_capacity(4 * 1024);
    let mut lines = Vec::new();
    // Held while the maildrop is open; dropped however the session ends.
    let mut lock: Option<MailboxLock> = None;
    let mut messages: Vec<StoredMessage> = Vec::new();

    'session: loop {
        while let Some(event) = session.next_event() {
            match event {
                Event::Reply(bytes) => out.extend_from_slice(&bytes),
                Event::LoginFailed(bytes) => {
                    let _ = stream.write_all(&out).await;
                    out.clear();
                    tokio::time::sleep(policy.login_delay).await;
                    out.extend_from_slice(&bytes);
                }
                Event::OpenMailbox { user } => {
                    let result = match host.store().lock(&user) {
                        None => Err(OpenError::InUse),
                        Some(held) => {
                            let store = host.store().clone();
                            let listed = tokio::task::spawn_blocking(move || store.messages(&user))
                                .await
                                .map_err(|e| OpenError::System(e.to_string()))
                                .and_then(|r| r.map_err(|e| OpenError::System(e.to_string())));
                            if listed.is_ok() {
                                lock = Some(held);
                            }
                            listed
                        }
                    };
                    let listing = result.map(|found| {
                        messages = found;
                        messages
                            .iter()
                            .map(|m| Listing {
                                uid: m.uid.clone(),
                                size: m.size,
                            })
                            .collect()
                    });
                    out.extend_from_slice(&session.opened(listing));
                }
                Event::Send { status, index, top } => {
                    let path = messages[index].path.clone();
                    match tokio::fs::read(&path).await {
                        Ok(body) => {
                            if top.is_none() {
                                // Retrieved whole: now it has been seen.
                                match host.store().mark_seen(&messages[index]) {
                                    Ok(seen) => messages[index] = seen,
                                    Err(error) => {
                                        tracing::warn!(%error, "cannot move a message to cur/")
                                    }
                                }
                            }
                            out.extend_from_slice(&status);
                            let part = match top {
                                Some(n) => content::top(&body, n),
                                None => &body,
                            };
                            content::stuffed(part, &mut out);
                        }
                        Err(e) => out.extend_from_slice(
                            format!("-ERR [SYS/TEMP] cannot read message: {e}\r\n").as_bytes(),
                        ),
                    }
                    // Large messages go out now rather than piling up behind pipelined commands.
                    if out.len() > 256 * 1024 {
                        if stream.write_all(&out).await.is_err() {
                            break 'session;
                        }
                        out.clear();
                    }
                }
                Event::Commit { delete } => {
                    let doomed: Vec<StoredMessage> =
                        delete.iter().map(|&i| messages[i].clone()).collect();
                    let store = host.store().clone();
                    let result = tokio::task::spawn_blocking(move || {
                        let refs: Vec<&StoredMessage> = doomed.iter().collect();
                        store.delete(&refs)
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                    // Release the maildrop before answering, so a client that
                    // reconnects the moment it reads +OK finds it free.
                    lock = None;
                    out.extend_from_slice(&session.committed(result));
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
            // A dropped connection deletes nothing (RFC 1939: no UPDATE state).
            Input::Closed => break,
            Input::Idle => {
                let _ = stream.write_all(&session.timeout()).await;
                break;
            }
            Input::Shutdown => {
                let _ = stream.write_all(&session.shutdown()).await;
                break;
            }
        }
    }
    drop(lock);
    keep_recent(&mut lines, log.write(&name, session.take_transcript()));
    let _ = stream.shutdown().await;
    log.finish(SessionTranscript {
        session: name,
        peer: peer.to_string(),
        lines,
    });
}

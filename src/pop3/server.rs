//! The thin tokio layer for POP3: the [`Protocol`] that locks maildrops,
//! reads and deletes messages for the core, run by the shared session loop.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::content;
use super::session::{Event, Listing, OpenError, Pop3Context, Session};
use crate::listener::{Flow, Outbox, Protocol};
use crate::mailhost::MailHost;
use crate::service::Service;
use crate::store::{MailboxLock, StoredMessage};
use crate::transcript::Line;

/// Replies are sent in parts of about this size, so a session retrieving
/// large messages never holds more than this in memory.
const SEND_IN_PARTS: usize = 256 * 1024;

/// A message is read from its file in parts of this size.
const READ_PART: usize = 128 * 1024;

/// Accepts POP3 connections until `shutdown`; each session runs on `tracker`.
pub async fn serve(
    listener: TcpListener,
    host: MailHost,
    service: Service,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let tls = crate::listener::tls_mode(&host, service);
    let ctx = Arc::new(Pop3Context {
        hostname: host.config().name.clone(),
        server: host.config().clone(),
        stls: !matches!(tls, crate::listener::TlsMode::Off),
        faults: host.faults().clone(),
    });
    let busy = b"-ERR [SYS/TEMP] too many connections, try again later\r\n".to_vec();
    let protocol_host = host.clone();
    crate::listener::serve(
        listener,
        host,
        service,
        busy,
        shutdown,
        tracker,
        move |_peer| Pop3Protocol::new(ctx.clone(), protocol_host.clone()),
    )
    .await
}

/// POP3 as the session loop drives it. The maildrop lock lives here, so it
/// is released however the session ends.
pub struct Pop3Protocol {
    session: Session,
    host: MailHost,
    greeted: bool,
    lock: Option<MailboxLock>,
    messages: Vec<StoredMessage>,
    /// The message RETR is sending, a part at a time.
    retrieval: Option<content::Retrieval<std::fs::File>>,
}

impl Pop3Protocol {
    /// A new session with a fresh APOP challenge.
    pub fn new(ctx: Arc<Pop3Context>, host: MailHost) -> Pop3Protocol {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let challenge = format!("<{}.{nanos}@{}>", std::process::id(), ctx.hostname);
        Pop3Protocol {
            session: Session::new(ctx, challenge),
            host,
            greeted: false,
            lock: None,
            messages: Vec::new(),
            retrieval: None,
        }
    }

    async fn open(&mut self, user: String) -> Result<Vec<Listing>, OpenError> {
        let held = self.host.store().lock(&user).ok_or(OpenError::InUse)?;
        let store = self.host.store().clone();
        let found = tokio::task::spawn_blocking(move || store.messages(&user))
            .await
            .map_err(|e| OpenError::System(e.to_string()))?
            .map_err(|e| OpenError::System(e.to_string()))?;
        self.lock = Some(held);
        self.messages = found;
        // The core keeps the ids; this side needs only the paths.
        Ok(self
            .messages
            .iter_mut()
            .map(|m| Listing {
                uid: std::mem::take(&mut m.uid),
                size: m.size,
            })
            .collect())
    }

    /// Starts sending message `index`: RETR a part at a time (see
    /// [`Pop3Protocol::send_parts`]), TOP from the whole file.
    async fn send(&mut self, status: Vec<u8>, index: usize, top: Option<usize>, out: &mut Outbox) {
        let Some(message) = self.messages.get(index).cloned() else {
            out.push(b"-ERR [SYS/TEMP] no such message\r\n");
            return;
        };
        let Some(lines) = top else {
            match std::fs::File::open(&message.path) {
                Ok(file) => {
                    // Retrieved whole: now it has been seen (the open file
                    // reads on whatever its name becomes).
                    self.seen(index, &message);
                    out.push(&status);
                    self.retrieval = Some(content::Retrieval::new(file, READ_PART));
                }
                Err(e) => out.push(cannot_read(&e).as_bytes()),
            }
            return;
        };
        match tokio::fs::read(&message.path).await {
            Ok(body) => {
                out.push(&status);
                let mut wire = Vec::new();
                crate::wire::stuffed(content::top(&body, lines), &mut wire);
                out.push(&wire);
            }
            Err(e) => out.push(cannot_read(&e).as_bytes()),
        }
    }

    fn seen(&mut self, index: usize, message: &StoredMessage) {
        match self.host.store().mark_seen(message) {
            Ok(seen) => self.messages[index] = seen,
            Err(error) => tracing::warn!(%error, "cannot move a message to cur/"),
        }
    }

    /// Sends the message being retrieved until about [`SEND_IN_PARTS`] are
    /// queued; returns whether it is all queued. The parts are read from
    /// the page cache on the session's thread: a hand-off per part would
    /// cost more than the read.
    fn send_parts(&mut self, out: &mut Outbox) -> std::io::Result<bool> {
        let Some(retrieval) = &mut self.retrieval else {
            return Ok(true);
        };
        while !retrieval.is_done() && out.len() < SEND_IN_PARTS {
            out.push_with(|bytes| retrieval.next_part(bytes))?;
        }
        if retrieval.is_done() {
            self.retrieval = None;
            return Ok(true);
        }
        Ok(false)
    }

    async fn commit(&mut self, delete: Vec<usize>) -> Result<(), String> {
        let doomed: Vec<StoredMessage> = delete
            .iter()
            .filter_map(|&i| self.messages.get(i).cloned())
            .collect();
        let store = self.host.store().clone();
        let result = tokio::task::spawn_blocking(move || {
            let refs: Vec<&StoredMessage> = doomed.iter().collect();
            store.delete(&refs)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        // Release the maildrop before answering, so a client that
        // reconnects the moment it reads +OK finds it free.
        self.lock = None;
        result
    }
}

fn cannot_read(e: &std::io::Error) -> String {
    format!("-ERR [SYS/TEMP] cannot read message: {e}\r\n")
}

impl Protocol for Pop3Protocol {
    fn push(&mut self, bytes: &[u8]) {
        self.session.push(bytes);
    }

    async fn advance(&mut self, out: &mut Outbox) -> Flow {
        let mut opening = Vec::new();
        if !std::mem::replace(&mut self.greeted, true) {
            opening = self.session.open();
        }
        let mut opening = opening.into_iter();
        loop {
            match self.send_parts(out) {
                Ok(true) => {}
                Ok(false) => return Flow::More,
                Err(error) => {
                    // The status line went out with `+OK`: the client can
                    // only be told by closing.
                    tracing::warn!(%error, "cannot read a message being retrieved");
                    return Flow::Close;
                }
            }
            let Some(event) = opening.next().or_else(|| self.session.next_event()) else {
                break;
            };
            match event {
                Event::Reply(bytes) => out.push(&bytes),
                Event::Pause(pause) => out.pause(pause),
                Event::Drop => return Flow::Close,
                Event::LoginFailed(bytes) => {
                    out.pause(self.host.config().policy.login_delay);
                    out.push(&bytes);
                }
                Event::OpenMailbox { user } => {
                    let listing = self.open(user).await;
                    out.push(&self.session.opened(listing));
                }
                Event::Send { status, index, top } => {
                    self.send(status, index, top, out).await;
                    if out.len() > SEND_IN_PARTS {
                        return Flow::More;
                    }
                }
                Event::Commit { delete } => {
                    let result = self.commit(delete).await;
                    out.push(&self.session.committed(result));
                }
                Event::StartTls(reply) => {
                    out.push(&reply);
                    return Flow::UpgradeTls;
                }
            }
        }
        if self.session.is_closed() {
            Flow::Close
        } else {
            Flow::Read
        }
    }

    fn idle(&mut self, out: &mut Outbox) {
        out.push(&self.session.timeout());
    }

    fn shutting_down(&mut self, out: &mut Outbox) {
        out.push(&self.session.shutdown());
    }

    fn take_transcript(&mut self) -> Vec<Line> {
        self.session.take_transcript()
    }

    fn tls_established(&mut self, info: crate::tls::TlsInfo) {
        self.session.tls_established(info);
    }
}

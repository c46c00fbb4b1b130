//! The thin tokio layer for SMTP: the [`Protocol`] that stores what the
//! core accepts, run by the shared session loop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::delivery;
use super::reply::Reply;
use super::session::{DeliveryError, Event, Session, SmtpContext};
use crate::listener::{Flow, Outbox, Protocol};
use crate::mailhost::MailHost;
use crate::service::Service;
use crate::store::Spool;
use crate::transcript::Line;

/// Accepts SMTP connections until `shutdown`; each session runs on `tracker`.
pub async fn serve(
    listener: TcpListener,
    host: MailHost,
    service: Service,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let tls = crate::listener::tls_mode(&host, service);
    let ctx = Arc::new(SmtpContext {
        hostname: host.config().name.as_str().into(),
        server: host.config().clone(),
        starttls: !matches!(tls, crate::listener::TlsMode::Off),
        faults: host.faults().clone(),
    });
    let busy = Reply::new(
        421,
        "4.7.0",
        format!("{} Too many connections, try again later", ctx.hostname),
    )
    .to_wire();
    let protocol_host = host.clone();
    crate::listener::serve(
        listener,
        host,
        service,
        busy,
        shutdown,
        tracker,
        move |peer| SmtpProtocol::new(ctx.clone(), protocol_host.clone(), peer),
    )
    .await
}

/// SMTP as the session loop drives it.
pub struct SmtpProtocol {
    session: Session,
    host: MailHost,
    /// The server's name, shared by the events of its messages.
    server: Arc<str>,
    client_ip: String,
    greeted: bool,
    /// The message being received, on disk; `Err` when the spool could not
    /// be opened (the delivery then fails with it and the client gets `451`).
    spool: Option<std::io::Result<Spool>>,
}

impl SmtpProtocol {
    /// A session for a client at `peer`.
    pub fn new(ctx: Arc<SmtpContext>, host: MailHost, peer: SocketAddr) -> SmtpProtocol {
        let ip = peer.ip().to_canonical();
        let trusted = host
            .config()
            .policy
            .mynetworks
            .iter()
            .any(|net| net.contains(&ip));
        let relay_from = host.faults().relay_from(peer.port());
        SmtpProtocol {
            server: ctx.hostname.clone(),
            session: Session::new(ctx).trusting(trusted).relayed_from(relay_from),
            host,
            client_ip: peer.ip().to_string(),
            greeted: false,
            spool: None,
        }
    }
}

impl Protocol for SmtpProtocol {
    fn push(&mut self, bytes: &[u8]) {
        self.session.push(bytes);
    }

    async fn advance(&mut self, out: &mut Outbox) -> Flow {
        let mut opening = Vec::new();
        if !std::mem::replace(&mut self.greeted, true) {
            opening = self.session.open();
        }
        let mut opening = opening.into_iter();
        while let Some(event) = opening.next().or_else(|| self.session.next_event()) {
            match event {
                Event::Pause(pause) => out.pause(pause),
                Event::Drop => {
                    self.spool = None;
                    return Flow::Close;
                }
                Event::Reply(reply) => {
                    if reply.code == 535 {
                        // Slow down password guessing: answer a failed login late.
                        out.pause(self.host.config().policy.login_delay);
                    }
                    out.push_with(|bytes| reply.write_wire(bytes));
                }
                Event::Body(part) => {
                    let host = &self.host;
                    if let Ok(spool) = self.spool.get_or_insert_with(|| host.spool()) {
                        spool.append(&part);
                    }
                    self.session.recycle(part);
                }
                Event::Discard(reply) => {
                    self.spool = None;
                    out.push(&reply.to_wire());
                }
                Event::StartTls(reply) => {
                    out.push(&reply.to_wire());
                    return Flow::UpgradeTls;
                }
                Event::Deliver(envelope) => {
                    let log = MessageLog(&envelope);
                    let spool = self.spool.take().unwrap_or_else(|| self.host.spool());
                    let outcome = match spool {
                        Ok(spool) => {
                            delivery::deliver(&self.host, &envelope, spool, &self.client_ip).await
                        }
                        Err(error) => Err(DeliveryError::Spool(error)),
                    };
                    let outcome = outcome.map(|stored| {
                        log.write(&self.host.config().name, &stored.id);
                        log.emit(&self.host, &self.server, &stored.id, &self.client_ip);
                        // Only now may the relay take it: `queued` is
                        // announced before anything it does.
                        if let Some(held) = stored.queued {
                            held.release();
                        }
                        stored.id
                    });
                    if let Err(error) = &outcome {
                        tracing::error!(
                            server = %self.host.config().name,
                            error = %crate::error_chain(error),
                            "could not store a message"
                        );
                    }
                    let reply = self.session.delivered(outcome);
                    out.push_with(|bytes| reply.write_wire(bytes));
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
        out.push(&self.session.timeout().to_wire());
    }

    fn shutting_down(&mut self, out: &mut Outbox) {
        out.push(&self.session.shutdown().to_wire());
    }

    fn take_transcript(&mut self) -> Vec<Line> {
        self.session.take_transcript()
    }

    fn log_transcript(
        &mut self,
        log: &crate::transcript::TranscriptLog,
        session: &crate::transcript::OpenSession,
    ) {
        log.write_to(session, self.session.transcript_mut());
    }

    fn receiving_message(&self) -> bool {
        self.session.in_data()
    }

    fn spoke_first(&mut self) {
        self.session.spoke_first();
    }

    fn tls_established(&mut self, info: crate::tls::TlsInfo) {
        self.session.tls_established(info);
    }
}

/// The one log line per accepted message, like a capture tool's list:
/// `gmail.com: usr1@gmail.com → bob@gmail.com: delivered (id …)`.
struct MessageLog<'a>(&'a super::envelope::Envelope);

impl MessageLog<'_> {
    /// Tells the network's event bus: `received`, then `delivered` for each
    /// local recipient and `queued` for each remote one.
    fn emit(&self, host: &MailHost, server: &Arc<str>, id: &crate::id::QueueId, client: &str) {
        use crate::events::{Event, EventKind};
        let events = host.events();
        let envelope = self.0;
        // `from [client] for a, b`, built in place: this runs for every message.
        let all = envelope.local.iter().chain(&envelope.remote);
        let mut detail = String::with_capacity(
            16 + client.len() + all.clone().map(|r| r.len() + 2).sum::<usize>(),
        );
        for piece in ["from [", client, "] for "] {
            detail.push_str(piece);
        }
        for (i, rcpt) in all.enumerate() {
            if i > 0 {
                detail.push_str(", ");
            }
            detail.push_str(rcpt);
        }
        // The id and sender once, shared by the message's events.
        let id: Arc<str> = id.as_str().into();
        let from: Arc<str> = envelope.mail_from.as_str().into();
        let mut received = Event::at(EventKind::Received, server.clone()).of_message(&id, &from);
        received.detail = Some(detail);
        events.emit(received);
        for (kind, list) in [
            (EventKind::Delivered, &envelope.local),
            (EventKind::Queued, &envelope.remote),
        ] {
            for rcpt in list {
                events.emit(
                    Event::at(kind, server.clone())
                        .of_message(&id, &from)
                        .recipient(rcpt),
                );
            }
        }
    }

    fn write(&self, server: &str, id: &crate::id::QueueId) {
        let envelope = self.0;
        let from = if envelope.mail_from.is_empty() {
            "<>"
        } else {
            &envelope.mail_from
        };
        if !envelope.local.is_empty() {
            tracing::info!(
                "{server}: {from} → {}: delivered (id {id})",
                envelope.local.join(", ")
            );
        }
        if !envelope.remote.is_empty() {
            tracing::info!(
                "{server}: {from} → {}: queued for relay (id {id})",
                envelope.remote.join(", ")
            );
        }
    }
}

//! The session loop. A [`Protocol`] wraps a pure core and does the core's
//! side effects (store a message, open a maildrop); this loop moves bytes,
//! and owns every wait: the read deadline, the write deadline, the login
//! back-off, and the race with shutdown, so no protocol can forget one.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::transcript::{Line, TranscriptLog};

/// What the loop does after sending a protocol's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read more input.
    Read,
    /// More is ready without input (a large reply is being sent in parts):
    /// call [`Protocol::advance`] again.
    More,
    /// End the session.
    Close,
    /// Hand the connection to TLS (STARTTLS, STLS), then go on.
    UpgradeTls,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Closed: by the protocol, the client, a deadline or shutdown.
    Closed,
    /// The protocol asked for TLS; the caller wraps the stream and calls
    /// [`run_session`] again with the same protocol.
    UpgradeTls,
}

/// Bytes to send, with pauses between them.
#[derive(Debug, Default)]
pub struct Outbox {
    bytes: Vec<u8>,
    /// `(offset, pause)`: wait `pause` after sending `bytes[..offset]`.
    pauses: Vec<(usize, Duration)>,
}

impl Outbox {
    /// Queues bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Queues what `write` appends (a large reply written in place, not
    /// built apart and copied).
    pub fn push_with<T>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> T) -> T {
        write(&mut self.bytes)
    }

    /// Sends what is queued so far, then waits `pause` before the rest (the
    /// back-off after a failed login: the client sees the answer late).
    pub fn pause(&mut self, pause: Duration) {
        if !pause.is_zero() {
            self.pauses.push((self.bytes.len(), pause));
        }
    }

    /// How many bytes are queued.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.pauses.is_empty()
    }
}

/// A protocol as the loop drives it: a pure core plus the side effects it asks for.
pub trait Protocol: Send {
    /// Hands received bytes to the core.
    fn push(&mut self, bytes: &[u8]);

    /// Runs the core until it needs input, queuing what to send (the
    /// greeting first, on the first call).
    fn advance(&mut self, out: &mut Outbox) -> impl Future<Output = Flow> + Send;

    /// The client was idle too long: the farewell to send.
    fn idle(&mut self, out: &mut Outbox);

    /// The server is stopping: the farewell to send.
    fn shutting_down(&mut self, out: &mut Outbox);

    /// Transcript lines recorded since the last call.
    fn take_transcript(&mut self) -> Vec<Line>;

    /// Writes the transcript lines recorded since the last call to `log`
    /// as session `name`. A protocol that records into a buffer it keeps
    /// can hand it over to be drained, rather than give up its memory at
    /// every reply.
    fn log_transcript(&mut self, log: &TranscriptLog, name: &str) {
        log.write(name, self.take_transcript());
    }

    /// Whether the client is sending a message, which may take longer
    /// than one command as long as it keeps the minimum rate.
    fn receiving_message(&self) -> bool {
        false
    }

    /// The client sent bytes before the greeting, which the protocol's RFC
    /// forbids; called before the first [`Protocol::advance`].
    fn spoke_first(&mut self) {}

    /// TLS is now in place (implicit, or after the upgrade it asked for):
    /// the core starts over as its RFC says, and may record it.
    fn tls_established(&mut self, _info: crate::tls::TlsInfo) {}
}

/// The deadlines of one session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long the client may take to send a whole command after the
    /// previous answer (not per read: a byte a second does not keep a
    /// session alive), and the longest silence inside a message.
    pub idle: Duration,
    /// How long one write may take (a client that never reads cannot hold
    /// the session, or a maildrop lock, past this).
    pub write: Duration,
    /// Slowest a message may arrive, in octets per second: a message may
    /// take `idle` plus one second per `min_rate` octets.
    pub min_rate: u64,
    /// Longest the whole session may last.
    pub session: Duration,
}

/// When the client must have sent what it is sending now: a whole command
/// within `idle` of the last answer; a message at `min_rate` at least.
#[derive(Debug)]
struct Deadline {
    /// Set by the last answer.
    since: Instant,
    /// Message octets received since then.
    octets: u64,
    /// The end of the whole session.
    session_end: Instant,
}

impl Deadline {
    fn new(limits: &Limits) -> Deadline {
        let now = Instant::now();
        Deadline {
            since: now,
            octets: 0,
            session_end: now.checked_add(limits.session).unwrap_or(now + FAR),
        }
    }

    /// The client was answered: a new command (or message) begins.
    fn answered(&mut self) {
        self.since = Instant::now();
        self.octets = 0;
    }

    /// When the current read must end.
    fn next(&self, limits: &Limits, in_message: bool) -> Instant {
        let now = Instant::now();
        let silence = now.checked_add(limits.idle).unwrap_or(now + FAR);
        let mut allowed = limits.idle;
        if in_message && limits.min_rate > 0 {
            allowed = allowed.saturating_add(Duration::from_secs_f64(
                self.octets as f64 / limits.min_rate as f64,
            ));
        }
        let whole = self.since.checked_add(allowed).unwrap_or(now + FAR);
        silence.min(whole).min(self.session_end)
    }
}

/// "Never", for deadlines configured past what `Instant` can hold.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Where a session's transcript goes.
pub struct Transcript<'a> {
    /// The server's log for this service.
    pub log: &'a TranscriptLog,
    /// The session's name in it (the log keeps its latest lines).
    pub name: String,
    /// The session's bytes, when the network records sessions.
    pub recording: Option<crate::capture::Recording>,
}

/// Who watches a session: the network's event bus and, when sessions are
/// recorded, the recorder; with the names they need.
#[derive(Clone)]
pub struct Observe {
    /// The server's name.
    pub server: String,
    /// Where opening and closing are told.
    pub events: crate::events::Events,
    /// Where the bytes go, if anywhere, with the connection's local
    /// address (a system call, so asked only when something records).
    pub recorder: Option<(crate::capture::Recorder, SocketAddr)>,
}

enum Wrote {
    All,
    /// The client is gone, too slow, or the server is stopping.
    Failed,
}

/// An outbox keeps its buffer between replies up to this capacity (a large
/// reply is sent in parts of about 256 KiB: each reuses the last one's
/// memory); beyond it, the memory is given back.
const OUTBOX_KEEP: usize = 1024 * 1024;

/// Sends `out` with its pauses; every write has `limit` and races `shutdown`.
async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Outbox,
    limit: Duration,
    shutdown: &CancellationToken,
) -> Wrote {
    let wrote = send_queued(stream, out, limit, shutdown).await;
    out.pauses.clear();
    out.bytes.clear();
    if out.bytes.capacity() > OUTBOX_KEEP {
        out.bytes = Vec::new();
    }
    wrote
}

async fn send_queued<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &Outbox,
    limit: Duration,
    shutdown: &CancellationToken,
) -> Wrote {
    let bytes = &out.bytes;
    let mut at = 0;
    let mut pauses = out.pauses.iter().copied();
    loop {
        let (until, pause) = match pauses.next() {
            Some((offset, pause)) => (offset, Some(pause)),
            None => (bytes.len(), None),
        };
        if until > at {
            if !within(stream.write_all(&bytes[at..until]), limit, shutdown).await {
                return Wrote::Failed;
            }
            at = until;
        }
        let Some(pause) = pause else {
            // TLS keeps records buffered until flushed; a plain socket's
            // flush is free.
            return match within(stream.flush(), limit, shutdown).await {
                true => Wrote::All,
                false => Wrote::Failed,
            };
        };
        if !matches!(
            tokio::time::timeout(limit, stream.flush()).await,
            Ok(Ok(()))
        ) {
            return Wrote::Failed;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return Wrote::Failed,
        }
    }
}

/// Runs `io` to its end within `limit`, racing `shutdown`; whether it
/// succeeded. It is polled once first: a write to a socket with room, as
/// nearly every reply is, is done then, and needs no timer set and no
/// shutdown watched (they were a fifth of the loop's cost per reply).
async fn within<F>(io: F, limit: Duration, shutdown: &CancellationToken) -> bool
where
    F: Future<Output = std::io::Result<()>>,
{
    let mut io = std::pin::pin!(io);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(io.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(done) = first {
        return done.is_ok();
    }
    tokio::select! {
        done = tokio::time::timeout(limit, io) => matches!(done, Ok(Ok(()))),
        _ = shutdown.cancelled() => false,
    }
}

/// Runs `protocol` over `stream` until it closes or asks for TLS. The
/// transcript is written before each reply is sent, so a client that has
/// read a reply can rely on finding it logged.
pub async fn drive<S, P>(
    stream: &mut S,
    protocol: &mut P,
    limits: Limits,
    shutdown: &CancellationToken,
    transcript: &mut Transcript<'_>,
) -> SessionEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Protocol,
{
    let mut out = Outbox::default();
    // Spare capacity, not zeroed memory: `read_buf` fills it without a memset per session.
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut deadline = Deadline::new(&limits);
    // One timer and one shutdown watch for the session's reads, moved
    // rather than made anew for each read: moving a timer's deadline later
    // is one atomic operation, registering one takes the timer's lock.
    let timer = tokio::time::sleep_until(deadline.next(&limits, false));
    let mut timer = std::pin::pin!(timer);
    let mut cancelled = std::pin::pin!(shutdown.cancelled());
    loop {
        let flow = protocol.advance(&mut out).await;
        protocol.log_transcript(transcript.log, &transcript.name);
        let answered = !out.is_empty();
        if let Some(recording) = &mut transcript.recording {
            recording.server(&out.bytes);
        }
        if let Wrote::Failed = send(stream, &mut out, limits.write, shutdown).await {
            return SessionEnd::Closed;
        }
        if answered {
            deadline.answered();
        }
        match flow {
            Flow::More => continue,
            Flow::Close => return SessionEnd::Closed,
            Flow::UpgradeTls => return SessionEnd::UpgradeTls,
            Flow::Read => {}
        }
        let in_message = protocol.receiving_message();
        timer.as_mut().reset(deadline.next(&limits, in_message));
        // Shutdown first, then the read, then its deadline (a read that is
        // ready wins over a deadline just passed, as with `timeout`).
        let read = tokio::select! {
            biased;
            _ = &mut cancelled => {
                protocol.shutting_down(&mut out);
                break;
            }
            read = stream.read_buf(&mut buf) => Some(read),
            _ = &mut timer => None,
        };
        match read {
            Some(Ok(0)) | Some(Err(_)) => return SessionEnd::Closed,
            Some(Ok(n)) => {
                super::spin::SERVING.touch();
                if in_message {
                    deadline.octets += n as u64;
                }
                if let Some(recording) = &mut transcript.recording {
                    recording.client(&buf);
                }
                protocol.push(&buf);
                buf.clear();
            }
            None => {
                protocol.idle(&mut out);
                break;
            }
        }
    }
    // The farewell: logged, then sent with a short deadline whatever happens.
    protocol.log_transcript(transcript.log, &transcript.name);
    if let Some(recording) = &mut transcript.recording {
        recording.server(&out.bytes);
    }
    let never = CancellationToken::new();
    let farewell = limits.write.min(Duration::from_secs(1));
    let _ = send(stream, &mut out, farewell, &never).await;
    SessionEnd::Closed
}

/// How a session meets TLS.
#[derive(Clone)]
pub enum TlsMode {
    /// Never (the cores do not offer it).
    Off,
    /// On request: STARTTLS, STLS.
    Offered(tokio_rustls::TlsAcceptor),
    /// From the first byte (RFC 8314's implicit TLS ports).
    Implicit(tokio_rustls::TlsAcceptor),
}

/// Runs a whole session: names it in `log`, drives the protocol (over TLS
/// from the start, or after an upgrade it asks for), closes the stream, and
/// records the transcript's summary.
#[allow(clippy::too_many_arguments)]
pub async fn run_session<S, P>(
    mut stream: S,
    peer: SocketAddr,
    mut protocol: P,
    log: &TranscriptLog,
    session_kind: &str,
    limits: Limits,
    shutdown: &CancellationToken,
    tls: TlsMode,
    observe: Observe,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Protocol,
{
    let name = log.session_name(session_kind);
    let recording = observe
        .recorder
        .as_ref()
        .map(|(r, local)| r.open(&observe.server, session_kind, &name, peer, *local));
    let session_id = match &recording {
        Some(recording) => recording.id(),
        None => format!("{}-{}", observe.server, name.replace('#', "-")),
    };
    observe.events.emit(
        crate::events::Event::new(crate::events::EventKind::SessionOpened, &observe.server)
            .session(&session_id)
            .detail(format!("{session_kind} from {peer}")),
    );
    let mut transcript = Transcript {
        log,
        name,
        recording,
    };
    let acceptor = match tls {
        TlsMode::Implicit(acceptor) => {
            // Boxed, here and below: a TLS stream's state is kilobytes,
            // which inline would make every session's future that large,
            // and a task's future is copied as it is spawned (that was
            // most of a plain connection's instructions).
            Box::pin(over_tls(
                &acceptor,
                stream,
                &mut protocol,
                limits,
                shutdown,
                &mut transcript,
            ))
            .await;
            return finish(log, transcript, peer, &observe, &session_id);
        }
        TlsMode::Offered(acceptor) => Some(acceptor),
        TlsMode::Off => None,
    };
    let end = drive(
        &mut stream,
        &mut protocol,
        limits,
        shutdown,
        &mut transcript,
    )
    .await;
    match (end, acceptor) {
        (SessionEnd::UpgradeTls, Some(acceptor)) => {
            // Whatever the client pipelined after STARTTLS/STLS in clear
            // was dropped by the core; the session goes on encrypted.
            Box::pin(over_tls(
                &acceptor,
                stream,
                &mut protocol,
                limits,
                shutdown,
                &mut transcript,
            ))
            .await;
        }
        // A plain socket needs no `shutdown` first: dropping it closes it
        // with the same FIN, and saves a system call per connection.
        _ => drop(stream),
    }
    drop(protocol);
    finish(log, transcript, peer, &observe, &session_id)
}

/// The rest of a session over TLS: the handshake, then the protocol.
async fn over_tls<S, P>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    protocol: &mut P,
    limits: Limits,
    shutdown: &CancellationToken,
    transcript: &mut Transcript<'_>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Protocol,
{
    if let Some(mut secured) = handshake(acceptor, stream, protocol, limits, shutdown).await {
        if let Some(recording) = &mut transcript.recording {
            recording.tls();
        }
        drive(&mut secured, protocol, limits, shutdown, transcript).await;
        close(&mut secured, limits).await;
    }
}

/// The TLS handshake, within the write deadline and racing shutdown; on
/// success the protocol learns what was negotiated.
async fn handshake<S, P>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    protocol: &mut P,
    limits: Limits,
    shutdown: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Protocol,
{
    let accept = tokio::time::timeout(limits.write, acceptor.accept(stream));
    let secured = tokio::select! {
        done = accept => match done {
            Ok(Ok(secured)) => secured,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                return None;
            }
            Err(_) => return None,
        },
        _ = shutdown.cancelled() => return None,
    };
    protocol.tls_established(crate::tls::TlsInfo::of(secured.get_ref().1));
    Some(secured)
}

async fn close<S: AsyncWrite + Unpin>(stream: &mut S, limits: Limits) {
    let _ = tokio::time::timeout(limits.write.min(Duration::from_secs(1)), stream.shutdown()).await;
}

/// Ends a session's records: the recording, the `session_closed` event and
/// the transcript's summary.
fn finish(
    log: &TranscriptLog,
    transcript: Transcript<'_>,
    peer: SocketAddr,
    observe: &Observe,
    session_id: &str,
) {
    observe.events.emit(
        crate::events::Event::new(crate::events::EventKind::SessionClosed, &observe.server)
            .session(session_id),
    );
    if let Some(recording) = transcript.recording {
        recording.close();
    }
    log.finish(&transcript.name, peer.to_string());
}

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

use crate::transcript::{Line, OpenSession, TranscriptLog};

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
    /// as `session`. A protocol that records into a buffer it keeps can
    /// hand it over to be drained, rather than give up its memory at every
    /// reply.
    fn log_transcript(&mut self, log: &TranscriptLog, session: &OpenSession) {
        log.write_session(session, self.take_transcript());
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
    /// The last answer, or the last read of a message if later: silence
    /// is counted from it.
    heard: Instant,
    /// Message octets received since the last answer.
    octets: u64,
    /// The end of the whole session.
    session_end: Instant,
}

impl Deadline {
    fn new(limits: &Limits) -> Deadline {
        let now = Instant::now();
        Deadline {
            since: now,
            heard: now,
            octets: 0,
            session_end: now.checked_add(limits.session).unwrap_or(now + FAR),
        }
    }

    /// The client was answered: a new command (or message) begins.
    fn answered(&mut self) {
        self.since = Instant::now();
        self.heard = self.since;
        self.octets = 0;
    }

    /// `n` octets arrived. Only inside a message does silence count from
    /// the last read: a command must be whole within `idle` of the answer
    /// before it, which comes first, so the clock is not read for it.
    fn heard(&mut self, n: usize, in_message: bool) {
        if in_message {
            self.heard = Instant::now();
            self.octets += n as u64;
        }
    }

    /// When the current read must end. It only moves later as the
    /// session goes on (answers and reads move it), but for one case: a
    /// message ended without an answer yet, where the message's allowance
    /// no longer counts.
    fn due(&self, limits: &Limits, in_message: bool) -> Instant {
        let far = |from: Instant, by: Duration| from.checked_add(by).unwrap_or(from + FAR);
        let silence = far(self.heard, limits.idle);
        let mut allowed = limits.idle;
        if in_message && limits.min_rate > 0 {
            allowed = allowed.saturating_add(Duration::from_secs_f64(
                self.octets as f64 / limits.min_rate as f64,
            ));
        }
        silence.min(far(self.since, allowed)).min(self.session_end)
    }
}

/// "Never", for deadlines configured past what `Instant` can hold.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Where a session's transcript goes.
pub struct Transcript<'a> {
    /// The server's log for this service.
    pub log: &'a TranscriptLog,
    /// The session in it (the log keeps its latest lines).
    pub session: OpenSession,
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
    // One timer and one shutdown watch for the session's reads. The timer
    // is not moved at every read (the deadline moves later at each one):
    // when it fires early, it is moved to the deadline then; it is moved
    // at once only when the deadline comes earlier than it is set for.
    // Moving it per read, with the clock and the sums that took, was a
    // twentieth of a reused SMTP session's instructions.
    let mut armed = deadline.due(&limits, false);
    let timer = tokio::time::sleep_until(armed);
    let mut timer = std::pin::pin!(timer);
    let mut cancelled = std::pin::pin!(shutdown.cancelled());
    loop {
        let flow = protocol.advance(&mut out).await;
        protocol.log_transcript(transcript.log, &transcript.session);
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
        let due = deadline.due(&limits, in_message);
        if due < armed {
            armed = due;
            timer.as_mut().reset(armed);
        }
        // Shutdown first (asked directly: a client that always has bytes
        // ready must not keep the session past it), then the read, then
        // its deadline (a read that is ready wins over a deadline just
        // passed, as with `timeout`). The shutdown watch is polled only
        // when the read must wait: polling it costs more than asking.
        if shutdown.is_cancelled() {
            protocol.shutting_down(&mut out);
            break;
        }
        let read = loop {
            tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => break Some(read),
                _ = &mut cancelled => break None,
                _ = &mut timer => {
                    let due = deadline.due(&limits, in_message);
                    if due <= Instant::now() {
                        break None;
                    }
                    armed = due;
                    timer.as_mut().reset(armed);
                }
            }
        };
        match read {
            Some(Ok(0)) | Some(Err(_)) => return SessionEnd::Closed,
            Some(Ok(n)) => {
                super::spin::SERVING.touch();
                deadline.heard(n, in_message);
                if let Some(recording) = &mut transcript.recording {
                    recording.client(&buf);
                }
                protocol.push(&buf);
                buf.clear();
            }
            None if shutdown.is_cancelled() => {
                protocol.shutting_down(&mut out);
                break;
            }
            None => {
                protocol.idle(&mut out);
                break;
            }
        }
    }
    // The farewell: logged, then sent with a short deadline whatever happens.
    protocol.log_transcript(transcript.log, &transcript.session);
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
        session: log.begin(name),
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
    log.finish(transcript.session.name(), peer.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// Answers `ok` to each line; says `idle` and `bye` for the deadline
    /// and shutdown.
    #[derive(Default)]
    struct Echo {
        input: Vec<u8>,
    }

    impl Protocol for Echo {
        fn push(&mut self, bytes: &[u8]) {
            self.input.extend_from_slice(bytes);
        }

        async fn advance(&mut self, out: &mut Outbox) -> Flow {
            while let Some(lf) = self.input.iter().position(|&b| b == b'\n') {
                self.input.drain(..=lf);
                out.push(b"ok\r\n");
            }
            Flow::Read
        }

        fn idle(&mut self, out: &mut Outbox) {
            out.push(b"idle\r\n");
        }

        fn shutting_down(&mut self, out: &mut Outbox) {
            out.push(b"bye\r\n");
        }

        fn take_transcript(&mut self) -> Vec<Line> {
            Vec::new()
        }
    }

    const IDLE: Duration = Duration::from_secs(1);

    fn limits() -> Limits {
        Limits {
            idle: IDLE,
            write: IDLE,
            min_rate: 0,
            session: Duration::from_secs(3600),
        }
    }

    /// Runs [`drive`] over one end of a pipe; the other end is returned.
    fn session(
        shutdown: &CancellationToken,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<SessionEnd>) {
        let (client, mut server) = tokio::io::duplex(4096);
        let shutdown = shutdown.clone();
        let task = tokio::spawn(async move {
            let log = TranscriptLog::open("test", None, false);
            let mut transcript = Transcript {
                log: &log,
                session: log.begin("t#1".into()),
                recording: None,
            };
            drive(
                &mut server,
                &mut Echo::default(),
                limits(),
                &shutdown,
                &mut transcript,
            )
            .await
        });
        (client, task)
    }

    /// The read timer is moved only when it fires early: a client that
    /// speaks every 0.6 × idle is never cut, and once it falls silent it
    /// is cut one idle time after its last line, not after the first
    /// deadline the timer was set for.
    #[tokio::test(start_paused = true)]
    async fn the_idle_deadline_counts_from_the_last_line() {
        let shutdown = CancellationToken::new();
        let (client, task) = session(&shutdown);
        let (read, mut write) = tokio::io::split(client);
        let mut read = BufReader::new(read);
        let mut line = String::new();
        for _ in 0..5 {
            // Virtual time: the paused clock jumps, nothing waits.
            tokio::time::sleep(IDLE * 6 / 10).await;
            write.write_all(b"x\r\n").await.unwrap();
            line.clear();
            read.read_line(&mut line).await.unwrap();
            assert_eq!(line, "ok\r\n");
        }
        let silent = Instant::now();
        line.clear();
        read.read_line(&mut line).await.unwrap();
        assert_eq!(line, "idle\r\n");
        let waited = silent.elapsed();
        assert!(
            waited >= IDLE && waited < IDLE + Duration::from_millis(50),
            "cut {waited:?} after the last line"
        );
        assert_eq!(task.await.unwrap(), SessionEnd::Closed);
    }

    /// A client whose bytes are always ready: `budget` reads of a line
    /// each, then silence. What the server sends is kept.
    struct Eager {
        budget: usize,
        sent: Vec<u8>,
    }

    impl AsyncRead for Eager {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.budget == 0 {
                return std::task::Poll::Pending;
            }
            self.budget -= 1;
            buf.put_slice(b"x\r\n");
            std::task::Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Eager {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bytes: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.sent.extend_from_slice(bytes);
            std::task::Poll::Ready(Ok(bytes.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A client with bytes always ready still meets shutdown: it is asked
    /// before every read, not only while a read waits.
    #[tokio::test]
    async fn shutdown_ends_a_session_whose_client_never_pauses() {
        const BUDGET: usize = 10_000;
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut client = Eager {
            budget: BUDGET,
            sent: Vec::new(),
        };
        let log = TranscriptLog::open("test", None, false);
        let mut transcript = Transcript {
            log: &log,
            session: log.begin("t#1".into()),
            recording: None,
        };
        let end = drive(
            &mut client,
            &mut Echo::default(),
            limits(),
            &shutdown,
            &mut transcript,
        )
        .await;
        assert_eq!(end, SessionEnd::Closed);
        assert!(client.sent.ends_with(b"bye\r\n"));
        let read = BUDGET - client.budget;
        assert!(read <= 1, "{read} reads after shutdown");
    }
}

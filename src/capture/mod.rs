//! Sessions as they happened on the wire (after TLS is taken off), kept for
//! the web API and pcap export.
//!
//! Every accepted connection is recorded into a [`Capture`] by the session
//! loop; the [`Recorder`] keeps the most recent ones, each bounded, so memory
//! stays flat however long the network runs.

use std::net::SocketAddr;
use std::time::SystemTime;

pub mod pcap;

/// One direction's bytes at one moment.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Sent by the client (else by the server).
    pub from_client: bool,
    /// When.
    pub at: SystemTime,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A session's recording.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The client's address.
    pub client: SocketAddr,
    /// The server's address (the listener's local address).
    pub server: SocketAddr,
    /// When the connection was accepted.
    pub opened: SystemTime,
    /// When it closed, if it has.
    pub closed: Option<SystemTime>,
    /// The bytes in order.
    pub chunks: Vec<Chunk>,
    /// Bytes were left out because the session passed the recording limit.
    pub truncated: bool,
}

/// How many octets of one session are recorded; the rest is left out and
/// the capture marked truncated.
pub const SESSION_OCTETS: usize = 1 << 20;

/// How many sessions (open or closed) the recorder keeps, across the network.
pub const SESSIONS: usize = 512;

/// How many octets all kept sessions may hold together: past it the oldest
/// are let go, so big messages cannot make the recorder hold 512 MiB.
pub const TOTAL_OCTETS: usize = 64 << 20;

/// A recorded session and what the API says about it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Its id in the API: `<server>-<protocol>-<n>`.
    pub id: String,
    /// The server.
    pub server: String,
    /// `smtp`, `pop3`, `smtps`, `pop3s`.
    pub protocol: String,
    /// Its name in the server's transcript log (`smtp#12`), whose lines hide credentials.
    pub transcript: String,
    /// TLS was negotiated (the capture holds the decrypted dialogue).
    pub tls: bool,
    /// The bytes.
    pub capture: Capture,
    /// The recorder let go of its bytes to stay within [`TOTAL_OCTETS`].
    pub released: bool,
}

type OnClose = Box<dyn Fn(&SessionRecord) + Send + Sync>;

struct Inner {
    sessions: std::collections::VecDeque<Arc<Mutex<SessionRecord>>>,
    next: u64,
    on_close: Option<OnClose>,
}

/// Octets held by every recording, shared with them.
type Held = Arc<std::sync::atomic::AtomicUsize>;

/// Keeps the most recent sessions of a network. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    held: Held,
}

use std::sync::{Arc, Mutex};

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder {
            inner: Arc::new(Mutex::new(Inner {
                sessions: std::collections::VecDeque::new(),
                next: 1,
                on_close: None,
            })),
            held: Held::default(),
        }
    }

    /// Calls `hook` with each session as it closes (`up --pcap DIR` writes it).
    pub fn on_close(&self, hook: impl Fn(&SessionRecord) + Send + Sync + 'static) {
        self.lock().on_close = Some(Box::new(hook));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts recording a session.
    pub fn open(
        &self,
        server: &str,
        protocol: &str,
        transcript: &str,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Recording {
        let mut inner = self.lock();
        let id = format!("{server}-{protocol}-{}", inner.next);
        inner.next += 1;
        let record = Arc::new(Mutex::new(SessionRecord {
            id,
            server: server.to_string(),
            protocol: protocol.to_string(),
            transcript: transcript.to_string(),
            tls: false,
            released: false,
            capture: Capture {
                client,
                server: local,
                opened: SystemTime::now(),
                closed: None,
                chunks: Vec::new(),
                truncated: false,
            },
        }));
        use std::sync::atomic::Ordering;
        while !inner.sessions.is_empty()
            && (inner.sessions.len() >= SESSIONS
                || self.held.load(Ordering::Relaxed) > TOTAL_OCTETS)
        {
            if let Some(oldest) = inner.sessions.pop_front() {
                let mut oldest = oldest.lock().unwrap_or_else(|e| e.into_inner());
                let octets: usize = oldest.capture.chunks.iter().map(|c| c.bytes.len()).sum();
                // Its bytes go; a recording still open goes on counting, but keeps nothing more.
                oldest.capture.chunks = Vec::new();
                oldest.capture.truncated = true;
                oldest.released = true;
                self.held.fetch_sub(
                    octets.min(self.held.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
        }
        inner.sessions.push_back(record.clone());
        Recording {
            record,
            recorder: self.clone(),
            octets: 0,
        }
    }

    /// Every kept session, oldest first (a copy).
    pub fn sessions(&self) -> Vec<SessionRecord> {
        let records: Vec<_> = self.lock().sessions.iter().cloned().collect();
        records
            .iter()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// One session by id.
    pub fn session(&self, id: &str) -> Option<SessionRecord> {
        let found = self
            .lock()
            .sessions
            .iter()
            .find(|r| r.lock().unwrap_or_else(|e| e.into_inner()).id == id)
            .cloned();
        found.map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The handle a session loop records through.
pub struct Recording {
    record: Arc<Mutex<SessionRecord>>,
    recorder: Recorder,
    octets: usize,
}

impl Recording {
    /// Its id.
    pub fn id(&self) -> String {
        self.lock().id.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&mut self, from_client: bool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let room = SESSION_OCTETS.saturating_sub(self.octets);
        let kept = &bytes[..bytes.len().min(room)];
        self.octets += kept.len();
        let mut record = self.lock();
        if record.released {
            return;
        }
        self.recorder
            .held
            .fetch_add(kept.len(), std::sync::atomic::Ordering::Relaxed);
        if kept.len() < bytes.len() {
            record.capture.truncated = true;
        }
        if kept.is_empty() {
            return;
        }
        let at = SystemTime::now();
        match record.capture.chunks.last_mut() {
            // Consecutive reads in one direction become one chunk.
            Some(last) if last.from_client == from_client && last.bytes.len() < 64 * 1024 => {
                last.bytes.extend_from_slice(kept)
            }
            _ => record.capture.chunks.push(Chunk {
                from_client,
                at,
                bytes: kept.to_vec(),
            }),
        }
    }

    /// Bytes the client sent.
    pub fn client(&mut self, bytes: &[u8]) {
        self.push(true, bytes);
    }

    /// Bytes the server sent.
    pub fn server(&mut self, bytes: &[u8]) {
        self.push(false, bytes);
    }

    /// TLS was negotiated: what follows is the decrypted dialogue.
    pub fn tls(&mut self) {
        self.lock().tls = true;
    }

    /// The session ended.
    pub fn close(self) {
        let record = {
            let mut record = self.lock();
            record.capture.closed = Some(SystemTime::now());
            record.clone()
        };
        if let Some(hook) = &self.recorder.lock().on_close {
            hook(&record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_session_is_recorded_in_order_and_bounded() {
        let recorder = Recorder::new();
        let closed = Arc::new(Mutex::new(Vec::new()));
        let seen = closed.clone();
        recorder.on_close(move |r| seen.lock().unwrap().push(r.id.clone()));
        let mut rec = recorder.open("gmail.com", "smtp", "smtp#1", addr(40000), addr(2125));
        rec.server(b"220 hi\r\n");
        rec.client(b"EHLO a\r\n");
        rec.client(b"QUIT\r\n");
        rec.server(b"221 bye\r\n");
        let id = rec.id();
        assert_eq!(id, "gmail.com-smtp-1");
        rec.close();
        let session = recorder.session(&id).unwrap();
        let dirs: Vec<bool> = session
            .capture
            .chunks
            .iter()
            .map(|c| c.from_client)
            .collect();
        assert_eq!(dirs, [false, true, false]);
        assert_eq!(session.capture.chunks[1].bytes, b"EHLO a\r\nQUIT\r\n");
        assert!(session.capture.closed.is_some());
        assert_eq!(*closed.lock().unwrap(), vec![id]);

        let mut big = recorder.open("gmail.com", "smtp", "smtp#2", addr(40001), addr(2125));
        big.client(&vec![b'x'; SESSION_OCTETS + 10]);
        let id = big.id();
        big.close();
        let session = recorder.session(&id).unwrap();
        assert!(session.capture.truncated);
        let total: usize = session.capture.chunks.iter().map(|c| c.bytes.len()).sum();
        assert_eq!(total, SESSION_OCTETS);
    }

    #[test]
    fn big_sessions_push_the_oldest_out_to_bound_the_total() {
        let recorder = Recorder::new();
        let mut first = recorder.open("a", "smtp", "smtp#1", addr(1), addr(2));
        let first_id = first.id();
        let chunk = vec![b'x'; SESSION_OCTETS];
        first.client(&chunk);
        for n in 0..TOTAL_OCTETS / SESSION_OCTETS + 1 {
            let mut next = recorder.open("a", "smtp", &format!("smtp#{n}"), addr(1), addr(2));
            next.client(&chunk);
            next.close();
        }
        // The first (still open) was let go: it keeps nothing, now or later.
        first.client(b"more");
        first.close();
        assert!(recorder
            .session(&first_id)
            .is_none_or(|s| s.released && s.capture.chunks.is_empty()));
        let held: usize = recorder
            .sessions()
            .iter()
            .flat_map(|s| s.capture.chunks.iter().map(|c| c.bytes.len()))
            .sum();
        assert!(held <= TOTAL_OCTETS + SESSION_OCTETS, "{held}");
    }

    #[test]
    fn only_the_most_recent_sessions_are_kept() {
        let recorder = Recorder::new();
        for n in 0..SESSIONS + 3 {
            recorder
                .open("a", "pop3", "pop3#1", addr(1), addr(2))
                .client(&[n as u8]);
        }
        let sessions = recorder.sessions();
        assert_eq!(sessions.len(), SESSIONS);
        assert_eq!(sessions[0].id, "a-pop3-4");
    }
}

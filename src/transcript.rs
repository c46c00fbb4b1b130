//! Session transcripts: the `C:` / `S:` lines of a dialogue, like a packet capture.
//!
//! Protocol cores record lines as they parse and answer them (no clock there);
//! the I/O layer stamps the time when it drains them.

use std::fmt;
use std::time::SystemTime;

/// Who sent a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The client.
    Client,
    /// The server.
    Server,
}

/// One transcript line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Who sent it.
    pub dir: Dir,
    /// The text, without CRLF; message bodies are abbreviated.
    pub text: String,
}

impl Line {
    /// A client line.
    pub fn client(text: impl Into<String>) -> Line {
        Line {
            dir: Dir::Client,
            text: text.into(),
        }
    }

    /// A server line.
    pub fn server(text: impl Into<String>) -> Line {
        Line {
            dir: Dir::Server,
            text: text.into(),
        }
    }
}

impl Dir {
    /// What a log line puts before the text, after the time: `" C: "`.
    fn prefix(self) -> &'static str {
        match self {
            Dir::Client => " C: ",
            Dir::Server => " S: ",
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The prefix without its leading space: `C: text`.
        write!(f, "{}{}", &self.dir.prefix()[1..], self.text)
    }
}

/// A transcript line with the time it was seen.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// When the I/O layer handled it.
    pub at: SystemTime,
    /// The line.
    pub line: Line,
}

impl fmt::Display for Stamped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", crate::date::clock_time(self.at), self.line)
    }
}

/// Transcript lines a protocol core records between two drains, keeping
/// their memory: a line recorded after [`Lines::clear`] reuses the text
/// buffer of one recorded before, so a long session records without
/// allocating (a `String` per line was a third of an SMTP session's
/// allocations).
#[derive(Debug, Default)]
pub struct Lines {
    /// `lines[..len]` are recorded; the rest are spare buffers.
    lines: Vec<Line>,
    len: usize,
}

/// [`Lines::clear`] keeps at most this many buffers, each of at most
/// [`KEPT_LINE`] bytes: a burst of pipelined commands or one long line
/// does not stay in memory for the rest of the session.
const KEPT_LINES: usize = 64;
const KEPT_LINE: usize = 512;

impl Lines {
    /// Records a line of `dir` whose text `write` appends.
    pub fn push_with(&mut self, dir: Dir, write: impl FnOnce(&mut String)) {
        if self.len == self.lines.len() {
            self.lines.push(Line {
                dir,
                text: String::new(),
            });
        }
        let line = &mut self.lines[self.len];
        line.dir = dir;
        line.text.clear();
        self.len += 1;
        write(&mut line.text)
    }

    /// Records a client line.
    pub fn client(&mut self, text: &str) {
        self.push_with(Dir::Client, |buf| buf.push_str(text));
    }

    /// Records a server line.
    pub fn server(&mut self, text: &str) {
        self.push_with(Dir::Server, |buf| buf.push_str(text));
    }

    /// The lines recorded since the last clear.
    pub fn as_slice(&self) -> &[Line] {
        &self.lines[..self.len]
    }

    /// The lines recorded since the last clear, to take their text from.
    fn as_mut_slice(&mut self) -> &mut [Line] {
        &mut self.lines[..self.len]
    }

    /// Forgets the recorded lines, keeping a bounded amount of their memory.
    pub fn clear(&mut self) {
        // Only the lines used since the last clear can have grown.
        for line in &mut self.lines[..self.len] {
            if line.text.capacity() > KEPT_LINE {
                line.text = String::new();
            }
        }
        if self.lines.len() > KEPT_LINES {
            self.lines.truncate(KEPT_LINES);
            self.lines.shrink_to(KEPT_LINES);
        }
        self.len = 0;
    }

    /// Takes the recorded lines (and none of the spare memory).
    pub fn take(&mut self) -> Vec<Line> {
        let mut taken = std::mem::take(&mut self.lines);
        taken.truncate(self.len);
        self.len = 0;
        taken
    }

    /// Whether no line is recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Shortens a message body for a transcript: its size and first header lines.
pub fn abbreviate_message(message: &[u8]) -> Vec<Line> {
    let lines = message.iter().filter(|&&b| b == b'\n').count()
        + usize::from(!message.is_empty() && !message.ends_with(b"\n"));
    abbreviate(message, lines as u64, message.len() as u64)
}

/// The transcript lines for a message of `lines` lines and `size` octets
/// that begins with `preview`: its first four lines, then a count of the rest.
pub fn abbreviate(preview: &[u8], lines: u64, size: u64) -> Vec<Line> {
    let mut out = Lines::default();
    abbreviate_into(&mut out, preview, lines, size);
    out.take()
}

/// [`abbreviate`], recorded into `out`.
pub fn abbreviate_into(out: &mut Lines, preview: &[u8], lines: u64, size: u64) {
    // A preview is nearly always valid UTF-8, then read where it is.
    let text = match std::str::from_utf8(preview) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(preview),
    };
    // `text.lines().take(4)`, with the line ends found by memchr.
    let mut rest: &str = &text;
    let mut taken = 0;
    while taken < 4 && !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(lf) => {
                let line = &rest[..lf];
                (line.strip_suffix('\r').unwrap_or(line), &rest[lf + 1..])
            }
            None => (rest, ""),
        };
        out.client(line);
        taken += 1;
        rest = next;
    }
    if lines > 4 {
        out.push_with(Dir::Client, |count| {
            count.push_str("[... ");
            crate::text::push_decimal(count, lines - 4, 0);
            count.push_str(" more lines, ");
            crate::text::push_decimal(count, size, 0);
            count.push_str(" octets in all]");
        });
    }
    out.client(".");
}

/// Where a server's finished and ongoing transcripts go: a log file per
/// protocol in the data directory, the terminal when `--transcripts` asked for
/// it, and a short in-memory history the grader reads.
pub struct TranscriptLog {
    server: String,
    live: bool,
    path: Option<std::path::PathBuf>,
    file: std::sync::Mutex<Option<LogFile>>,
    recent: std::sync::Mutex<std::collections::VecDeque<SessionTranscript>>,
    /// Lines of the sessions still open, so a grader can read a step's
    /// dialogue while the session goes on.
    active: std::sync::Mutex<NameMap<SharedActive>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Rotate the file past this size.
    rotate_at: u64,
}

/// The most lines kept in memory for one session; a long session keeps its latest.
pub const SESSION_LINES: usize = 200;

/// The longest line text kept; longer text is cut and its length noted.
pub const LINE_TEXT: usize = 256;

/// The most lines of one session written to the log file; after that one
/// line says the rest is left out (a client sending junk for hours must
/// not fill the disk).
pub const SESSION_LOG_LINES: usize = 2_000;

/// A log file larger than this is renamed to `<name>.1` (replacing the
/// previous one) and a new one started.
pub const LOG_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// `text` cut to [`LINE_TEXT`] bytes (at a character boundary) with its
/// full length noted.
fn clip(mut text: String) -> String {
    if text.len() <= LINE_TEXT {
        return text;
    }
    let full = text.len();
    let mut end = LINE_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("... [{full} octets]"));
    text
}

/// [`clip`] without taking the text: borrowed when short enough, as nearly
/// every line is.
fn clipped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= LINE_TEXT {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(clip(text.to_string()))
    }
}

/// The log file and when it was last flushed.
struct LogFile {
    writer: std::io::BufWriter<std::fs::File>,
    flushed: std::time::Instant,
    /// Its size so far, to know when to rotate.
    bytes: u64,
}

/// Under load, finished sessions are flushed together at most this often;
/// a session that ends when the server is quiet is flushed at once.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Drop for LogFile {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = self.writer.flush();
    }
}

/// The open sessions by name. Names are short and made here (`smtp#12`),
/// so SipHash's defence against chosen keys buys nothing, and a name is
/// looked up before every reply of every session.
type NameMap<V> = std::collections::HashMap<String, V, std::hash::BuildHasherDefault<NameHasher>>;

/// FNV-1a, for [`NameMap`].
struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> NameHasher {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An open session: its latest lines, and how many went to the file.
#[derive(Debug, Default)]
struct Active {
    lines: Ring,
    logged: usize,
}

/// An open session's lines, shared by the log's list of open sessions and
/// the session's own [`OpenSession`].
type SharedActive = std::sync::Arc<std::sync::Mutex<Active>>;

/// A session open in a [`TranscriptLog`] ([`TranscriptLog::begin`]): its
/// lines are written through it, without finding the session by name in
/// the log's list at every reply.
pub struct OpenSession {
    name: String,
    active: SharedActive,
}

impl OpenSession {
    /// The session's name in the log, `smtp#12`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The latest [`SESSION_LINES`] lines of a session. Once full, a line
/// overwrites the oldest in place, reusing its memory: a long session
/// keeps its lines without allocating or moving any.
#[derive(Debug, Default)]
struct Ring {
    slots: Vec<Stamped>,
    /// Where the next line goes once full; the oldest line is there.
    next: usize,
}

impl Ring {
    /// Keeps `line`, handing back in its place the text buffer of the
    /// line it overwrites (an empty one while the ring fills). A buffer
    /// that once held a long line is cut down to [`KEPT_LINE`] first: the
    /// text is clipped already, and 200 kept lines must not each hold the
    /// memory of the longest line the client ever sent.
    fn swap_in(&mut self, at: SystemTime, line: &mut Line) {
        if line.text.capacity() > KEPT_LINE {
            line.text.shrink_to(KEPT_LINE);
        }
        if self.slots.len() < SESSION_LINES {
            self.slots.push(Stamped {
                at,
                line: Line {
                    dir: line.dir,
                    text: std::mem::take(&mut line.text),
                },
            });
            return;
        }
        let slot = &mut self.slots[self.next];
        slot.at = at;
        slot.line.dir = line.dir;
        std::mem::swap(&mut slot.line.text, &mut line.text);
        self.next = (self.next + 1) % SESSION_LINES;
    }

    /// The lines, oldest first.
    fn iter(&self) -> impl Iterator<Item = &Stamped> {
        let (newer, older) = self.slots.split_at(self.next);
        older.iter().chain(newer)
    }

    fn into_vec(mut self) -> Vec<Stamped> {
        self.slots.rotate_left(self.next);
        self.slots
    }
}

/// A finished session's lines.
#[derive(Debug, Clone)]
pub struct SessionTranscript {
    /// `smtp#12`, `pop3#3`.
    pub session: String,
    /// The client's address.
    pub peer: String,
    /// Every line, stamped.
    pub lines: Vec<Stamped>,
}

/// How many finished sessions the in-memory history keeps.
const RECENT: usize = 256;

impl TranscriptLog {
    /// A log writing to `path` (created or appended on the first line), echoing
    /// to stdout when `live`. Nothing is opened until then, so this cannot fail.
    pub fn open(server: &str, path: Option<&std::path::Path>, live: bool) -> TranscriptLog {
        TranscriptLog {
            server: server.to_string(),
            live,
            path: path.map(|p| p.to_path_buf()),
            file: std::sync::Mutex::new(None),
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
            active: std::sync::Mutex::new(NameMap::default()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            rotate_at: LOG_FILE_BYTES,
        }
    }

    /// The same log, rotating its file past `bytes` instead of [`LOG_FILE_BYTES`].
    pub fn rotating_at(mut self, bytes: u64) -> TranscriptLog {
        self.rotate_at = bytes;
        self
    }

    fn open_file(path: &std::path::Path) -> std::io::Result<LogFile> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogFile {
            writer: std::io::BufWriter::with_capacity(64 * 1024, f),
            flushed: std::time::Instant::now() - FLUSH_EVERY,
            bytes,
        })
    }

    /// A name for a new session of `protocol`.
    pub fn session_name(&self, protocol: &str) -> String {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{protocol}#{n}")
    }

    /// Stamps and writes lines of an ongoing session, found by its name,
    /// and keeps its latest [`SESSION_LINES`] for the grader and the
    /// end-of-session record. Sessions the listener runs write through the
    /// handle [`TranscriptLog::begin`] gives instead.
    pub fn write(&self, session: &str, lines: Vec<Line>) {
        self.write_session(&self.begin(session.to_string()), lines);
    }

    /// Opens session `name`: what is written through the handle returned
    /// is kept and logged as [`TranscriptLog::write`] does, until
    /// [`TranscriptLog::finish`].
    pub fn begin(&self, name: String) -> OpenSession {
        let active = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.clone())
            .or_default()
            .clone();
        OpenSession { name, active }
    }

    /// Writes lines recorded into a [`Lines`] as
    /// [`TranscriptLog::write`] does, through an open session's handle;
    /// `lines` is cleared and keeps its memory to record the next ones in.
    pub fn write_to(&self, session: &OpenSession, lines: &mut Lines) {
        if !lines.is_empty() {
            self.write_entry(&session.name, &session.active, lines.as_mut_slice());
        }
        lines.clear();
    }

    /// [`TranscriptLog::write`] through an open session's handle.
    pub fn write_session(&self, session: &OpenSession, mut lines: Vec<Line>) {
        if !lines.is_empty() {
            self.write_entry(&session.name, &session.active, &mut lines);
        }
    }

    /// Called before every reply, so it is on the hot path of every
    /// session: one clock reading and one formatted time for all the lines
    /// of a call, the text built in one buffer sized once, and a ring for
    /// the kept lines whose memory each new line reuses (it was 46% of a
    /// reused SMTP session's instructions with a `format!` and a clock per
    /// line, a copy of each line for the caller and a 200-line shift at
    /// every call).
    ///
    /// The kept lines take the callers' text buffers and give theirs back
    /// (a [`Lines`] records the next reply's lines into them): each line
    /// is copied once, when it is recorded, not a second time here.
    fn write_entry(&self, session: &str, shared: &SharedActive, lines: &mut [Line]) {
        let now = SystemTime::now();
        let mut text: Vec<u8> = Vec::new();
        {
            let mut entry = shared.lock().unwrap_or_else(|e| e.into_inner());
            let logged_before = entry.logged;
            let count = lines.len();
            let room = SESSION_LOG_LINES.saturating_sub(logged_before).min(count);
            if room > 0 {
                let clock = crate::date::clock_digits(now);
                let fixed = self.server.len() + session.len() + clock.len() + 9;
                let size: usize = lines[..room]
                    .iter()
                    .map(|line| fixed + line.text.len().min(LINE_TEXT + 32))
                    .sum();
                text.reserve(size);
                // `[server session] time`, the same for every line of the
                // call: written once, then copied.
                for piece in [
                    b"[",
                    self.server.as_bytes(),
                    b" ",
                    session.as_bytes(),
                    b"] ",
                ] {
                    text.extend_from_slice(piece);
                }
                text.extend_from_slice(&clock);
                let stamp = text.len();
                for (i, line) in lines[..room].iter().enumerate() {
                    if i > 0 {
                        text.extend_from_within(..stamp);
                    }
                    text.extend_from_slice(line.dir.prefix().as_bytes());
                    text.extend_from_slice(clipped(&line.text).as_bytes());
                    text.push(b'\n');
                }
            }
            entry.logged = (logged_before + count).min(SESSION_LOG_LINES + 1);
            if logged_before <= SESSION_LOG_LINES && entry.logged > SESSION_LOG_LINES {
                text.extend_from_slice(
                    format!(
                        "[{} {session}] ... further lines of this session are not logged\n",
                        self.server
                    )
                    .as_bytes(),
                );
            }
            for line in lines {
                if line.text.len() > LINE_TEXT {
                    line.text = clip(std::mem::take(&mut line.text));
                }
                entry.lines.swap_in(now, line);
            }
        }
        if text.is_empty() {
            return;
        }
        if self.live {
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(&text);
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            if let Some(path) = &self.path {
                match Self::open_file(path) {
                    Ok(opened) => *file = Some(opened),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot write transcripts")
                    }
                }
            }
        }
        if let (Some(open), Some(path)) = (file.as_mut(), &self.path) {
            use std::io::Write;
            if open.bytes >= self.rotate_at {
                let _ = open.writer.flush();
                let mut rotated = path.as_os_str().to_owned();
                rotated.push(".1");
                let _ = std::fs::rename(path, &rotated);
                match Self::open_file(path) {
                    Ok(fresh) => *open = fresh,
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot start a new transcript file")
                    }
                }
            }
            if open.writer.write_all(&text).is_ok() {
                open.bytes += text.len() as u64;
            }
        }
    }

    /// Ends session `session` with a client at `peer`: its kept lines move
    /// to the finished sessions, and the log file is flushed (see
    /// [`FLUSH_EVERY`]).
    pub fn finish(&self, session: &str, peer: String) {
        if let Some(file) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            if file.flushed.elapsed() >= FLUSH_EVERY {
                use std::io::Write;
                let _ = file.writer.flush();
                file.flushed = std::time::Instant::now();
            }
        }
        // Moved with the open sessions locked: `sessions` reads those
        // first, so a reader sees the session open or finished, never
        // neither.
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let lines = active
            .remove(session)
            .map(|shared| {
                let mut entry = shared.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut entry.lines).into_vec()
            })
            .unwrap_or_default();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(SessionTranscript {
            session: session.to_string(),
            peer,
            lines,
        });
    }

    /// Every session in memory, finished (the most recent) and still open,
    /// as `(session, lines)`. A session may appear twice, open and finished,
    /// while it ends.
    pub fn sessions(&self) -> Vec<(String, Vec<Stamped>)> {
        let open: Vec<(String, Vec<Stamped>)> = {
            let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            active
                .iter()
                .map(|(s, shared)| {
                    let entry = shared.lock().unwrap_or_else(|e| e.into_inner());
                    (s.clone(), entry.lines.iter().cloned().collect())
                })
                .collect()
        };
        let mut all: Vec<(String, Vec<Stamped>)> = self
            .recent()
            .into_iter()
            .map(|t| (t.session, t.lines))
            .collect();
        all.extend(open);
        all
    }

    /// The most recent finished sessions, oldest first.
    pub fn recent(&self) -> Vec<SessionTranscript> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_shows_what_str_lines_would_show() {
        for preview in [
            &b""[..],
            b"a",
            b"a\r\nb\nc\r\r\nd\re\r\nf\r\n",
            b"\n\n\r\n\nx",
            b"one\r\ntwo\r\n\xff\xfe three\r\nfour\r",
            "Subject: é\r\n\r\nbody".as_bytes(),
        ] {
            for (lines, size) in [(0u64, 0u64), (4, 10), (5, 1234), (u64::MAX, u64::MAX)] {
                let text = String::from_utf8_lossy(preview);
                let mut want: Vec<Line> = text.lines().take(4).map(Line::client).collect();
                if lines > 4 {
                    want.push(Line::client(format!(
                        "[... {} more lines, {size} octets in all]",
                        lines - 4
                    )));
                }
                want.push(Line::client("."));
                assert_eq!(abbreviate(preview, lines, size), want, "{preview:?}");
            }
        }
    }

    #[test]
    fn each_logged_line_has_the_server_session_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtp.log");
        let log = TranscriptLog::open("gmail.com", Some(&path), false);
        let long = "x".repeat(LINE_TEXT + 1);
        log.write(
            "smtp#7",
            vec![
                Line::client("MAIL FROM:<a@b.c>"),
                Line::server("250 2.1.0 Ok"),
                Line::client(long.clone()),
            ],
        );
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let time = &lines[0]["[gmail.com smtp#7] ".len()..][..12];
        assert!(
            time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.',
            "{time}"
        );
        assert_eq!(
            lines[0],
            format!("[gmail.com smtp#7] {time} C: MAIL FROM:<a@b.c>")
        );
        assert_eq!(
            lines[1],
            format!("[gmail.com smtp#7] {time} S: 250 2.1.0 Ok")
        );
        assert_eq!(
            lines[2],
            format!("[gmail.com smtp#7] {time} C: {}", clip(long))
        );
    }

    #[test]
    fn long_lines_are_clipped_at_a_character_boundary() {
        let line = "é".repeat(300);
        let clipped = clip(line.clone());
        assert!(clipped.len() < LINE_TEXT + 20, "{}", clipped.len());
        assert!(clipped.ends_with("... [600 octets]"), "{clipped}");
        assert_eq!(clip("short".into()), "short");
    }

    /// A burst of lines or one long line does not stay in a session's
    /// memory: clearing keeps a bounded number of small buffers.
    #[test]
    fn recorded_lines_keep_bounded_memory() {
        let mut lines = Lines::default();
        lines.server(&"x".repeat(4096));
        for i in 0..1000 {
            lines.client(&i.to_string());
        }
        assert_eq!(lines.as_slice().len(), 1001);
        lines.clear();
        assert!(lines.is_empty());
        assert!(
            lines.lines.len() <= KEPT_LINES,
            "{} spare",
            lines.lines.len()
        );
        assert!(lines.lines.capacity() <= 2 * KEPT_LINES);
        assert!(lines.lines.iter().all(|l| l.text.capacity() <= KEPT_LINE));
        // What is recorded next is whole, in the reused buffers.
        lines.client("MAIL FROM:<a@b.c>");
        lines.server("250 2.1.0 Ok");
        let taken = lines.take();
        assert_eq!(
            taken,
            vec![
                Line::client("MAIL FROM:<a@b.c>"),
                Line::server("250 2.1.0 Ok")
            ]
        );
    }

    /// The kept lines are the latest, oldest first, open or finished,
    /// whether the ring has wrapped or not, and recorded lines reuse
    /// memory without mixing their texts.
    #[test]
    fn the_kept_lines_are_the_latest_in_order() {
        for total in [3, SESSION_LINES, SESSION_LINES + 1, 3 * SESSION_LINES + 7] {
            let log = TranscriptLog::open("gmail.com", None, false);
            let session = log.begin("smtp#1".into());
            let mut recorded = Lines::default();
            for i in 0..total {
                // A long line, then short ones in the same buffers.
                let text = if i % 7 == 0 {
                    format!("{i} {}", "x".repeat(40))
                } else {
                    i.to_string()
                };
                recorded.push_with(if i % 2 == 0 { Dir::Client } else { Dir::Server }, |t| {
                    t.push_str(&text)
                });
                if i % 5 == 4 {
                    log.write_to(&session, &mut recorded);
                }
            }
            log.write_to(&session, &mut recorded);
            let want: Vec<String> = (total.saturating_sub(SESSION_LINES)..total)
                .map(|i| {
                    if i % 7 == 0 {
                        format!("{i} {}", "x".repeat(40))
                    } else {
                        i.to_string()
                    }
                })
                .collect();
            let texts = |lines: &[Stamped]| -> Vec<String> {
                lines.iter().map(|l| l.line.text.clone()).collect()
            };
            let open = log.sessions();
            assert_eq!(texts(&open[0].1), want, "open, {total} lines");
            let first = total.saturating_sub(SESSION_LINES);
            assert_eq!(
                open[0].1[0].line.dir,
                if first % 2 == 0 {
                    Dir::Client
                } else {
                    Dir::Server
                }
            );
            log.finish("smtp#1", "127.0.0.1:1".into());
            assert_eq!(
                texts(&log.recent()[0].lines),
                want,
                "finished, {total} lines"
            );
        }
    }

    /// A long line is kept clipped, and the buffer it came in does not
    /// carry its text into the next line recorded.
    #[test]
    fn a_long_recorded_line_is_kept_clipped() {
        let log = TranscriptLog::open("gmail.com", None, false);
        let session = log.begin("smtp#1".into());
        let mut recorded = Lines::default();
        let long = "é".repeat(300);
        recorded.client(&long);
        log.write_to(&session, &mut recorded);
        recorded.server("250 ok");
        log.write_to(&session, &mut recorded);
        let texts: Vec<String> = log.sessions()[0]
            .1
            .iter()
            .map(|l| l.line.text.clone())
            .collect();
        assert_eq!(texts, [clip(long), "250 ok".to_string()]);
        // The kept line holds its clipped text, not the long line's memory.
        let mut huge = Lines::default();
        huge.client(&"x".repeat(64 * 1024));
        log.write_to(&session, &mut huge);
        let kept = log.sessions()[0].1.last().unwrap().line.text.clone();
        assert_eq!(kept, clip("x".repeat(64 * 1024)));
        let active = session.active.lock().unwrap();
        let slot = &active.lines.slots[active.lines.slots.len() - 1];
        assert!(
            slot.line.text.capacity() <= KEPT_LINE,
            "{}",
            slot.line.text.capacity()
        );
    }

    #[test]
    fn a_session_logs_a_bounded_number_of_lines_and_files_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtp.log");
        let log = TranscriptLog::open("gmail.com", Some(&path), false).rotating_at(10_000);
        let junk: Vec<Line> = (0..SESSION_LOG_LINES + 500)
            .map(|i| Line::client(format!("junk {i}")))
            .collect();
        log.write("smtp#1", junk);
        log.write("smtp#1", vec![Line::client("more junk")]);
        log.write("smtp#2", vec![Line::client("EHLO next")]);
        log.finish("smtp#1", "127.0.0.1:1".into());
        // In memory, the latest SESSION_LINES lines of the finished session.
        let finished = log.recent();
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].lines.len(), SESSION_LINES);
        assert_eq!(finished[0].lines.last().unwrap().line.text, "more junk");
        let open = log.sessions();
        assert!(open.iter().any(|(s, l)| s == "smtp#2" && l.len() == 1));
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(dir.path().join("smtp.log.1")).unwrap_or_default();
        let all = format!("{rotated}{text}");
        assert_eq!(
            all.matches(" C: junk ").count() + all.matches(" C: junk\n").count(),
            SESSION_LOG_LINES
        );
        assert_eq!(
            all.matches("further lines of this session are not logged")
                .count(),
            1
        );
        assert!(!all.contains("more junk"));
        assert!(rotated.contains("C: junk 0\n"), "the full file was rotated");
        assert!(
            text.contains("C: EHLO next") && !text.contains("junk"),
            "{text}"
        );
    }
}

//! The outbound queue on disk: a message accepted for remote recipients is
//! written here before its `250` is sent, so a crash after the `250` loses nothing.
//!
//! Each entry is one file, `<id>.qmsg`: the envelope (`from <addr>`, then one
//! `to <addr>` a line, the `MAIL` parameters, and whether the header
//! block and the body hold 8-bit octets), a blank line, then the message with
//! this hop's `Received:`. The relay reads the message back a chunk at a
//! time ([`MessageFile`]), never whole. It is written under a temporary name and renamed into place,
//! so an entry that exists is complete. One file an entry matters: creating
//! and deleting files is most of what a busy queue costs the filesystem.

use std::fs;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::id::QueueId;

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its id (also its file names).
    pub id: String,
    /// The reverse path; empty for the null sender.
    pub mail_from: String,
    /// Recipients still to deliver.
    pub recipients: Vec<String>,
    /// What the sender declared at `MAIL`, passed on when relaying.
    pub body: Body,
}

/// The envelope of a message being queued.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The reverse path; empty for the null sender.
    pub mail_from: &'a str,
    /// Where it goes.
    pub recipients: &'a [String],
    /// What the sender declared at `MAIL`.
    pub body: Body,
}

/// What a client declared about a message at `MAIL`, kept with it in the
/// queue so the relay can declare the same to the next server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Body {
    /// `BODY=8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// `SMTPUTF8` (RFC 6531): UTF-8 addresses and headers.
    pub smtputf8: bool,
}

/// A server's outbound queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    fsync: bool,
    /// Bumped on every change, so waiters wake on facts, not timers.
    changes: tokio::sync::watch::Sender<u64>,
    /// The entries, mirrored in memory so the relay never lists the folder
    /// again; loaded from disk when the queue is opened (a restart resumes).
    /// A `std` mutex: held for map operations only, never across `.await`.
    index: std::sync::Mutex<std::collections::BTreeMap<String, QueuedMessage>>,
}

impl Queue {
    /// Opens the queue directory (created with the first entry) and loads
    /// the entries a previous run left.
    pub fn open(dir: impl Into<PathBuf>, fsync: bool) -> io::Result<Queue> {
        let dir = dir.into();
        let queue = Queue {
            inner: Arc::new(Inner {
                dir,
                fsync,
                changes: tokio::sync::watch::channel(0).0,
                index: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            }),
        };
        let found = queue.scan()?;
        queue
            .index()
            .extend(found.into_iter().map(|e| (e.id.clone(), e)));
        Ok(queue)
    }

    fn index(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, QueuedMessage>> {
        self.inner.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Writes a message and its envelope as entry `id`.
    pub fn enqueue(
        &self,
        id: &QueueId,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> io::Result<()> {
        let id = id.as_str().to_string();
        let mut scan = Scanner::default();
        scan.feed(message);
        self.write_atomically(&format!("{id}.qmsg"), |file| {
            file.write_all(&entry_head(
                mail_from,
                recipients,
                Body::default(),
                scan.seen(),
            ))?;
            file.write_all(message)
        })?;
        self.added(QueuedMessage {
            id,
            mail_from: mail_from.to_string(),
            recipients: recipients.to_vec(),
            body: Body::default(),
        });
        Ok(())
    }
}

/// An entry on disk that the relay does not see yet: releasing it (or
/// dropping it) indexes it and wakes the relay. It lets the SMTP server
/// announce `queued` before the relay can announce `relayed`.
#[must_use = "the relay sees the entry only once it is released"]
pub struct Held {
    queue: Queue,
    entry: Option<QueuedMessage>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("entry", &self.entry).finish()
    }
}

impl Held {
    /// Hands the entry to the relay.
    pub fn release(mut self) {
        self.hand_over();
    }

    fn hand_over(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.queue.added(entry);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.hand_over();
    }
}

impl Queue {
    /// Indexes an entry just written and wakes the relay.
    fn added(&self, entry: QueuedMessage) {
        self.index().insert(entry.id.clone(), entry);
        self.inner.changes.send_modify(|n| *n += 1);
    }

    /// Writes a message as entry `id`: `prefix` (this hop's trace field)
    /// then the `body_size` octets of the spool file `body`, copied file to
    /// file so the message is never whole in memory. The entry is on disk
    /// when this returns; the relay sees it once the [`Held`] is released or
    /// dropped, so the server can announce it first.
    pub fn enqueue_parts(
        &self,
        id: &QueueId,
        envelope: Outgoing<'_>,
        prefix: &[u8],
        body: &mut fs::File,
        body_size: u64,
    ) -> io::Result<Held> {
        let Outgoing {
            mail_from,
            recipients,
            body: declared,
        } = envelope;
        let id = id.as_str().to_string();
        self.write_atomically(&format!("{id}.qmsg"), |file| {
            // The 8-bit answer is known only once the body has gone by:
            // the head says 7-bit, and its fixed-width line is corrected
            // in place after the copy, so the relay never scans it again.
            let head = entry_head(mail_from, recipients, declared, EightBit::default());
            file.write_all(&head)?;
            let mut scan = Scanner::default();
            scan.feed(prefix);
            file.write_all(prefix)?;
            copy_scanning(body, file, body_size, &mut scan)?;
            let seen = scan.seen();
            if seen != EightBit::default() {
                let line = seen.line();
                file.write_all_at(line.as_bytes(), (head.len() - 1 - line.len()) as u64)?;
            }
            Ok(())
        })?;
        Ok(Held {
            queue: self.clone(),
            entry: Some(QueuedMessage {
                id,
                mail_from: mail_from.to_string(),
                recipients: recipients.to_vec(),
                body: declared,
            }),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.qmsg"))
    }

    fn write_atomically(
        &self,
        name: &str,
        write: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> io::Result<()> {
        let tmp = self.inner.dir.join(format!(".{name}.tmp"));
        let mut file = match fs::File::create(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.inner.dir)?;
                fs::File::create(&tmp)?
            }
            other => other?,
        };
        if let Err(e) = write(&mut file) {
            drop(file);
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if self.inner.fsync {
            file.sync_all()?;
        }
        fs::rename(&tmp, self.inner.dir.join(name))
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<QueuedMessage> {
        self.index().values().cloned().collect()
    }

    /// Every complete entry on disk, oldest first (what a restart resumes).
    fn scan(&self) -> io::Result<Vec<QueuedMessage>> {
        let mut out = Vec::new();
        let listing = match fs::read_dir(&self.inner.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in listing {
            let name = entry?.file_name();
            if let Some(tmp) = name
                .to_str()
                .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
            {
                // Half-written by a run that was killed before its rename:
                // never acknowledged, so removing it loses nothing.
                let _ = fs::remove_file(self.inner.dir.join(tmp));
                continue;
            }
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".qmsg")) else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            match self.read_entry(id) {
                Ok((entry, _)) => out.push(entry),
                Err(error) => {
                    let kept = self.set_aside(id);
                    tracing::error!(error = %crate::error_chain(&error), ?kept, "queue entry set aside");
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Reads an entry's envelope, leaving its message on disk.
    fn read_entry(&self, id: &str) -> Result<(QueuedMessage, MessageFile), QueueError> {
        let unreadable = |source| QueueError::Unreadable {
            id: id.to_string(),
            source,
        };
        let malformed = || QueueError::Malformed { id: id.to_string() };
        let file = fs::File::open(self.path(id)).map_err(unreadable)?;
        let size = file.metadata().map_err(unreadable)?.len();
        let mut head = Vec::new();
        let mut lines = io::BufReader::new(&file).take(MAX_HEAD);
        loop {
            let before = head.len();
            if lines.read_until(b'\n', &mut head).map_err(unreadable)? == 0 {
                return Err(malformed());
            }
            if matches!(&head[before..], b"\n" | b"\r\n") {
                break;
            }
        }
        let (mut entry, start, recorded) = split_entry(&head).ok_or_else(malformed)?;
        entry.id = id.to_string();
        let start = start as u64;
        let mut message = MessageFile {
            file: Arc::new(file),
            start,
            len: size - start,
            eight_bit: recorded.unwrap_or_default(),
        };
        if recorded.is_none() {
            // Written before the queue recorded it: scan once, a chunk at a time.
            message.eight_bit = message.scan().map_err(unreadable)?;
        }
        Ok((entry, message))
    }

    /// An entry's message, open for reading a chunk at a time. The file
    /// stays readable while it is open even if the entry is rewritten or
    /// removed meanwhile (it is replaced by a rename, never changed in place).
    pub fn open_message(&self, id: &str) -> Result<MessageFile, QueueError> {
        self.read_entry(id).map(|(_, message)| message)
    }

    /// Moves an entry that cannot be relayed to `corrupt/` beside the
    /// queue, out of the relay's way but kept for a person to look at.
    pub fn set_aside(&self, id: &str) -> io::Result<PathBuf> {
        self.index().remove(id);
        self.inner.changes.send_modify(|n| *n += 1);
        let corrupt = self.inner.dir.join("corrupt");
        fs::create_dir_all(&corrupt)?;
        let kept = corrupt.join(format!("{id}.qmsg"));
        fs::rename(self.path(id), &kept)?;
        Ok(kept)
    }

    /// Narrows an entry to the recipients still pending, or removes it when none are.
    pub fn update(&self, id: &str, mail_from: &str, pending: &[String]) -> io::Result<()> {
        let result = if pending.is_empty() {
            self.remove(id)
        } else {
            let written =
                self.read_entry(id)
                    .map_err(io::Error::other)
                    .and_then(|(entry, message)| {
                        self.write_atomically(&format!("{id}.qmsg"), |file| {
                            let head =
                                entry_head(mail_from, pending, entry.body, message.eight_bit);
                            file.write_all(&head)?;
                            io::copy(&mut message.reader(), file).map(|_| ())
                        })
                    });
            if let Some(entry) = self.index().get_mut(id) {
                entry.recipients = pending.to_vec();
            }
            written
        };
        self.inner.changes.send_modify(|n| *n += 1);
        result
    }

    /// Removes an entry.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        self.index().remove(id);
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// A receiver that changes whenever an entry is added, narrowed or removed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Waits until the queue is empty or `deadline` passes; returns whether it is empty.
    pub async fn wait_until_empty(&self, deadline: Duration) -> bool {
        let mut changes = self.inner.changes.subscribe();
        let wait = async {
            loop {
                changes.borrow_and_update();
                if self.is_empty() {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok() && self.is_empty()
    }

    /// Whether the queue holds no entry.
    pub fn is_empty(&self) -> bool {
        self.index().is_empty()
    }
}

/// The envelope lines that begin an entry file.
fn entry_head(
    mail_from: &str,
    recipients: &[String],
    declared: Body,
    eight_bit: EightBit,
) -> Vec<u8> {
    let mut entry = format!("from {mail_from}\n");
    for r in recipients {
        entry.push_str(&format!("to {r}\n"));
    }
    if declared.eight_bit {
        entry.push_str("body 8bitmime\n");
    }
    if declared.smtputf8 {
        entry.push_str("smtputf8\n");
    }
    // Last before the blank line, so its place is known from the end.
    entry.push_str(&eight_bit.line());
    entry.push('\n');
    entry.into_bytes()
}

/// An entry file that is not what [`Queue::enqueue`] writes.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// It could not be read.
    #[error("queue entry {id}: cannot read it")]
    Unreadable {
        /// The entry.
        id: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It has no sender line, no recipient, or no end of envelope.
    #[error("queue entry {id}: malformed envelope")]
    Malformed {
        /// The entry.
        id: String,
    },
}

/// Reads an entry's envelope lines: returns it (without its id), where the
/// message begins, and the recorded 8-bit answer (`None` in entries written
/// before it was recorded); `None` unless it has `from`, at least one `to`,
/// and the blank line.
fn split_entry(bytes: &[u8]) -> Option<(QueuedMessage, usize, Option<EightBit>)> {
    let mut mail_from = None;
    let mut recipients = Vec::new();
    let mut body = Body::default();
    let mut eight_bit = None;
    let mut offset = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        offset += line.len();
        let text = std::str::from_utf8(line).ok()?;
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            let entry = QueuedMessage {
                id: String::new(),
                mail_from: mail_from?,
                recipients,
                body,
            };
            return (!entry.recipients.is_empty()).then_some((entry, offset, eight_bit));
        }
        if let Some(f) = text.strip_prefix("from ").or(text.strip_prefix("from")) {
            mail_from = Some(f.trim().to_string());
        } else if let Some(t) = text.strip_prefix("to ") {
            recipients.push(t.to_string());
        } else if text == "body 8bitmime" {
            body.eight_bit = true;
        } else if text == "smtputf8" {
            body.smtputf8 = true;
        } else if let Some(seen) = text.strip_prefix("content ").and_then(EightBit::parse) {
            eight_bit = Some(seen);
        } else {
            return None;
        }
    }
    None
}

/// The longest envelope read before an entry is called malformed: far
/// more than the most recipients a transaction takes, and it stops a file
/// with no blank line from being read whole.
const MAX_HEAD: u64 = 64 * 1024 * 1024;

/// How much of a message is read at once when it is scanned or copied.
const CHUNK: usize = 64 * 1024;

/// Where a message holds octets above 127: what decides `BODY=8BITMIME`,
/// whether it can be converted to 7-bit (RFC 6152 §3 converts bodies,
/// never headers) and whether it needs `SMTPUTF8`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EightBit {
    /// In the header block.
    pub headers: bool,
    /// After it.
    pub body: bool,
}

impl EightBit {
    /// Whether any octet of the message is above 127.
    pub fn any(self) -> bool {
        self.headers || self.body
    }

    /// The entry line: fixed width, so it can be corrected in place.
    fn line(self) -> String {
        let bits = |b: bool| if b { "8bit" } else { "7bit" };
        format!(
            "content headers={} body={}\n",
            bits(self.headers),
            bits(self.body)
        )
    }

    fn parse(text: &str) -> Option<EightBit> {
        let (headers, body) = text.split_once(' ')?;
        let bits = |v: Option<&str>| match v? {
            "7bit" => Some(false),
            "8bit" => Some(true),
            _ => None,
        };
        Some(EightBit {
            headers: bits(headers.strip_prefix("headers="))?,
            body: bits(body.strip_prefix("body="))?,
        })
    }
}

/// Finds 8-bit octets in a message fed in pieces of any size, telling the
/// header block (up to its first empty line) from the body.
#[derive(Debug, Default)]
struct Scanner {
    seen: EightBit,
    in_body: bool,
    /// Octets of the current header line so far: 0, 1 (a lone `\r`) or more.
    line: u8,
}

impl Scanner {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !self.in_body {
            let Some((&b, rest)) = bytes.split_first() else {
                return;
            };
            bytes = rest;
            self.seen.headers |= !b.is_ascii();
            self.line = match b {
                b'\n' if self.line < 2 => {
                    self.in_body = true;
                    0
                }
                b'\n' => 0,
                b'\r' if self.line == 0 => 1,
                _ => 2,
            };
        }
        self.seen.body |= !bytes.is_ascii();
    }

    fn seen(&self) -> EightBit {
        self.seen
    }
}

/// Copies exactly `size` octets of `from` (from its start) to `to`, a
/// chunk at a time, scanning them as they go by.
fn copy_scanning(
    from: &mut fs::File,
    to: &mut fs::File,
    size: u64,
    scan: &mut Scanner,
) -> io::Result<()> {
    from.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0; CHUNK];
    let mut copied = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        scan.feed(&buf[..n]);
        to.write_all(&buf[..n])?;
        copied += n as u64;
    }
    if copied != size {
        return Err(io::Error::other(format!(
            "the spooled message has {copied} octets, {size} expected"
        )));
    }
    Ok(())
}

/// A queued message on disk, read a chunk at a time: what the relay sends
/// and bounces from, so a message is never whole in memory. Cheap to
/// clone; every clone reads the same open file.
#[derive(Debug, Clone)]
pub struct MessageFile {
    file: Arc<fs::File>,
    /// Where the message begins in the file.
    start: u64,
    len: u64,
    eight_bit: EightBit,
}

impl MessageFile {
    /// A whole file as a message (a converted copy of one, say), with what
    /// its writer knows of its 8-bit octets.
    pub fn whole(file: fs::File, eight_bit: EightBit) -> io::Result<MessageFile> {
        let len = file.metadata()?.len();
        Ok(MessageFile {
            file: Arc::new(file),
            start: 0,
            len,
            eight_bit,
        })
    }

    /// Its size in octets.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no octet at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where it holds 8-bit octets.
    pub fn eight_bit(&self) -> EightBit {
        self.eight_bit
    }

    /// A reader from its first octet to its last.
    pub fn reader(&self) -> MessageReader {
        MessageReader {
            file: self.file.clone(),
            at: self.start,
            end: self.start + self.len,
        }
    }

    /// Its header block (through the empty line that ends it), or its
    /// first `limit` octets cut after their last whole line when the block
    /// is longer: a bounce quotes no more than that.
    pub fn headers(&self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut scan = Scanner::default();
        let mut reader = self.reader().take(limit as u64);
        let mut buf = vec![0; CHUNK.min(limit.max(1))];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for (i, &b) in buf[..n].iter().enumerate() {
                scan.feed(std::slice::from_ref(&b));
                if scan.in_body {
                    out.extend_from_slice(&buf[..=i]);
                    return Ok(out);
                }
            }
            out.extend_from_slice(&buf[..n]);
        }
        if out.len() as u64 >= limit as u64 {
            let whole = out.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            out.truncate(whole);
        }
        Ok(out)
    }

    fn scan(&self) -> io::Result<EightBit> {
        let mut scan = Scanner::default();
        let mut reader = self.reader();
        let mut buf = vec![0; CHUNK];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(scan.seen());
            }
            scan.feed(&buf[..n]);
        }
    }
}

/// Reads a [`MessageFile`] at its own position, so clones never disturb
/// each other.
#[derive(Debug)]
pub struct MessageReader {
    file: Arc<fs::File>,
    at: u64,
    end: u64,
}

impl Read for MessageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.at) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the queued message is shorter than its entry says",
            ));
        }
        self.at += n as u64;
        Ok(n)
    }
}

impl tokio::io::AsyncRead for MessageReader {
    /// Reads in place: at most one buffer (the sender's chunk) from a file
    /// the queue wrote moments ago, as the rest of the queue's file I/O
    /// does; handing each chunk to the blocking pool would cost more than
    /// the read.
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = Read::read(this, buf.initialize_unfilled())?;
        buf.advance(n);
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_and_shrink_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), false).unwrap();
        let rcpts = vec!["a@x.test".to_string(), "b@y.test".to_string()];
        let id = QueueId::next();
        queue.enqueue(&id, "s@z.test", &rcpts, b"msg\r\n").unwrap();
        let id = id.to_string();
        let reopened = Queue::open(dir.path(), false).unwrap();
        let entries = reopened.entries();
        assert_eq!(
            entries,
            vec![QueuedMessage {
                body: Body::default(),
                id: id.clone(),
                mail_from: "s@z.test".into(),
                recipients: rcpts
            }]
        );
        let mut message = Vec::new();
        let file = reopened.open_message(&id).unwrap();
        file.reader().read_to_end(&mut message).unwrap();
        assert_eq!(message, b"msg\r\n");
        assert_eq!(file.eight_bit(), EightBit::default());
        reopened
            .update(&id, "s@z.test", &["b@y.test".to_string()])
            .unwrap();
        assert_eq!(reopened.entries()[0].recipients, vec!["b@y.test"]);
        reopened.update(&id, "s@z.test", &[]).unwrap();
        assert!(reopened.is_empty());
    }

    #[test]
    fn a_held_entry_is_on_disk_but_unseen_until_released_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), false).unwrap();
        let changes = queue.subscribe();
        let enqueue = |queue: &Queue| {
            let mut body = tempfile::tempfile().unwrap();
            body.write_all(b"m\r\n").unwrap();
            body.rewind().unwrap();
            let rcpts = ["a@x.test".to_string()];
            let envelope = Outgoing {
                mail_from: "s@z.test",
                recipients: &rcpts,
                body: Body::default(),
            };
            queue
                .enqueue_parts(&QueueId::next(), envelope, b"", &mut body, 3)
                .unwrap()
        };
        let held = enqueue(&queue);
        assert!(queue.is_empty(), "the relay must not see it yet");
        assert!(!changes.has_changed().unwrap());
        assert_eq!(
            Queue::open(dir.path(), false).unwrap().entries().len(),
            1,
            "on disk"
        );
        held.release();
        assert_eq!(queue.entries().len(), 1);
        assert!(changes.has_changed().unwrap());
        drop(enqueue(&queue));
        assert_eq!(queue.entries().len(), 2, "dropping releases too");
    }

    #[test]
    fn unreadable_or_malformed_entries_are_set_aside_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), false).unwrap();
        let id = QueueId::next();
        queue
            .enqueue(&id, "s@z.test", &["a@x.test".into()], b"msg\r\n")
            .unwrap();
        let id = id.to_string();
        drop(queue);
        // A directory where a file should be cannot be read, even by root.
        fs::create_dir(dir.path().join("1.unreadable.qmsg")).unwrap();
        fs::write(dir.path().join("2.garbage.qmsg"), b"\xff\xfe no envelope").unwrap();
        fs::write(dir.path().join("3.norcpt.qmsg"), b"from s@z.test\n\nbody").unwrap();
        let reopened = Queue::open(dir.path(), false).unwrap();
        let ids: Vec<String> = reopened.entries().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![id]);
        for kept in ["1.unreadable", "2.garbage", "3.norcpt"] {
            assert!(
                dir.path().join(format!("corrupt/{kept}.qmsg")).exists(),
                "{kept}"
            );
            assert!(!dir.path().join(format!("{kept}.qmsg")).exists(), "{kept}");
        }
    }

    #[test]
    fn a_null_sender_is_a_valid_envelope() {
        let (entry, at, _) = split_entry(b"from \nto a@x\n\nbody").unwrap();
        assert_eq!(
            (entry.mail_from.as_str(), &entry.recipients[..], at),
            ("", &["a@x".to_string()][..], 14)
        );
        assert_eq!(entry.body, Body::default());
        let (entry, _, _) = split_entry(b"from s@x\nto a@x\nbody 8bitmime\nsmtputf8\n\nb").unwrap();
        assert_eq!(
            entry.body,
            Body {
                eight_bit: true,
                smtputf8: true
            }
        );
        assert_eq!(split_entry(b"to a@x\n\nbody"), None);
        assert_eq!(split_entry(b"from s@x\nto a@x\n"), None);
    }

    fn read_all(message: &MessageFile) -> Vec<u8> {
        let mut out = Vec::new();
        message.reader().read_to_end(&mut out).unwrap();
        out
    }

    /// Where the 8-bit octets are is recorded once, as the entry is written
    /// (corrected in place after the body went by), survives narrowing,
    /// and is found by a scan in an entry written before it was recorded.
    #[test]
    fn eight_bit_octets_are_recorded_at_queue_time() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), false).unwrap();
        let rcpts = vec!["a@x.test".to_string(), "b@y.test".to_string()];
        let cases: [(&[u8], EightBit); 4] = [
            (b"Subject: plain\r\n\r\nascii\r\n", EightBit::default()),
            (
                "Subject: plain\r\n\r\nünï\r\n".as_bytes(),
                EightBit {
                    headers: false,
                    body: true,
                },
            ),
            (
                "Subject: ünï\r\n\r\nascii\r\n".as_bytes(),
                EightBit {
                    headers: true,
                    body: false,
                },
            ),
            // No header block at all: everything is body.
            (
                "\r\nünï\r\n".as_bytes(),
                EightBit {
                    headers: false,
                    body: true,
                },
            ),
        ];
        for (message, expected) in cases {
            let spool_path = dir.path().join("spool");
            fs::write(&spool_path, message).unwrap();
            let mut spool = fs::File::options()
                .read(true)
                .write(true)
                .open(&spool_path)
                .unwrap();
            let id = QueueId::next();
            let envelope = Outgoing {
                mail_from: "s@z.test",
                recipients: &rcpts,
                body: Body::default(),
            };
            queue
                .enqueue_parts(
                    &id,
                    envelope,
                    b"Received: x\r\n",
                    &mut spool,
                    message.len() as u64,
                )
                .unwrap()
                .release();
            let id = id.to_string();
            let opened = queue.open_message(&id).unwrap();
            assert_eq!(opened.eight_bit(), expected, "{message:?}");
            let mut whole = b"Received: x\r\n".to_vec();
            whole.extend_from_slice(message);
            assert_eq!(read_all(&opened), whole);
            queue.update(&id, "s@z.test", &rcpts[1..]).unwrap();
            let narrowed = Queue::open(dir.path(), false)
                .unwrap()
                .open_message(&id)
                .unwrap();
            assert_eq!(narrowed.eight_bit(), expected);
            assert_eq!(read_all(&narrowed), whole);
            // Written by an older mailnet: no content line.
            let old = dir.path().join(format!("old-{id}.qmsg"));
            let mut bytes = b"from s@z.test\nto a@x.test\n\n".to_vec();
            bytes.extend_from_slice(&whole);
            fs::write(&old, bytes).unwrap();
            let scanned = queue.open_message(&format!("old-{id}")).unwrap();
            assert_eq!(scanned.eight_bit(), expected);
            assert_eq!(read_all(&scanned), whole);
        }
    }

    #[test]
    fn a_bounce_reads_only_the_header_block_and_at_most_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), false).unwrap();
        let id = QueueId::next();
        let body = "x".repeat(3 * CHUNK);
        let message = format!("A: 1\r\nB: 2\r\n\r\n{body}");
        queue
            .enqueue(&id, "s@z.test", &["a@x.test".into()], message.as_bytes())
            .unwrap();
        let opened = queue.open_message(id.as_str()).unwrap();
        assert_eq!(opened.headers(1 << 20).unwrap(), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(opened.headers(9).unwrap(), b"A: 1\r\n");
        let id = QueueId::next();
        let endless = format!("A: {body}\r\nB: 2\r\n\r\n");
        queue
            .enqueue(&id, "s@z.test", &["a@x.test".into()], endless.as_bytes())
            .unwrap();
        let opened = queue.open_message(id.as_str()).unwrap();
        assert!(opened.headers(CHUNK).unwrap().is_empty());
    }
}

//! The outbound queue on disk: a message accepted for remote recipients is
//! written here before its `250` is sent, so a crash after the `250` loses nothing.
//!
//! Each entry is one file, `<id>.qmsg`: the envelope (`from <addr>`, then one
//! `to <addr>` a line), a blank line, then the message with this hop's
//! `Received:`. It is written under a temporary name and renamed into place,
//! so an entry that exists is complete. One file an entry matters: creating
//! and deleting files is most of what a busy queue costs the filesystem.

use std::fs;
use std::io::{self, Write};
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
        self.write_entry(&id, mail_from, recipients, Body::default(), message)?;
        self.added(QueuedMessage {
            id,
            mail_from: mail_from.to_string(),
            recipients: recipients.to_vec(),
            body: Body::default(),
        });
        Ok(())
    }

    /// Indexes an entry just written and wakes the relay.
    fn added(&self, entry: QueuedMessage) {
        self.index().insert(entry.id.clone(), entry);
        self.inner.changes.send_modify(|n| *n += 1);
    }

    /// Writes a message as entry `id`: `prefix` (this hop's trace field)
    /// then the `body_size` octets of the spool file `body`, copied file to
    /// file so the message is never whole in memory.
    pub fn enqueue_parts(
        &self,
        id: &QueueId,
        envelope: Outgoing<'_>,
        prefix: &[u8],
        body: &mut fs::File,
        body_size: u64,
    ) -> io::Result<()> {
        let Outgoing {
            mail_from,
            recipients,
            body: declared,
        } = envelope;
        let id = id.as_str().to_string();
        self.write_atomically(&format!("{id}.qmsg"), |file| {
            file.write_all(&entry_head(mail_from, recipients, declared))?;
            file.write_all(prefix)?;
            super::maildir::copy_whole(body, file, body_size)
        })?;
        self.added(QueuedMessage {
            id,
            mail_from: mail_from.to_string(),
            recipients: recipients.to_vec(),
            body: declared,
        });
        Ok(())
    }

    fn write_entry(
        &self,
        id: &str,
        mail_from: &str,
        recipients: &[String],
        declared: Body,
        message: &[u8],
    ) -> io::Result<()> {
        self.write_atomically(&format!("{id}.qmsg"), |file| {
            file.write_all(&entry_head(mail_from, recipients, declared))?;
            file.write_all(message)
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

    fn read_entry(&self, id: &str) -> Result<(QueuedMessage, Vec<u8>), QueueError> {
        let mut bytes = fs::read(self.path(id)).map_err(|source| QueueError::Unreadable {
            id: id.to_string(),
            source,
        })?;
        let (mut entry, body_at) =
            split_entry(&bytes).ok_or_else(|| QueueError::Malformed { id: id.to_string() })?;
        entry.id = id.to_string();
        bytes.drain(..body_at);
        Ok((entry, bytes))
    }

    /// The message bytes of an entry.
    pub fn message(&self, id: &str) -> Result<Vec<u8>, QueueError> {
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
            let written = self
                .read_entry(id)
                .map_err(io::Error::other)
                .and_then(|(entry, m)| self.write_entry(id, mail_from, pending, entry.body, &m));
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
fn entry_head(mail_from: &str, recipients: &[String], declared: Body) -> Vec<u8> {
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

/// Splits an entry file into sender, recipients and where the message
/// starts; `None` unless it has `from`, at least one `to`, and the blank line.
/// Reads an entry's envelope lines; returns it (without its id) and where
/// the message begins.
fn split_entry(bytes: &[u8]) -> Option<(QueuedMessage, usize)> {
    let mut mail_from = None;
    let mut recipients = Vec::new();
    let mut body = Body::default();
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
            return (!entry.recipients.is_empty()).then_some((entry, offset));
        }
        if let Some(f) = text.strip_prefix("from ").or(text.strip_prefix("from")) {
            mail_from = Some(f.trim().to_string());
        } else if let Some(t) = text.strip_prefix("to ") {
            recipients.push(t.to_string());
        } else if text == "body 8bitmime" {
            body.eight_bit = true;
        } else if text == "smtputf8" {
            body.smtputf8 = true;
        } else {
            return None;
        }
    }
    None
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
        assert_eq!(reopened.message(&id).unwrap(), b"msg\r\n");
        reopened
            .update(&id, "s@z.test", &["b@y.test".to_string()])
            .unwrap();
        assert_eq!(reopened.entries()[0].recipients, vec!["b@y.test"]);
        reopened.update(&id, "s@z.test", &[]).unwrap();
        assert!(reopened.is_empty());
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
        let (entry, at) = split_entry(b"from \nto a@x\n\nbody").unwrap();
        assert_eq!(
            (entry.mail_from.as_str(), &entry.recipients[..], at),
            ("", &["a@x".to_string()][..], 14)
        );
        assert_eq!(entry.body, Body::default());
        let (entry, _) = split_entry(b"from s@x\nto a@x\nbody 8bitmime\nsmtputf8\n\nb").unwrap();
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
}

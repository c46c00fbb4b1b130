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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its id (also its file names).
    pub id: String,
    /// The reverse path; empty for the null sender.
    pub mail_from: String,
    /// Recipients still to deliver.
    pub recipients: Vec<String>,
}

/// A server's outbound queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    fsync: bool,
    seq: AtomicU64,
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
                seq: AtomicU64::new(0),
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

    /// Writes a message and its envelope; returns the new entry's id.
    pub fn enqueue(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> io::Result<String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        let id = format!(
            "{nanos:020}.{}.{}",
            std::process::id(),
            self.inner.seq.fetch_add(1, Ordering::Relaxed)
        );
        self.write_entry(&id, mail_from, recipients, message)?;
        self.index().insert(
            id.clone(),
            QueuedMessage {
                id: id.clone(),
                mail_from: mail_from.to_string(),
                recipients: recipients.to_vec(),
            },
        );
        self.inner.changes.send_modify(|n| *n += 1);
        Ok(id)
    }

    fn write_entry(
        &self,
        id: &str,
        mail_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> io::Result<()> {
        let mut entry = format!("from {mail_from}\n");
        for r in recipients {
            entry.push_str(&format!("to {r}\n"));
        }
        entry.push('\n');
        let mut bytes = entry.into_bytes();
        bytes.extend_from_slice(message);
        self.write_atomically(&format!("{id}.qmsg"), &bytes)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.qmsg"))
    }

    fn write_atomically(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.inner.dir.join(format!(".{name}.tmp"));
        let mut file = match fs::File::create(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.inner.dir)?;
                fs::File::create(&tmp)?
            }
            other => other?,
        };
        file.write_all(bytes)?;
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
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".qmsg")) else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            let bytes = fs::read(self.path(id))?;
            let (mail_from, recipients, _) = split_entry(&bytes);
            out.push(QueuedMessage {
                id: id.to_string(),
                mail_from,
                recipients,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The message bytes of an entry.
    pub fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        let mut bytes = fs::read(self.path(id))?;
        let (_, _, body_at) = split_entry(&bytes);
        bytes.drain(..body_at);
        Ok(bytes)
    }

    /// Narrows an entry to the recipients still pending, or removes it when none are.
    pub fn update(&self, id: &str, mail_from: &str, pending: &[String]) -> io::Result<()> {
        let result = if pending.is_empty() {
            self.remove(id)
        } else {
            let written = self
                .message(id)
                .and_then(|m| self.write_entry(id, mail_from, pending, &m));
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

/// Splits an entry file into sender, recipients and where the message starts.
fn split_entry(bytes: &[u8]) -> (String, Vec<String>, usize) {
    let mut mail_from = String::new();
    let mut recipients = Vec::new();
    let mut offset = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        offset += line.len();
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        if let Some(f) = text.strip_prefix("from ") {
            mail_from = f.to_string();
        } else if let Some(t) = text.strip_prefix("to ") {
            recipients.push(t.to_string());
        }
    }
    (mail_from, recipients, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopening_and_shrink_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path(), false).unwrap();
        let rcpts = vec!["a@x.test".to_string(), "b@y.test".to_string()];
        let id = queue.enqueue("s@z.test", &rcpts, b"msg\r\n").unwrap();
        let reopened = Queue::open(dir.path(), false).unwrap();
        let entries = reopened.entries();
        assert_eq!(
            entries,
            vec![QueuedMessage {
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
}

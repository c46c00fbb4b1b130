//! The outbound queue on disk: a message accepted for remote recipients is
//! written here before its `250` is sent, so a crash after the `250` loses nothing.
//!
//! Each entry is two files named by its id: `<id>.eml` (the message with this
//! hop's `Received:`) and `<id>.env` (the envelope: `from <addr>` then one
//! `to <addr>` a line). The envelope is renamed into place last, so an entry
//! whose `.env` exists is complete.

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
    wake: tokio::sync::Notify,
}

impl Queue {
    /// Opens the queue directory (created with the first entry).
    pub fn open(dir: impl Into<PathBuf>, fsync: bool) -> io::Result<Queue> {
        let dir = dir.into();
        Ok(Queue {
            inner: Arc::new(Inner {
                dir,
                fsync,
                seq: AtomicU64::new(0),
                wake: tokio::sync::Notify::new(),
            }),
        })
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
        self.write_atomically(&format!("{id}.eml"), message)?;
        self.write_envelope(&id, mail_from, recipients)?;
        self.inner.wake.notify_one();
        Ok(id)
    }

    fn write_envelope(&self, id: &str, mail_from: &str, recipients: &[String]) -> io::Result<()> {
        let mut env = format!("from {mail_from}\n");
        for r in recipients {
            env.push_str(&format!("to {r}\n"));
        }
        self.write_atomically(&format!("{id}.env"), env.as_bytes())
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

    /// Every complete entry, oldest first (what a restart resumes).
    pub fn entries(&self) -> io::Result<Vec<QueuedMessage>> {
        let mut out = Vec::new();
        let listing = match fs::read_dir(&self.inner.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in listing {
            let name = entry?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".env")) else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            if let Some(parsed) = self.read_envelope(id)? {
                out.push(parsed);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn read_envelope(&self, id: &str) -> io::Result<Option<QueuedMessage>> {
        let text = match fs::read_to_string(self.inner.dir.join(format!("{id}.env"))) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut mail_from = String::new();
        let mut recipients = Vec::new();
        for line in text.lines() {
            if let Some(f) = line.strip_prefix("from ") {
                mail_from = f.to_string();
            } else if let Some(t) = line.strip_prefix("to ") {
                recipients.push(t.to_string());
            }
        }
        Ok(Some(QueuedMessage {
            id: id.to_string(),
            mail_from,
            recipients,
        }))
    }

    /// The message bytes of an entry.
    pub fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        fs::read(self.inner.dir.join(format!("{id}.eml")))
    }

    /// Narrows an entry to the recipients still pending, or removes it when none are.
    pub fn update(&self, id: &str, mail_from: &str, pending: &[String]) -> io::Result<()> {
        if pending.is_empty() {
            self.remove(id)
        } else {
            self.write_envelope(id, mail_from, pending)
        }
    }

    /// Removes an entry (envelope first, so a crash in between leaves no half entry).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        for ext in ["env", "eml"] {
            match fs::remove_file(self.inner.dir.join(format!("{id}.{ext}"))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Resolves when something was enqueued since the last wait.
    pub async fn wait_for_work(&self) {
        self.inner.wake.notified().await
    }

    /// Whether the queue holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries().map(|e| e.is_empty()).unwrap_or(true)
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
        let id = queue.enqueue("s@z.test", &rcpts, b"msg\r\n").unwrap();
        let reopened = Queue::open(dir.path(), false).unwrap();
        let entries = reopened.entries().unwrap();
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
        assert_eq!(reopened.entries().unwrap()[0].recipients, vec!["b@y.test"]);
        reopened.update(&id, "s@z.test", &[]).unwrap();
        assert!(reopened.is_empty());
    }
}

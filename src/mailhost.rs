//! One virtual mail server of the network: its configuration, mailboxes,
//! outbound queue and transcript log, shared by its SMTP and POP3 listeners.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::network::ServerConfig;
use crate::relay::Queue;
use crate::smtp::session::Envelope;
use crate::smtp::trace;
use crate::store::Mailstore;
use crate::transcript::TranscriptLog;

/// A running server's state. Cheap to clone.
#[derive(Clone)]
pub struct MailHost {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    dir: PathBuf,
    store: Mailstore,
    queue: Queue,
    smtp_log: TranscriptLog,
    pop3_log: TranscriptLog,
    seq: AtomicU64,
    fsync: bool,
}

impl MailHost {
    /// Opens a server's state under `dir` (`mail/`, `queue/`, `transcripts/`).
    pub fn open(
        config: ServerConfig,
        dir: &Path,
        live_transcripts: bool,
        fsync: bool,
    ) -> std::io::Result<MailHost> {
        let store = Mailstore::open(dir.join("mail"), fsync);
        let queue = Queue::open(dir.join("queue"), fsync)?;
        let smtp_log = TranscriptLog::open(
            &config.name,
            Some(&dir.join("transcripts/smtp.log")),
            live_transcripts,
        );
        let pop3_log = TranscriptLog::open(
            &config.name,
            Some(&dir.join("transcripts/pop3.log")),
            live_transcripts,
        );
        Ok(MailHost {
            inner: Arc::new(Inner {
                config,
                dir: dir.to_path_buf(),
                store,
                queue,
                smtp_log,
                pop3_log,
                seq: AtomicU64::new(0),
                fsync,
            }),
        })
    }

    /// Whether deliveries are flushed to the disk before they are acknowledged.
    pub fn fsync(&self) -> bool {
        self.inner.fsync
    }

    /// Its configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Its mailboxes.
    pub fn store(&self) -> &Mailstore {
        &self.inner.store
    }

    /// Its outbound queue.
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// SMTP session transcripts.
    pub fn smtp_log(&self) -> &TranscriptLog {
        &self.inner.smtp_log
    }

    /// POP3 session transcripts.
    pub fn pop3_log(&self) -> &TranscriptLog {
        &self.inner.pop3_log
    }

    /// Stores a message accepted by SMTP: into each local recipient's mailbox
    /// with `Return-Path:` and `Received:`, and into the outbound queue for the
    /// remote ones. Returns an id once everything is on disk. Blocking I/O:
    /// call from a blocking thread.
    pub fn accept(&self, envelope: &Envelope, client_ip: &str) -> Result<String, String> {
        let date = crate::date::rfc5322(SystemTime::now());
        let me = &self.inner.config.name;
        let id = format!(
            "{:X}{:05X}",
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            self.inner.seq.fetch_add(1, Ordering::Relaxed) & 0xFFFFF
        );
        for rcpt in &envelope.local {
            let received = trace::received(envelope, me, client_ip, &id, Some(rcpt), &date);
            let stored = trace::for_mailbox(envelope, &received);
            self.inner
                .store
                .deliver(rcpt, &stored)
                .map_err(|e| e.to_string())?;
        }
        if !envelope.remote.is_empty() {
            let received = trace::received(envelope, me, client_ip, &id, None, &date);
            self.inner
                .queue
                .enqueue(
                    &envelope.mail_from,
                    &envelope.remote,
                    &trace::for_relay(envelope, &received),
                )
                .map_err(|e| format!("queue: {e}"))?;
        }
        Ok(id)
    }
}

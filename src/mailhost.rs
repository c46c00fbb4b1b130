//! One virtual mail server of the network: its configuration, mailboxes,
//! outbound queue and transcript log, shared by its SMTP and POP3 listeners.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::network::ServerConfig;
use crate::service::Service;
use crate::store::Mailstore;
use crate::store::Queue;
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
    /// One transcript log per service, at [`Service::index`].
    logs: [TranscriptLog; Service::ALL.len()],
    fsync: bool,
    /// Its TLS identity (a certificate from the network CA), when TLS is on.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// What its relay trusts when the next server offers STARTTLS.
    tls_client: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Where it tells what happens to mail and sessions.
    events: crate::events::Events,
    /// Where its sessions are recorded, when anyone looks (`up --web`, `--pcap`).
    recorder: Option<crate::capture::Recorder>,
    /// The network's scripted faults.
    faults: crate::fault::Faults,
    /// The relay's retry state per (queue id, destination domain), for the
    /// web API's queue view; the relay worker keeps it current.
    retries: std::sync::Mutex<std::collections::HashMap<(String, String), RetryState>>,
    /// Bumped whenever `retries` changes, so a waiter need not poll.
    retried: tokio::sync::watch::Sender<u64>,
}

/// Where one destination domain's share of a queued message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryState {
    /// Attempts so far.
    pub attempts: u32,
    /// When the next one is due.
    pub next: std::time::SystemTime,
    /// Why the last one failed.
    pub last_error: String,
}

impl MailHost {
    /// Opens a server's state under `dir` (`mail/`, `queue/`, `transcripts/`).
    pub fn open(
        config: ServerConfig,
        dir: &Path,
        live_transcripts: bool,
        fsync: bool,
    ) -> std::io::Result<MailHost> {
        let store = Mailstore::open(dir.join("mail"), fsync)?;
        // Whatever a killed run left half-written was never acknowledged.
        crate::store::clean_spool(&dir.join("spool"))?;
        store.clean_tmp()?;
        store.recover_deletions()?;
        let queue = Queue::open(dir.join("queue"), fsync)?;
        let logs = Service::ALL.map(|service| {
            let file = dir.join(format!("transcripts/{}.log", service.name()));
            TranscriptLog::open(&config.name, Some(&file), live_transcripts)
        });
        Ok(MailHost {
            inner: Arc::new(Inner {
                config,
                dir: dir.to_path_buf(),
                store,
                queue,
                logs,
                fsync,
                tls: None,
                tls_client: None,
                events: crate::events::Events::new(),
                recorder: None,
                faults: crate::fault::Faults::default(),
                retries: Default::default(),
                retried: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// The same server with a TLS identity, and the roots its relay
    /// trusts; call before the host is shared.
    pub fn with_tls(
        mut self,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
        client: Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> MailHost {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.tls = Some(tls);
                inner.tls_client = Some(client);
            }
            None => tracing::error!("TLS given to a server already running; it stays without"),
        }
        self
    }

    /// The same server telling `events` what happens, and recording its
    /// sessions into `recorder` when given; call before the host is shared.
    pub fn with_observers(
        mut self,
        events: crate::events::Events,
        recorder: Option<crate::capture::Recorder>,
    ) -> MailHost {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.events = events;
                inner.recorder = recorder;
            }
            None => tracing::error!("observers given to a server already running; ignored"),
        }
        self
    }

    /// The same server asking `faults` at each protocol step; call before
    /// the host is shared.
    pub fn with_faults(mut self, faults: crate::fault::Faults) -> MailHost {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.faults = faults,
            None => tracing::error!("faults given to a server already running; ignored"),
        }
        self
    }

    /// The network's scripted faults.
    pub fn faults(&self) -> &crate::fault::Faults {
        &self.inner.faults
    }

    /// Where it tells what happens.
    pub fn events(&self) -> &crate::events::Events {
        &self.inner.events
    }

    /// Records where a share of a queued message stands (`None`: it left the queue).
    pub fn set_retry(&self, id: &str, domain: &str, state: Option<RetryState>) {
        let mut retries = self.inner.retries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (id.to_string(), domain.to_string());
        match state {
            Some(state) => {
                retries.insert(key, state);
            }
            None => {
                retries.remove(&key);
            }
        }
        drop(retries);
        self.inner.retried.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether every share of every queued message has been tried at least
    /// `attempts` times (an empty queue qualifies: its mail has left).
    pub fn tried(&self, attempts: u32) -> bool {
        self.queue().entries().iter().all(|entry| {
            entry.recipients.iter().all(|rcpt| {
                // As `smtp::address::domain_of` keys the relay's records
                // (not called: the store side stays below the protocols).
                let domain = rcpt
                    .rsplit_once('@')
                    .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
                    .unwrap_or_default();
                self.retry(&entry.id, &domain)
                    .is_some_and(|r| r.attempts >= attempts)
            })
        })
    }

    /// Waits until [`MailHost::tried`] holds or `deadline` passes; returns
    /// whether it holds. Woken by the queue and by the relay's retry
    /// records, never by a timer.
    pub async fn wait_until_tried(&self, attempts: u32, deadline: std::time::Duration) -> bool {
        let mut queued = self.queue().subscribe();
        let mut retried = self.inner.retried.subscribe();
        let wait = async {
            loop {
                queued.borrow_and_update();
                retried.borrow_and_update();
                if self.tried(attempts) {
                    return;
                }
                tokio::select! {
                    changed = queued.changed() => if changed.is_err() { return },
                    changed = retried.changed() => if changed.is_err() { return },
                }
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok() && self.tried(attempts)
    }

    /// Where the share of queued message `id` for `domain` stands, if it was tried.
    pub fn retry(&self, id: &str, domain: &str) -> Option<RetryState> {
        let retries = self.inner.retries.lock().unwrap_or_else(|e| e.into_inner());
        retries.get(&(id.to_string(), domain.to_string())).cloned()
    }

    /// Where its sessions are recorded, if anywhere.
    pub fn recorder(&self) -> Option<&crate::capture::Recorder> {
        self.inner.recorder.as_ref()
    }

    /// What its relay trusts for STARTTLS, if TLS is on.
    pub fn tls_client(&self) -> Option<&Arc<tokio_rustls::rustls::ClientConfig>> {
        self.inner.tls_client.as_ref()
    }

    /// Its TLS identity, if it has one.
    pub fn tls(&self) -> Option<&Arc<tokio_rustls::rustls::ServerConfig>> {
        self.inner.tls.as_ref()
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

    /// Where messages being received are spooled.
    pub fn spool(&self) -> std::io::Result<crate::store::Spool> {
        crate::store::Spool::create(&self.inner.dir.join("spool"))
    }

    /// Its outbound queue.
    pub fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    /// The session transcripts of `service`.
    pub fn log(&self, service: Service) -> &TranscriptLog {
        &self.inner.logs[service.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn state(attempts: u32) -> Option<RetryState> {
        Some(RetryState {
            attempts,
            next: SystemTime::now(),
            last_error: "451 later".into(),
        })
    }

    #[tokio::test]
    async fn a_wait_on_attempts_wakes_when_the_relay_records_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::network::Network::default_network().servers[0].clone();
        let host = MailHost::open(config, dir.path(), false, false).unwrap();
        assert!(host.tried(1), "an empty queue has nothing left to try");
        let id = crate::id::QueueId::next();
        let rcpts = vec!["a@x.test".to_string(), "b@y.test".to_string()];
        host.queue()
            .enqueue(&id, "s@z.test", &rcpts, b"m\r\n")
            .unwrap();
        let id = id.to_string();
        assert!(!host.tried(1));
        host.set_retry(&id, "x.test", state(1));
        assert!(!host.tried(1), "y.test's share was not tried yet");

        let (waiter, recorder) = (host.clone(), host.clone());
        let wait =
            tokio::spawn(async move { waiter.wait_until_tried(2, Duration::from_secs(10)).await });
        recorder.set_retry(&id, "y.test", state(2));
        recorder.set_retry(&id, "x.test", state(2));
        assert!(wait.await.unwrap());
        assert!(!host.tried(3));
        assert!(!host.wait_until_tried(3, Duration::from_millis(50)).await);
    }
}

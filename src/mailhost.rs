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

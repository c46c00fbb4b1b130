//! Storing what the SMTP core accepted: into each local recipient's
//! mailbox with `Return-Path:` and `Received:`, and into the outbound queue
//! for the remote ones. The message itself is in the session's [`Spool`]:
//! in memory when small, written behind the trace fields in one write;
//! otherwise on disk, copied file to file behind them.

use super::envelope::{DeliveryError, Envelope};
use super::trace;
use crate::id::QueueId;
use crate::mailhost::MailHost;
use crate::store::Spool;

/// Messages up to this size are stored on the session's own thread.
const INLINE_DELIVERY: u64 = 256 * 1024;

/// A message on disk: its id, and its queue entry (for remote recipients)
/// held back from the relay until the server has announced it.
#[derive(Debug)]
pub struct Stored {
    /// The id given in `250 … queued as`.
    pub id: QueueId,
    /// Hands the queue entry to the relay when released or dropped.
    pub queued: Option<crate::store::Held>,
}

/// Stores `envelope`, whose message is in `spool`, received from
/// `client_ip`, and returns its id once everything is on disk. The spool
/// file is removed either way.
pub async fn deliver(
    host: &MailHost,
    envelope: &Envelope,
    mut spool: Spool,
    client_ip: &str,
) -> Result<Stored, DeliveryError> {
    if envelope.size <= INLINE_DELIVERY && !host.fsync() {
        // A small write to the page cache takes microseconds; a thread
        // hand-off costs more, and many threads creating files in one
        // Maildir contend for its directory lock.
        return store(host, envelope, &mut spool, client_ip);
    }
    // Copied for the thread only here: large or synced messages are few.
    let envelope = envelope.clone();
    let host = host.clone();
    let ip = client_ip.to_string();
    tokio::task::spawn_blocking(move || store(&host, &envelope, &mut spool, &ip))
        .await
        .map_err(DeliveryError::Task)?
}

/// The blocking part of [`deliver`].
pub fn store(
    host: &MailHost,
    envelope: &Envelope,
    spool: &mut Spool,
    client_ip: &str,
) -> Result<Stored, DeliveryError> {
    let size = spool.size();
    let date = crate::date::rfc5322_now();
    let me = &host.config().name;
    let id = QueueId::next();
    for rcpt in &envelope.local {
        let received = trace::received(envelope, me, client_ip, id.as_str(), Some(rcpt), &date);
        let prefix = trace::mailbox_prefix(envelope, &received);
        let store = host.store();
        match spool.in_memory().map_err(DeliveryError::Spool)? {
            Some(body) => store.deliver_prefixed(rcpt, &prefix, body),
            None => {
                let body = spool.file().map_err(DeliveryError::Spool)?;
                store.deliver_parts(rcpt, &prefix, body, size)
            }
        }
        .map_err(DeliveryError::Mailbox)?;
    }
    let mut queued = None;
    if !envelope.remote.is_empty() {
        let received = trace::received(envelope, me, client_ip, id.as_str(), None, &date);
        let held = host
            .queue()
            .enqueue_parts(
                &id,
                crate::store::Outgoing {
                    mail_from: &envelope.mail_from,
                    recipients: &envelope.remote,
                    body: envelope.body,
                },
                received.as_bytes(),
                spool.file().map_err(DeliveryError::Spool)?,
                size,
            )
            .map_err(DeliveryError::Queue)?;
        queued = Some(held);
    }
    Ok(Stored { id, queued })
}

//! Storing what the SMTP core accepted: into each local recipient's
//! mailbox with `Return-Path:` and `Received:`, and into the outbound queue
//! for the remote ones.

use std::time::SystemTime;

use super::envelope::{DeliveryError, Envelope};
use super::trace;
use crate::id::QueueId;
use crate::mailhost::MailHost;

/// Messages up to this size are stored on the session's own thread.
const INLINE_DELIVERY: usize = 256 * 1024;

/// Stores `envelope`, received from `client_ip`, and returns its id once
/// everything is on disk.
pub async fn deliver(
    host: &MailHost,
    envelope: Envelope,
    client_ip: &str,
) -> Result<QueueId, DeliveryError> {
    if envelope.message.len() <= INLINE_DELIVERY && !host.fsync() {
        // A small write to the page cache takes microseconds; a thread
        // hand-off costs more, and many threads creating files in one
        // Maildir contend for its directory lock.
        return store(host, &envelope, client_ip);
    }
    let host = host.clone();
    let ip = client_ip.to_string();
    tokio::task::spawn_blocking(move || store(&host, &envelope, &ip))
        .await
        .map_err(DeliveryError::Task)?
}

/// The blocking part of [`deliver`].
pub fn store(
    host: &MailHost,
    envelope: &Envelope,
    client_ip: &str,
) -> Result<QueueId, DeliveryError> {
    let date = crate::date::rfc5322(SystemTime::now());
    let me = &host.config().name;
    let id = QueueId::next();
    for rcpt in &envelope.local {
        let received = trace::received(envelope, me, client_ip, id.as_str(), Some(rcpt), &date);
        let stored = trace::for_mailbox(envelope, &received);
        host.store()
            .deliver(rcpt, &stored)
            .map_err(DeliveryError::Mailbox)?;
    }
    if !envelope.remote.is_empty() {
        let received = trace::received(envelope, me, client_ip, id.as_str(), None, &date);
        host.queue()
            .enqueue(
                &id,
                &envelope.mail_from,
                &envelope.remote,
                &trace::for_relay(envelope, &received),
            )
            .map_err(DeliveryError::Queue)?;
    }
    Ok(id)
}

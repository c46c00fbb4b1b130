//! Trace header fields a server adds (RFC 5321 §4.4): `Received:` at every
//! hop and `Return-Path:` at final delivery.

use super::envelope::Envelope;

/// The `Received:` field this server adds, folded over three lines.
pub fn received(
    envelope: &Envelope,
    by: &str,
    client_ip: &str,
    id: &str,
    for_rcpt: Option<&str>,
    date: &str,
) -> String {
    let with = match (envelope.esmtp, envelope.authenticated.is_some()) {
        (true, true) => "ESMTPA",
        (true, false) => "ESMTP",
        (false, _) => "SMTP",
    };
    let by_line = format!("\tby {by} (mailnet) with {with} id {id}");
    let tail = match for_rcpt {
        Some(rcpt) => format!("{by_line}\r\n\tfor <{rcpt}>; {date}"),
        None => format!("{by_line}; {date}"),
    };
    format!(
        "Received: from {} ([{client_ip}])\r\n{tail}\r\n",
        envelope.helo
    )
}

/// The message as stored in a local mailbox: `Return-Path:`, this hop's
/// `Received:`, then the message exactly as received.
pub fn for_mailbox(envelope: &Envelope, received: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope.message.len() + 256);
    out.extend_from_slice(format!("Return-Path: <{}>\r\n", envelope.mail_from).as_bytes());
    out.extend_from_slice(received.as_bytes());
    out.extend_from_slice(&envelope.message);
    out
}

/// The message as relayed on: this hop's `Received:` then the message.
pub fn for_relay(envelope: &Envelope, received: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope.message.len() + 256);
    out.extend_from_slice(received.as_bytes());
    out.extend_from_slice(&envelope.message);
    out
}

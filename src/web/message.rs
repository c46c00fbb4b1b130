//! Stored messages as the API shows them: the list row, the full view
//! (headers, text, HTML, attachments) and the path across servers.

use std::time::SystemTime;

use mail_parser::{Address, Message, MessageParser, MimeHeaders};
use serde::Serialize;

use crate::events::{Event, EventKind, Events};

/// A row of a mailbox's list.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The message's id in the API: `<mailbox>~<uid>`.
    pub id: String,
    /// The server holding it.
    pub server: String,
    /// The mailbox.
    pub mailbox: String,
    /// `From:`.
    pub from: String,
    /// `To:` (and `Cc:`) addresses.
    pub to: Vec<String>,
    /// `Subject:`.
    pub subject: String,
    /// Size in octets.
    pub size: u64,
    /// `Date:` as written, or when it was stored.
    pub date: String,
}

/// An attachment's description.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// Its number, for `/attachments/{index}`.
    pub index: usize,
    /// Its file name, if it has one.
    pub filename: Option<String>,
    /// Its content type.
    pub content_type: String,
    /// Its decoded size.
    pub size: usize,
}

/// One hop of a message's path.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    /// The server.
    pub server: String,
    /// `received`, `queued`, `relayed`, `delivered`, `bounced`.
    pub event: String,
    /// When (RFC 3339).
    pub time: String,
    /// The reply that decided it, if any.
    pub reply: Option<String>,
    /// The recipient concerned, if any.
    pub recipient: Option<String>,
    /// Where it went (`relayed`).
    pub to: Option<String>,
    /// Anything else.
    pub detail: Option<String>,
    /// The message's queue id at that server.
    pub message: Option<String>,
}

/// A message in full.
#[derive(Debug, Clone, Serialize)]
pub struct Full {
    /// The list row's fields.
    #[serde(flatten)]
    pub summary: Summary,
    /// Every header field in order, `[name, value]`.
    pub headers: Vec<(String, String)>,
    /// The first text part.
    pub text: Option<String>,
    /// The first HTML part.
    pub html: Option<String>,
    /// The attachments.
    pub attachments: Vec<Attachment>,
    /// Its hops across servers, oldest first.
    pub path: Vec<Hop>,
}

fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address().map(str::to_string))
            .collect()
    })
    .unwrap_or_default()
}

/// The list row of a stored message.
pub fn summary(id: String, server: &str, mailbox: &str, raw: &[u8], stored: SystemTime) -> Summary {
    let parsed = MessageParser::default().parse_headers(raw);
    let (from, to, subject, date) = match &parsed {
        Some(m) => {
            let mut to = addresses(m.to());
            to.extend(addresses(m.cc()));
            (
                addresses(m.from()).join(", "),
                to,
                m.subject().unwrap_or("").to_string(),
                m.date().map(|d| d.to_rfc822()),
            )
        }
        None => (String::new(), Vec::new(), String::new(), None),
    };
    Summary {
        id,
        server: server.to_string(),
        mailbox: mailbox.to_string(),
        from,
        to,
        subject,
        size: raw.len() as u64,
        date: date.unwrap_or_else(|| crate::date::rfc5322(stored)),
    }
}

/// The queue ids a message's `Received:` fields name, newest hop first:
/// mailnet writes `with ESMTP id <queue id>` at each server.
pub fn queue_ids(message: &Message<'_>) -> Vec<String> {
    message
        .header_values("Received")
        .filter_map(|v| v.as_received())
        .filter_map(|r| r.id().map(str::to_string))
        .collect()
}

/// A message in full, its path drawn from the events its queue ids name.
pub fn full(summary: Summary, raw: &[u8], events: &Events) -> Full {
    let parsed = MessageParser::default().parse(raw);
    let Some(message) = parsed else {
        return Full {
            summary,
            headers: Vec::new(),
            text: Some(String::from_utf8_lossy(raw).into_owned()),
            html: None,
            attachments: Vec::new(),
            path: Vec::new(),
        };
    };
    let headers = message
        .headers_raw()
        .map(|(name, value)| (name.to_string(), value.trim().to_string()))
        .collect();
    let text = message.body_text(0).map(|t| t.into_owned());
    // The first HTML part that is not an attachment, however the parts are
    // nested (alternative, related or mixed).
    let html = message
        .parts
        .iter()
        .filter(|p| p.is_text_html())
        .find(|p| {
            p.content_disposition()
                .is_none_or(|d| !d.ctype().eq_ignore_ascii_case("attachment"))
        })
        .and_then(|p| p.text_contents().map(str::to_string));
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(index, part)| Attachment {
            index,
            filename: part.attachment_name().map(str::to_string),
            content_type: content_type(part),
            size: part.contents().len(),
        })
        .collect();
    let ids = queue_ids(&message);
    let path = path(&ids, &summary.mailbox, events);
    Full {
        summary,
        headers,
        text,
        html,
        attachments,
        path,
    }
}

/// A part's `type/subtype`, `application/octet-stream` when it gives none.
fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    part.content_type()
        .map(|c| match c.subtype() {
            Some(sub) => format!("{}/{sub}", c.ctype()),
            None => c.ctype().to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// The attachment numbered `index`: its content type, file name and bytes.
pub fn attachment(raw: &[u8], index: usize) -> Option<(String, Option<String>, Vec<u8>)> {
    let message = MessageParser::default().parse(raw)?;
    let part = message.attachments().nth(index)?;
    Some((
        content_type(part),
        part.attachment_name().map(str::to_string),
        part.contents().to_vec(),
    ))
}

/// The hops of the queue ids `ids` (newest hop first, as `Received:` fields
/// are written), oldest first: each server's
/// `received`, `queued`, `relayed` or `bounced`, and the `delivered` into
/// `mailbox`. Events about other recipients of the same message are left out.
pub fn path(ids: &[String], mailbox: &str, events: &Events) -> Vec<Hop> {
    let mut kept = events.history(|e| {
        e.message
            .as_deref()
            .is_some_and(|m| ids.iter().any(|id| id == m))
            && !matches!(e.kind, EventKind::SessionOpened | EventKind::SessionClosed)
    });
    // Per recipient events (queued, relayed, delivered) are the ones about
    // this mailbox, or about a recipient of its domain on the way there.
    let domain = mailbox
        .rsplit('@')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    kept.retain(|e| match &e.recipient {
        None => true,
        Some(r) => {
            r.eq_ignore_ascii_case(mailbox)
                || r.to_ascii_lowercase().ends_with(&format!("@{domain}"))
        }
    });
    // Hop by hop (the first server's events, then the next one's: a relay's
    // `relayed` is told after the next server already stored the message),
    // and in order within each.
    let rank = |e: &Event| {
        let id = e.message.as_deref().unwrap_or("");
        ids.iter().rev().position(|i| i == id).unwrap_or(usize::MAX)
    };
    kept.sort_by_key(|e| (rank(e), e.seq));
    kept.into_iter().map(hop).collect()
}

fn hop(e: Event) -> Hop {
    Hop {
        server: e.server.to_string(),
        event: e.kind.name().to_string(),
        time: crate::date::rfc3339(e.time),
        reply: e.reply,
        recipient: e.recipient.as_deref().map(str::to_string),
        to: e.to,
        detail: e.detail,
        message: e.message.as_deref().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"Received: from mail.sustech.edu.cn ([127.0.0.1]) by gmail.com (mailnet) with ESMTP id Q2 for <usr1@gmail.com>; Mon, 23 Nov 2026 10:00:01 +0000\r\nReceived: from client ([127.0.0.1]) by exmail.qq.com (mailnet) with ESMTP id Q1; Mon, 23 Nov 2026 10:00:00 +0000\r\nFrom: usr1@mail.sustech.edu.cn\r\nTo: usr1@gmail.com\r\nSubject: hello\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nthe body\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>the <b>body</b></p><script>alert(1)</script>\r\n--b\r\nContent-Type: image/png; name=x.png\r\nContent-Disposition: attachment; filename=x.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K\r\n--b--\r\n";

    #[test]
    fn a_message_shows_its_parts_and_its_path_across_servers() {
        let events = Events::new();
        events.emit(Event::new(EventKind::Received, "exmail.qq.com").message("Q1"));
        events.emit(
            Event::new(EventKind::Queued, "exmail.qq.com")
                .message("Q1")
                .recipient("usr1@gmail.com"),
        );
        events.emit(
            Event::new(EventKind::Queued, "exmail.qq.com")
                .message("Q1")
                .recipient("x@other.test"),
        );
        events.emit(
            Event::new(EventKind::Relayed, "exmail.qq.com")
                .message("Q1")
                .recipient("usr1@gmail.com")
                .to("gmail-smtp-in.l.google.com [127.0.0.1]:2125")
                .reply("250 2.0.0 Ok: queued as Q2"),
        );
        events.emit(Event::new(EventKind::Received, "gmail.com").message("Q2"));
        events.emit(
            Event::new(EventKind::Delivered, "gmail.com")
                .message("Q2")
                .recipient("usr1@gmail.com"),
        );
        events.emit(
            Event::new(EventKind::Delivered, "gmail.com")
                .message("Q9")
                .recipient("usr1@gmail.com"),
        );
        let summary = summary(
            "usr1@gmail.com~u1".into(),
            "gmail.com",
            "usr1@gmail.com",
            RAW,
            SystemTime::now(),
        );
        assert_eq!(summary.subject, "hello");
        assert_eq!(summary.to, vec!["usr1@gmail.com".to_string()]);
        let full = full(summary, RAW, &events);
        assert_eq!(full.text.as_deref().map(str::trim), Some("the body"));
        assert!(full.html.as_deref().unwrap().contains("<b>body</b>"));
        assert_eq!(full.attachments.len(), 1);
        assert_eq!(full.attachments[0].filename.as_deref(), Some("x.png"));
        assert_eq!(full.attachments[0].content_type, "image/png");
        let hops: Vec<(&str, &str)> = full
            .path
            .iter()
            .map(|h| (h.server.as_str(), h.event.as_str()))
            .collect();
        assert_eq!(
            hops,
            [
                ("exmail.qq.com", "received"),
                ("exmail.qq.com", "queued"),
                ("exmail.qq.com", "relayed"),
                ("gmail.com", "received"),
                ("gmail.com", "delivered"),
            ]
        );
        assert_eq!(
            full.path[2].reply.as_deref(),
            Some("250 2.0.0 Ok: queued as Q2")
        );
        let (ctype, name, bytes) = attachment(RAW, 0).unwrap();
        assert_eq!(
            (ctype.as_str(), name.as_deref()),
            ("image/png", Some("x.png"))
        );
        assert_eq!(&bytes[..4], b"\x89PNG");
        assert!(attachment(RAW, 1).is_none());
    }
}

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
    // RFC 3848 and RFC 6531's protocol words: A for authenticated, UTF8 for
    // an SMTPUTF8 transaction.
    // S for a TLS session (RFC 3848).
    let base = match (envelope.esmtp, envelope.body.smtputf8) {
        (false, _) => "SMTP",
        (true, false) => "ESMTP",
        (true, true) => "UTF8SMTP",
    };
    let tls = if envelope.tls.is_some() { "S" } else { "" };
    let auth = if envelope.authenticated.is_some() && envelope.esmtp {
        "A"
    } else {
        ""
    };
    // Built by pushing pieces: written for every message and recipient,
    // where five `format!`s were 5% of a reused session's instructions.
    let helo = printable(&envelope.helo);
    let mut out = String::with_capacity(160 + helo.len() + by.len() + date.len());
    for piece in ["Received: from ", &helo, " ([", client_ip, "])\r\n"] {
        out.push_str(piece);
    }
    if let Some(t) = &envelope.tls {
        for piece in ["\t(using ", &t.version, " with cipher ", &t.cipher, ")\r\n"] {
            out.push_str(piece);
        }
    }
    for piece in ["\tby ", by, " (mailnet) with ", base, tls, auth, " id ", id] {
        out.push_str(piece);
    }
    if let Some(rcpt) = for_rcpt {
        for piece in ["\r\n\tfor <", rcpt, ">"] {
            out.push_str(piece);
        }
    }
    for piece in ["; ", date, "\r\n"] {
        out.push_str(piece);
    }
    out
}

/// What precedes the message in a local mailbox: `Return-Path:` and this
/// hop's `Received:`.
pub fn mailbox_prefix(envelope: &Envelope, received: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + envelope.mail_from.len() + received.len());
    for piece in ["Return-Path: <", &envelope.mail_from, ">\r\n", received] {
        out.extend_from_slice(piece.as_bytes());
    }
    out
}

/// A client-supplied name as it may appear in a header: printable ASCII
/// only, so a HELO with NUL, ESC or a line end cannot forge or break
/// header fields (RFC 5322 field bodies are printable).
fn printable(name: &str) -> String {
    let clean: String = name
        .chars()
        .take(255)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if clean.is_empty() {
        "unknown".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_helo_cannot_break_the_header() {
        let envelope = Envelope {
            helo: "evil\0\x1b[2J\r\nX-Forged: yes".to_string(),
            esmtp: true,
            authenticated: None,
            mail_from: "a@b.c".to_string(),
            body: Default::default(),
            tls: None,
            local: vec![],
            remote: vec![],
            size: 0,
        };
        let field = received(&envelope, "me", "127.0.0.1", "ID", None, "now");
        assert!(field.starts_with("Received: from evil??[2J??X-Forged:?yes ([127.0.0.1])\r\n"));
        assert_eq!(field.matches("\r\n").count(), 2, "{field:?}");
        assert!(!field.contains('\0') && !field.contains('\x1b'));
    }

    #[test]
    fn protocol_words_follow_rfc_3848_and_6531() {
        let mut envelope = Envelope {
            helo: "c".into(),
            esmtp: true,
            authenticated: None,
            mail_from: String::new(),
            body: Default::default(),
            tls: None,
            local: vec![],
            remote: vec![],
            size: 0,
        };
        let with = |e: &Envelope| {
            let field = received(e, "me", "1.2.3.4", "ID", None, "now");
            field
                .split("(mailnet) with ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(with(&envelope), "ESMTP");
        envelope.authenticated = Some("u".into());
        assert_eq!(with(&envelope), "ESMTPA");
        envelope.body.smtputf8 = true;
        assert_eq!(with(&envelope), "UTF8SMTPA");
        envelope.authenticated = None;
        assert_eq!(with(&envelope), "UTF8SMTP");
        envelope.tls = Some(crate::tls::TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        });
        assert_eq!(with(&envelope), "UTF8SMTPS");
        envelope.body.smtputf8 = false;
        envelope.authenticated = Some("u".into());
        assert_eq!(with(&envelope), "ESMTPSA");
        let field = received(&envelope, "me", "1.2.3.4", "ID", None, "now");
        assert!(
            field.contains("\r\n\t(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n"),
            "{field}"
        );
        envelope.tls = None;
        envelope.authenticated = None;
        envelope.esmtp = false;
        assert_eq!(with(&envelope), "SMTP");
    }
}

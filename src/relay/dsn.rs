//! Delivery status notifications (RFC 3464): the bounce a sender gets back.

use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;

/// The most of an original message's header block a bounce quotes: a
/// bounce is built in memory, so it never holds more of the original.
pub const MAX_QUOTED_HEADERS: usize = 256 * 1024;

/// Why one recipient could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The recipient as it was given.
    pub recipient: String,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// The remote server that refused, if one answered.
    pub remote_mta: Option<String>,
    /// The remote server's reply, or what went wrong.
    pub diagnostic: String,
}

/// Builds a `multipart/report; report-type=delivery-status` message from
/// `MAILER-DAEMON@<reporting_mta>` to `sender`: a human-readable part naming
/// each recipient and quoting the reply, the `message/delivery-status` part,
/// and the original message's headers.
pub fn bounce(
    reporting_mta: &str,
    sender: &str,
    failures: &[Failure],
    original: &[u8],
    date: &str,
) -> Result<Vec<u8>, BounceError> {
    let mut text = format!(
        "This is the mail system at host {reporting_mta}.\r\n\r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients. Its headers are attached below.\r\n\r\n"
    );
    for f in failures {
        let via = f
            .remote_mta
            .as_deref()
            .map(|m| format!("host {m} said: "))
            .unwrap_or_default();
        text.push_str(&format!("<{}>: {via}{}\r\n", f.recipient, f.diagnostic));
    }

    // RFC 3464 §2.1: the delivery-status part is 7bit, its fields folded
    // like header fields, so every DSN reader sees each field whole.
    let mut status = format!("Reporting-MTA: dns; {reporting_mta}\r\nArrival-Date: {date}\r\n");
    for f in failures {
        status.push_str(&format!(
            "\r\nFinal-Recipient: {}\r\nAction: failed\r\nStatus: {}\r\n",
            address_type(&f.recipient),
            f.status
        ));
        if let Some(mta) = &f.remote_mta {
            // `host[ip:port]` in the text; the field names the host only.
            let host = mta.split('[').next().unwrap_or(mta);
            status.push_str(&format!("Remote-MTA: dns; {host}\r\n"));
        }
        let kind = if is_smtp_reply(&f.diagnostic) {
            "smtp"
        } else {
            "X-mailnet"
        };
        status.push_str(&folded(&format!(
            "Diagnostic-Code: {kind}; {}",
            seven_bit(&f.diagnostic)
        )));
    }

    let headers_end = header_end(original).min(MAX_QUOTED_HEADERS);
    let report = MimePart::new(
        mail_builder::headers::content_type::ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new("message/delivery-status", status).transfer_encoding("7bit"),
            MimePart::new(
                "text/rfc822-headers",
                String::from_utf8_lossy(&original[..headers_end]).into_owned(),
            ),
        ],
    );
    MessageBuilder::new()
        .from((
            "Mail Delivery System".to_string(),
            format!("MAILER-DAEMON@{reporting_mta}"),
        ))
        .to(sender.to_string())
        .subject("Undelivered Mail Returned to Sender")
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .header("Date", Raw::new(date.to_string()))
        .body(report)
        .write_to_vec()
        .map_err(BounceError)
}

/// A bounce that could not be built; the caller logs it and sends nothing.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the delivery status notification")]
pub struct BounceError(#[source] pub std::io::Error);

/// Whether `text` begins with an SMTP reply code (`550 …`).
fn is_smtp_reply(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' '
}

/// An address field's `type; address` for the 7-bit delivery-status part:
/// `rfc822` for an ASCII address; for a UTF-8 one, RFC 6533 §3's `utf-8`
/// type in its 7-bit form (utf-8-addr-xtext), every character outside
/// QCHAR written `\x{HEX}` (RFC 5137), so the address survives whole.
fn address_type(address: &str) -> String {
    if address.is_ascii() {
        return format!("rfc822; {}", seven_bit(address));
    }
    let mut out = String::from("utf-8; ");
    for c in address.chars() {
        match c {
            '!'..='*' | ','..='<' | '>'..='[' | ']'..='~' => out.push(c),
            _ => out.push_str(&format!("\\x{{{:X}}}", u32::from(c))),
        }
    }
    out
}

/// `text` with anything outside printable ASCII replaced by `?`.
fn seven_bit(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// A field folded before 78 columns at spaces (RFC 5322 §2.2.3), CRLF-ended.
fn folded(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 16);
    let mut column = 0;
    for (i, word) in field.split(' ').enumerate() {
        if i > 0 {
            if column + 1 + word.len() > 76 {
                out.push_str("\r\n ");
                column = 1;
            } else {
                out.push(' ');
                column += 1;
            }
        }
        out.push_str(word);
        column += word.len();
    }
    out.push_str("\r\n");
    out
}

/// Where the header block ends (after its blank line), or the whole message.
fn header_end(message: &[u8]) -> usize {
    let mut offset = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        offset += line.len();
        if line == b"\r\n" || line == b"\n" {
            return offset;
        }
    }
    message.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    #[test]
    fn a_bounce_is_a_delivery_status_report() {
        let failures = vec![Failure {
            recipient: "error@gmail.com".into(),
            status: "5.1.1".into(),
            remote_mta: Some("gmail-smtp-in.l.google.com".into()),
            diagnostic: "550 5.1.1 <error@gmail.com>: User unknown".into(),
        }];
        let original = b"From: usr1@mail.sustech.edu.cn\r\nSubject: hello\r\n\r\nsecret body\r\n";
        let raw = bounce(
            "exmail.qq.com",
            "usr1@mail.sustech.edu.cn",
            &failures,
            original,
            "Mon, 23 Nov 2026 08:00:00 +0000",
        )
        .unwrap();
        let msg = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            msg.from().unwrap().first().unwrap().address(),
            Some("MAILER-DAEMON@exmail.qq.com")
        );
        let ct = msg.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("<error@gmail.com>: host gmail-smtp-in.l.google.com said: 550 5.1.1"));
        assert!(text.contains("Final-Recipient: rfc822; error@gmail.com"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Subject: hello"));
        assert!(!text.contains("secret body"));
        let status_part = &text[text.find("Content-Type: message/delivery-status").unwrap()..];
        assert!(status_part.contains("\r\nContent-Transfer-Encoding: 7bit\r\n\r\nReporting-MTA:"));
        assert!(text.contains("Remote-MTA: dns; gmail-smtp-in.l.google.com\r\n"));
    }

    #[test]
    fn long_diagnostics_are_folded_not_encoded() {
        let long = format!(
            "550 5.1.1 <error@gmail.com>: {} ünïcode",
            "word ".repeat(40)
        );
        let field = folded(&format!("Diagnostic-Code: smtp; {}", seven_bit(&long)));
        assert!(field.lines().all(|l| l.len() <= 78), "{field}");
        assert!(field.is_ascii());
        let unfolded = field.replace("\r\n ", " ");
        assert_eq!(
            unfolded.trim_end(),
            format!("Diagnostic-Code: smtp; {}", seven_bit(&long))
        );
        assert!(!is_smtp_reply("delivery time expired"));
        assert!(is_smtp_reply("421 4.3.2 bye"));
    }
    /// Undoes RFC 6533's utf-8-addr-xtext, as a DSN reader would.
    fn unxtext(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("\\x{") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find('}').unwrap() + at;
            let point = u32::from_str_radix(&rest[at + 3..end], 16).unwrap();
            out.push(char::from_u32(point).unwrap());
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A UTF-8 recipient is reported whole (RFC 6533), not as `?`, in a
    /// delivery-status part that stays 7-bit.
    #[test]
    fn a_utf8_recipient_is_reported_decodably() {
        let recipient = "用户+tag@例子.test";
        let failures = vec![Failure {
            recipient: recipient.into(),
            status: "5.6.7".into(),
            remote_mta: None,
            diagnostic: "the next server does not offer SMTPUTF8".into(),
        }];
        let raw = bounce(
            "exmail.qq.com",
            "usr1@mail.sustech.edu.cn",
            &failures,
            b"Subject: x\r\n\r\n",
            "Mon, 23 Nov 2026 08:00:00 +0000",
        )
        .unwrap();
        let msg = MessageParser::default().parse(&raw).unwrap();
        let status = msg
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("delivery-status"))
            })
            .expect("a delivery-status part");
        assert_eq!(status.content_transfer_encoding(), Some("7bit"));
        let fields = String::from_utf8(status.contents().to_vec()).unwrap();
        assert!(fields.is_ascii(), "{fields}");
        let field = fields
            .lines()
            .find_map(|l| l.strip_prefix("Final-Recipient: "))
            .unwrap();
        assert_eq!(
            field,
            "utf-8; \\x{7528}\\x{6237}\\x{2B}tag@\\x{4F8B}\\x{5B50}.test"
        );
        let (kind, address) = field.split_once("; ").unwrap();
        assert_eq!((kind, unxtext(address).as_str()), ("utf-8", recipient));
        assert!(!fields.contains('?'), "{fields}");
    }

    /// Replaces what changes from run to run (MIME boundaries, the
    /// Message-ID) with fixed names, so bounces can be compared whole.
    fn normalised(raw: &[u8]) -> String {
        let mut text = String::from_utf8(raw.to_vec()).unwrap();
        let boundary = regex_lite::Regex::new(r#"boundary="([^"]+)""#).unwrap();
        let found: Vec<String> = boundary
            .captures_iter(&text)
            .map(|c| c[1].to_string())
            .collect();
        for (i, b) in found.iter().enumerate() {
            text = text.replace(b.as_str(), &format!("BOUNDARY-{}", i + 1));
        }
        let id = regex_lite::Regex::new(r"(?m)^Message-ID: <[^>]*>").unwrap();
        id.replace_all(&text, "Message-ID: <ID>").into_owned()
    }

    /// Compares with the golden file `tests/golden/<name>`; with
    /// `MAILNET_BLESS=1` writes it instead.
    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("MAILNET_BLESS").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (MAILNET_BLESS=1 writes it)", path.display()));
        assert!(
            expected == actual,
            "{} differs (MAILNET_BLESS=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }

    #[test]
    fn bounces_match_their_golden_files() {
        let original = b"Received: from client ([127.0.0.1])\r\n\tby exmail.qq.com (mailnet) with ESMTP id 1\r\nFrom: usr1@mail.sustech.edu.cn\r\nTo: error@gmail.com, usr1@gmail.com\r\nSubject: hello\r\n\r\nsecret body\r\n";
        let date = "Mon, 23 Nov 2026 08:00:00 +0000";
        let unknown = Failure {
            recipient: "error@gmail.com".into(),
            status: "5.1.1".into(),
            remote_mta: Some("gmail.com[127.0.0.1:2525]".into()),
            diagnostic: "550 5.1.1 <error@gmail.com>: Recipient address rejected: User unknown in local recipient table (in reply to RCPT TO command)".into(),
        };
        let expired = Failure {
            recipient: "usr1@gmail.com".into(),
            status: "4.4.7".into(),
            remote_mta: None,
            diagnostic: "delivery time expired after 432000s: connect to gmail.com[127.0.0.1:2525]: Connection refused (os error 111)".into(),
        };
        let one = bounce(
            "exmail.qq.com",
            "usr1@mail.sustech.edu.cn",
            std::slice::from_ref(&unknown),
            original,
            date,
        )
        .unwrap();
        golden("bounce-unknown-user.eml", &normalised(&one));
        let two = bounce(
            "exmail.qq.com",
            "usr1@mail.sustech.edu.cn",
            &[unknown, expired],
            original,
            date,
        )
        .unwrap();
        golden("bounce-unknown-and-expired.eml", &normalised(&two));
    }
}

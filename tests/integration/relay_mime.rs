//! What the relay does with 8-bit and UTF-8 mail for a next server that
//! lacks 8BITMIME or SMTPUTF8: convert the body to 7-bit where RFC 6152
//! allows it, bounce with a report that says why where it does not.

use mail_parser::{MessageParser, MimeHeaders};
use mailnet::service::Service;

use crate::relay::{qq_alone, DEADLINE};
use crate::relay_faults::{offering, peer, until};
use crate::support::Raw;

/// Submits `message` to qq from usr1 to `to`, declaring `parameters` at MAIL.
async fn submit(
    server: &mailnet::orchestrator::RunningServer,
    parameters: &str,
    to: &str,
    message: &str,
) {
    let mut c = Raw::connect(server.addr(Service::Smtp)).await;
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    let mail = c
        .cmd(&format!(
            "MAIL FROM:<usr1@mail.sustech.edu.cn> {parameters}"
        ))
        .await;
    assert!(mail.starts_with("250"), "{mail}");
    let rcpt = c.cmd(&format!("RCPT TO:<{to}>")).await;
    assert!(rcpt.starts_with("250"), "{rcpt}");
    assert!(c.cmd("DATA").await.starts_with("354"));
    let stuffed: String = message
        .split_inclusive('\n')
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect();
    c.send(stuffed.as_bytes()).await;
    assert!(c.cmd(".").await.starts_with("250"));
}

/// The message a scripted peer received: the lines between its `354` and
/// the final dot, unstuffed.
fn received(session: &[String]) -> String {
    let start = session.iter().position(|l| l == "DATA").expect("DATA") + 1;
    let end = start
        + session[start..]
            .iter()
            .position(|l| l == ".")
            .expect("the dot");
    session[start..end]
        .iter()
        .map(|l| format!("{}\r\n", l.strip_prefix('.').unwrap_or(l)))
        .collect()
}

/// The one bounce usr1@mail.sustech.edu.cn gets back, raw.
async fn bounce(server: &mailnet::orchestrator::RunningServer) -> Vec<u8> {
    let store = server.host.store();
    assert!(
        store
            .wait_until(DEADLINE, |s| s.count("usr1@mail.sustech.edu.cn") == 1)
            .await,
        "a bounce came back"
    );
    std::fs::read(&store.messages("usr1@mail.sustech.edu.cn").unwrap()[0].path).unwrap()
}

/// RFC 6152 §3: to a next server without 8BITMIME, an 8-bit body is sent
/// converted (text quoted-printable, the rest base64), not bounced; the
/// receiver decodes exactly what was sent.
#[tokio::test]
async fn an_8_bit_body_is_converted_for_a_server_without_8bitmime() {
    let (qq, gmail_port, _data) = qq_alone(|_| {}).await;
    let mut lines = peer(gmail_port, offering(""));
    let server = qq.server("exmail.qq.com").unwrap().clone();
    let text = "Grüße, 你好, naïve café\r\n.a line with a dot\r\ntrailing blank \r\n";
    let picture: Vec<u8> = (0..=255u8).filter(|b| !b"\r\n".contains(b)).collect();
    let message = format!(
        "From: usr1@mail.sustech.edu.cn\r\nTo: usr1@gmail.com\r\nSubject: converted\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n\
         --xyz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n\
         --xyz\r\nContent-Type: text/plain\r\n\r\nuntouched\r\n\
         --xyz\r\nContent-Type: image/x-test\r\nContent-Disposition: attachment; filename=p.bin\r\n\r\n{}\r\n\
         --xyz--\r\n",
        // Latin-1 octets as they are: the part is 8-bit data, not UTF-8 text.
        picture.iter().map(|&b| b as char).collect::<String>()
    );
    // Raw::send takes text: the attachment goes as the UTF-8 of those
    // characters, which is what the relay must carry octet for octet.
    let sent_picture = picture
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .into_bytes();
    submit(&server, "BODY=8BITMIME", "usr1@gmail.com", &message).await;
    // Not "." (a stuffed line starts with it too): the session's end.
    let session = until(&mut lines, "QUIT").await;
    let mail = session.iter().find(|l| l.starts_with("MAIL FROM")).unwrap();
    assert_eq!(
        mail, "MAIL FROM:<usr1@mail.sustech.edu.cn>",
        "no BODY=8BITMIME to a server without it"
    );
    let got = received(&session);
    assert!(got.is_ascii(), "7-bit clean: {got}");
    assert!(
        got.contains("\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nuntouched\r\n--xyz\r\n"),
        "{got}"
    );
    let parsed = MessageParser::default().parse(got.as_bytes()).unwrap();
    assert_eq!(parsed.body_text(0).unwrap(), text);
    assert_eq!(parsed.body_text(1).unwrap(), "untouched");
    let attachment = parsed.attachment(0).unwrap();
    assert_eq!(attachment.content_transfer_encoding(), Some("base64"));
    assert_eq!(attachment.contents(), &sent_picture[..]);
    assert!(
        server.host.queue().wait_until_empty(DEADLINE).await,
        "delivered"
    );
    assert_eq!(
        server.host.store().count("usr1@mail.sustech.edu.cn"),
        0,
        "no bounce"
    );
    qq.stop().await;
}

/// An 8-bit header cannot be converted (RFC 6152 converts bodies only):
/// the bounce says so, and nothing is sent.
#[tokio::test]
async fn an_8_bit_header_bounces_with_the_reason() {
    let (qq, gmail_port, _data) = qq_alone(|_| {}).await;
    let mut lines = peer(gmail_port, offering(""));
    let server = qq.server("exmail.qq.com").unwrap().clone();
    submit(
        &server,
        "BODY=8BITMIME",
        "usr1@gmail.com",
        "Subject: Grüße\r\n\r\nbody\r\n",
    )
    .await;
    let raw = bounce(&server).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("Status: 5.6.3"), "{text}");
    assert!(text.contains("does not offer 8BITMIME"), "{text}");
    assert!(text.contains("8-bit header"), "{text}");
    let session = until(&mut lines, "<closed>").await;
    assert!(
        !session.iter().any(|l| l.starts_with("MAIL")),
        "{session:?}"
    );
    qq.stop().await;
}

/// The `Final-Recipient` of a bounce's delivery-status part, decoded
/// (RFC 6533 utf-8-addr-xtext); checks the part is 7-bit.
fn final_recipient(raw: &[u8]) -> (String, String) {
    let msg = MessageParser::default().parse(raw).unwrap();
    let part = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("delivery-status"))
        })
        .expect("a message/delivery-status part");
    let fields = String::from_utf8(part.contents().to_vec()).unwrap();
    assert!(fields.is_ascii(), "{fields}");
    let field = fields
        .lines()
        .find_map(|l| l.strip_prefix("Final-Recipient: "))
        .expect("Final-Recipient");
    let (kind, mut rest) = field.split_once("; ").unwrap();
    let mut address = String::new();
    while let Some(at) = rest.find("\\x{") {
        address.push_str(&rest[..at]);
        let end = at + rest[at..].find('}').unwrap();
        let point = u32::from_str_radix(&rest[at + 3..end], 16).unwrap();
        address.push(char::from_u32(point).unwrap());
        rest = &rest[end + 1..];
    }
    address.push_str(rest);
    (kind.to_string(), address)
}

/// RFC 6531 §3.2: a UTF-8 address cannot go to a next server without
/// SMTPUTF8, whatever else it offers, and there is nothing to convert: the
/// sender gets a 5.6.7 bounce naming the recipient whole, and the next
/// server is sent nothing.
#[tokio::test]
async fn a_utf8_address_bounces_at_a_server_without_smtputf8() {
    for offered in ["250-8BITMIME\r\n", ""] {
        let (qq, gmail_port, _data) = qq_alone(|_| {}).await;
        let mut lines = peer(gmail_port, offering(offered));
        let server = qq.server("exmail.qq.com").unwrap().clone();
        // ASCII headers and an 8-bit body: only the address needs SMTPUTF8.
        submit(
            &server,
            "BODY=8BITMIME SMTPUTF8",
            "δοκιμή@gmail.com",
            "Subject: hello\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nünïcödé\r\n",
        )
        .await;
        let raw = bounce(&server).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Status: 5.6.7"), "{offered:?}: {text}");
        assert!(
            text.contains("needs SMTPUTF8") && text.contains("does not offer it"),
            "{text}"
        );
        assert_eq!(
            final_recipient(&raw),
            ("utf-8".to_string(), "δοκιμή@gmail.com".to_string())
        );
        let session = until(&mut lines, "<closed>").await;
        assert!(
            !session.iter().any(|l| l.starts_with("MAIL")),
            "nothing was sent: {session:?}"
        );
        assert!(server.host.queue().wait_until_empty(DEADLINE).await);
        qq.stop().await;
    }
}

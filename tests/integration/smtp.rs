//! The SMTP server over TCP: the seeds' dialogues, pipelining, garbage, limits.

use mailnet::service::Service;
use std::time::Duration;

use mailnet::orchestrator::UpOptions;
use tokio::io::AsyncWriteExt;

use crate::support::{boot, boot_with, send_mail, Raw};

#[tokio::test]
async fn hkust_telnet_dialogue_every_wrong_line_gets_its_code() {
    let net = boot().await;
    let ust = net.server("cse.ust.hk").unwrap();
    let mut c = Raw::connect(ust.addr(Service::Smtp)).await;
    assert!(c.reply().await.starts_with("220 cse.ust.hk"));
    assert!(c
        .cmd("HELO gmail.com")
        .await
        .starts_with("250 2.0.0 cse.ust.hk Hello gmail.com"));
    assert!(c.cmd("MAIL FROM: <bob@gmail.com>").await.starts_with("250"));
    assert!(c
        .cmd("RCPT TO: <zhanhu@cse.ust.jk>")
        .await
        .starts_with("554 5.7.1"));
    assert!(c
        .cmd("RCPT TO: <zhanhu@cse.ust.hk>")
        .await
        .starts_with("550 5.1.1"));
    assert_eq!(c.cmd("d").await, "500 5.5.1 Command unrecognized: \"d\"");
    assert!(c
        .cmd("RCPT TO: <zhuanhu@cs.ust.hk>")
        .await
        .starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Hi,\r\nHow are you?\r\nBest,\r\nZhan\r\n").await;
    assert!(c.cmd(".").await.starts_with("250"));
    assert!(c.cmd("quit").await.starts_with("221"));
    assert_eq!(ust.host.store().count("zhuanhu@cs.ust.hk"), 1);
    net.stop().await;
}

#[tokio::test]
async fn unc_hw3_errors_500_501_503() {
    let net = boot().await;
    let unc = net.server("cs.unc.edu").unwrap();
    let mut c = Raw::connect(unc.addr(Service::Smtp)).await;
    c.reply().await;
    assert!(c
        .cmd("MAIL FROM:<jasleen@cs.unc.edu>")
        .await
        .starts_with("503"));
    assert!(c.cmd("HELO").await.starts_with("501"));
    assert!(c
        .cmd("HELO snapper.cs.unc.edu")
        .await
        .contains("pleased to meet you"));
    assert!(c
        .cmd("RCPT TO:<smithfd@cs.unc.edu>")
        .await
        .starts_with("503"));
    assert!(c.cmd("DATA").await.starts_with("503"));
    assert!(c
        .cmd("MAIL FROM:jasleen@cs.unc.edu")
        .await
        .starts_with("501"));
    assert!(c
        .cmd("MAIL FROM:<jasleen@cs.unc.edu> extra")
        .await
        .starts_with("501"));
    assert!(c
        .cmd("MAIL FROM:<jasleen@cs.unc.edu>")
        .await
        .starts_with("250"));
    assert!(c
        .cmd("MAIL FROM:<jasleen@cs.unc.edu>")
        .await
        .starts_with("503"));
    assert!(c.cmd("DATA").await.starts_with("503"));
    assert!(c.cmd("RCPT TO:smithfd@cs.unc.edu").await.starts_with("501"));
    assert!(c.cmd("FOO BAR").await.starts_with("500"));
    assert!(c
        .cmd("RCPT TO:<smithfd@cs.unc.edu>")
        .await
        .starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"From: <jasleen@cs.unc.edu>\r\nTo: <smithfd@cs.unc.edu>\r\nSubject: Test message\r\n\r\nThis is a test.\r\n").await;
    assert!(c.cmd(".").await.starts_with("250"));
    assert!(c.cmd("QUIT").await.starts_with("221 2.0.0 cs.unc.edu"));
    net.stop().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    let mut c = Raw::connect(gmail.addr(Service::Smtp)).await;
    c.reply().await;
    c.send(b"EHLO x\r\nMAIL FROM:<usr1@gmail.com>\r\nRCPT TO:<bob@gmail.com>\r\nRCPT TO:<nobody@gmail.com>\r\nDATA\r\n").await;
    assert!(c.reply().await.starts_with("250-gmail.com"));
    assert!(c.reply().await.starts_with("250 2.1.0"));
    assert!(c.reply().await.starts_with("250 2.1.5"));
    assert!(c.reply().await.starts_with("550 5.1.1"));
    assert!(c.reply().await.starts_with("354"));
    c.send(b"Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        .await;
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued"));
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("221"));
    net.stop().await;
}

#[tokio::test]
async fn stored_message_is_byte_exact_after_the_trace_headers() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    let message = "From: usr1@gmail.com\r\nSubject: exact\r\n\r\n..leading dot\r\n\tTab and 8-bit: caf\u{e9}\r\n";
    send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        message,
    )
    .await;
    let stored = gmail.host.store().messages("bob@gmail.com").unwrap();
    let bytes = std::fs::read(&stored[0].path).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("Return-Path: <usr1@gmail.com>\r\nReceived: from test.client ([127.0.0.1])\r\n\tby gmail.com (mailnet) with ESMTP id "));
    let body_at = text.find("From: usr1@gmail.com").unwrap();
    assert_eq!(&text[body_at..], message.replace("..leading", ".leading"));
    net.stop().await;
}

#[tokio::test]
async fn garbage_does_not_hurt_the_server_or_other_sessions() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    let mut bystander = Raw::connect(gmail.addr(Service::Smtp)).await;
    bystander.reply().await;
    assert!(bystander.cmd("HELO calm").await.starts_with("250"));

    // 10 MB without a newline, then NUL bytes, then a real command.
    let mut flood = Raw::connect(gmail.addr(Service::Smtp)).await;
    flood.reply().await;
    let chunk = vec![b'A'; 1024 * 1024];
    for _ in 0..10 {
        flood.send(&chunk).await;
    }
    flood.send(b"\r\n\0\0\0\r\nNOOP\r\n").await;
    assert_eq!(flood.reply().await, "500 5.5.2 Line too long");
    assert!(flood.reply().await.starts_with("500"));
    assert!(flood.reply().await.starts_with("250"));

    assert!(bystander.cmd("NOOP").await.starts_with("250"));
    net.stop().await;
}

#[tokio::test]
async fn a_client_vanishing_mid_data_leaves_nothing_in_the_mailbox() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap();
    let mut c = Raw::connect(gmail.addr(Service::Smtp)).await;
    c.reply().await;
    c.cmd("HELO x").await;
    c.cmd("MAIL FROM:<usr1@gmail.com>").await;
    c.cmd("RCPT TO:<bob@gmail.com>").await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: half\r\n\r\nhalf a message").await;
    let mut stream = c.into_stream();
    stream.shutdown().await.unwrap();
    drop(stream);
    // The server notices the end of stream and ends the session; wait for that fact.
    let log = gmail.host.log(Service::Smtp);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while log.recent().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never ended"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(gmail.host.store().count("bob@gmail.com"), 0);
    let tmp = gmail.host.store().mailbox_path("bob@gmail.com").join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0);
    net.stop().await;
}

#[tokio::test]
async fn five_hundred_sessions_at_once() {
    let net = boot().await;
    let addr = net.server("gmail.com").unwrap().addr(Service::Smtp);
    let mut clients = Vec::new();
    for _ in 0..500 {
        clients.push(Raw::connect(addr).await);
    }
    for c in &mut clients {
        assert!(c.reply().await.starts_with("220"));
    }
    for c in &mut clients {
        assert!(c.cmd("NOOP").await.starts_with("250"));
    }
    net.stop().await;
}

#[tokio::test]
async fn session_limit_answers_421() {
    let net = boot_with(|p| p.max_sessions = 2, UpOptions::default()).await;
    let addr = net.server("gmail.com").unwrap().addr(Service::Smtp);
    let mut a = Raw::connect(addr).await;
    let mut b = Raw::connect(addr).await;
    assert!(a.reply().await.starts_with("220"));
    assert!(b.reply().await.starts_with("220"));
    let mut c = Raw::connect(addr).await;
    assert!(c.reply().await.starts_with("421 4.7.0"));
    net.stop().await;
}

#[tokio::test]
async fn idle_sessions_get_421() {
    let net = boot_with(
        |p| p.idle_timeout = Duration::from_millis(200),
        UpOptions::default(),
    )
    .await;
    let mut c = Raw::connect(net.server("gmail.com").unwrap().addr(Service::Smtp)).await;
    c.reply().await;
    assert!(c.reply().await.starts_with("421 4.4.2"));
    net.stop().await;
}

#[tokio::test]
async fn shutdown_says_421_to_open_sessions() {
    let net = boot().await;
    let mut c = Raw::connect(net.server("gmail.com").unwrap().addr(Service::Smtp)).await;
    c.reply().await;
    net.stop().await;
    assert!(c.reply().await.starts_with("421 4.3.2"));
}

#[tokio::test]
async fn transcripts_are_logged_per_session() {
    let net = boot().await;
    let gmail = net.server("gmail.com").unwrap().clone();
    send_mail(
        gmail.addr(Service::Smtp),
        "usr1@gmail.com",
        &["bob@gmail.com"],
        "Subject: t\r\n\r\nx\r\n",
    )
    .await;
    // The log is flushed when the session ends; wait for that fact.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gmail.host.log(Service::Smtp).recent().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never ended"
        );
        tokio::task::yield_now().await;
    }
    let log = std::fs::read_to_string(gmail.host.dir().join("transcripts/smtp.log")).unwrap();
    net.stop().await;
    assert!(log.contains("[gmail.com smtp#1] "), "{log}");
    assert!(log.contains(" C: MAIL FROM:<usr1@gmail.com>"));
    assert!(log.contains(" S: 250 2.0.0 Ok: queued as "));
}

/// A multipart message with two binary attachments, like Sylpheed's.
fn two_attachments(png: &[u8], bin: &[u8]) -> String {
    use base64::Engine;
    let b64 = |data: &[u8]| {
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        text.as_bytes()
            .chunks(76)
            .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
            .collect::<String>()
    };
    format!(
        "From: akc <akc@gmail.com>\r\nTo: akc@cs.ust.hk\r\nSubject: Images\r\nMime-Version: 1.0\r\n\
Content-Type: multipart/mixed;\r\n boundary=\"Multipart=_Thu__8_Oct_2020\"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n\
--Multipart=_Thu__8_Oct_2020\r\nContent-Type: text/plain; charset=US-ASCII\r\nContent-Transfer-Encoding: 7bit\r\n\r\nHi,\r\nHere are two images\r\n\r\n\
--Multipart=_Thu__8_Oct_2020\r\nContent-Type: image/png;\r\n name=\"image1.png\"\r\nContent-Disposition: attachment;\r\n filename=\"image1.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
--Multipart=_Thu__8_Oct_2020\r\nContent-Type: application/octet-stream;\r\n name=\"data.bin\"\r\nContent-Disposition: attachment;\r\n filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
--Multipart=_Thu__8_Oct_2020--\r\n",
        b64(png),
        b64(bin)
    )
}

#[tokio::test]
async fn two_binary_attachments_arrive_intact_and_inspect_extracts_them() {
    let net = boot().await;
    let ust = net.server("cse.ust.hk").unwrap();
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n"
        .iter()
        .copied()
        .chain((0..5000u32).map(|i| (i * 7 % 256) as u8))
        .collect();
    let bin: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    send_mail(
        ust.addr(Service::Smtp),
        "akc@gmail.com",
        &["akc@cs.ust.hk"],
        &two_attachments(&png, &bin),
    )
    .await;
    let stored = ust.host.store().messages("akc@cs.ust.hk").unwrap();
    let raw = std::fs::read(&stored[0].path).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (text, files) = mailnet::mime::describe(&raw, Some(out.path())).unwrap();
    assert!(text.contains("Subject: Images"), "{text}");
    assert!(text.contains("Attachments: 2"), "{text}");
    assert_eq!(files.len(), 2);
    assert_eq!(std::fs::read(out.path().join("image1.png")).unwrap(), png);
    assert_eq!(std::fs::read(out.path().join("data.bin")).unwrap(), bin);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ids_are_unique_across_the_network() {
    let net = boot().await;
    let qq = net.server("exmail.qq.com").unwrap();
    let gmail = net.server("gmail.com").unwrap();
    let routes = [
        (
            qq.addr(Service::Smtp),
            "usr1@mail.sustech.edu.cn",
            "usr1@gmail.com",
        ),
        (
            gmail.addr(Service::Smtp),
            "usr1@gmail.com",
            "usr1@mail.sustech.edu.cn",
        ),
    ];
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        for (addr, from, to) in routes {
            let mut c = Raw::connect(addr).await;
            assert!(c.reply().await.starts_with("220"));
            c.cmd("EHLO ids.example").await;
            assert!(c
                .cmd(&format!("MAIL FROM:<{from}>"))
                .await
                .starts_with("250"));
            assert!(c.cmd(&format!("RCPT TO:<{to}>")).await.starts_with("250"));
            assert!(c.cmd("DATA").await.starts_with("354"));
            c.send(format!("Subject: {n}\r\n\r\nbody\r\n").as_bytes())
                .await;
            let reply = c.cmd(".").await;
            let id = reply
                .split("queued as ")
                .nth(1)
                .unwrap_or_else(|| panic!("{reply}"));
            acknowledged.push(id.trim().to_string());
            c.cmd("QUIT").await;
        }
    }
    // Every message crossed two servers: each hop wrote its id in `Received:`.
    let mut seen = std::collections::HashMap::new();
    for (server, mailbox) in [(gmail, "usr1@gmail.com"), (qq, "usr1@mail.sustech.edu.cn")] {
        let store = server.host.store();
        assert!(
            store
                .wait_until(Duration::from_secs(20), |s| s.count(mailbox) >= 20)
                .await,
            "{mailbox} got {}",
            store.count(mailbox)
        );
        for message in store.messages(mailbox).unwrap() {
            let text = std::fs::read_to_string(&message.path).unwrap();
            let head = text.split("\r\n\r\n").next().unwrap();
            let ids: Vec<&str> = head
                .split(" id ")
                .skip(1)
                .map(|rest| rest.split([';', ' ', '\r']).next().unwrap())
                .collect();
            assert_eq!(ids.len(), 2, "two hops:\n{head}");
            for id in ids {
                if let Some(other) = seen.insert(id.to_string(), message.uid.clone()) {
                    panic!("queue id {id} on {other} and {}", message.uid);
                }
            }
        }
    }
    assert_eq!(seen.len(), 80);
    for id in &acknowledged {
        assert!(
            seen.contains_key(id),
            "acknowledged {id} is in no Received:"
        );
    }
    net.stop().await;
}
